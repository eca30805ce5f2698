"""Stalled, slow and oversized clients against the real server (`python -m hooks serve`,
uvicorn on 127.0.0.1) over raw sockets: none of them holds memory or the service."""

from __future__ import annotations

import json
import logging
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from conftest import TestClient
from golden import FIXTURES
from served import serving

from hooks.app import create_app
from hooks.controllers import Applied, TopologyDecision

MB = 1024 * 1024


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def rss(self) -> int:
        """Resident memory of the server process, in bytes (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def healthz_seconds(self) -> float:
        started = time.monotonic()
        answer = httpx.get(f"{self.url}/healthz", timeout=5)
        assert answer.status_code == 200
        return time.monotonic() - started


def _start(extra_env: dict[str, str]) -> Iterator[Server]:
    with serving(extra_env) as (process, port):
        yield Server(process, port)


@pytest.fixture(scope="module")
def patient() -> Iterator[Server]:
    """Default timeouts: stalled clients stay stalled for the whole test."""
    yield from _start({})


@pytest.fixture(scope="module")
def strict() -> Iterator[Server]:
    """Short timeouts and a 1 MiB budget for bodies in memory at once."""
    yield from _start(
        {
            "HEADER_TIMEOUT_SECONDS": "1",
            "BODY_IDLE_TIMEOUT_SECONDS": "1",
            "BODY_TIMEOUT_SECONDS": "3",
            "MAX_INFLIGHT_BODY_BYTES": str(MB),
        }
    )


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of the one response on `sock`, read until the server closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if b"\r\n\r\n" in data and b"content-length:" in head.lower():
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(body) >= length:
                break
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def test_stalled_clients_declaring_huge_bodies_leave_memory_near_idle_and_healthz_answering(
    patient: Server,
) -> None:
    idle = patient.rss()
    stalled = [patient.connect() for _ in range(8)]
    try:
        for sock in stalled:  # 500 MB declared (under MAX_BODY_BYTES), 90 bytes sent
            sock.sendall(_head("/topology/sync", 500 * MB) + b'{"parent": ' + b" " * 79)
        time.sleep(1.0)
        held = patient.rss() - idle
        assert held < 32 * MB, f"8 stalled clients made the server hold {held / MB:.0f} MB more"
        assert patient.healthz_seconds() < 1.0
    finally:
        for sock in stalled:
            sock.close()


def test_a_content_length_longer_than_the_body_is_answered_408_after_the_body_timeout(
    strict: Server,
) -> None:
    with strict.connect() as sock:
        started = time.monotonic()
        sock.sendall(_head("/node/sync", 1000) + b'{"object": {}')
        status, body = _answer(sock)
        waited = time.monotonic() - started
    assert status == 408
    assert json.loads(body)["error"].startswith("request body not received in time")
    assert 0.9 < waited < 5


def test_a_body_dripped_faster_than_the_idle_timeout_still_ends_at_the_body_timeout(
    strict: Server,
) -> None:
    with strict.connect() as sock:
        started = time.monotonic()
        sock.sendall(_head("/node/sync", 1000))
        status = None
        for _ in range(20):  # one byte every 0.5 s: never idle for 1 s, never done
            try:
                sock.sendall(b" ")
            except OSError:
                break
            time.sleep(0.5)
            sock.setblocking(False)
            try:
                peek = sock.recv(65536, socket.MSG_PEEK)
            except BlockingIOError:
                peek = b""
            sock.setblocking(True)
            if peek:
                status, _ = _answer(sock)
                break
        waited = time.monotonic() - started
    assert status == 408
    assert 2.5 < waited < 6


def test_a_request_head_that_never_completes_is_answered_408_and_closed(strict: Server) -> None:
    with strict.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"POST /node/sync HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
        status, body = _answer(sock)
        waited = time.monotonic() - started
        assert sock.recv(1) == b""  # closed
    assert status == 408
    assert json.loads(body)["error"] == "request head not received in time"
    assert 0.9 < waited < 3


def test_a_request_head_over_max_header_bytes_is_refused_without_reading_on(
    patient: Server,
) -> None:
    with patient.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        try:
            for _ in range(64):  # up to 8 MiB of header; refused long before
                sock.sendall(b"x-pad: " + b"a" * (128 * 1024) + b"\r\n")
        except OSError:
            pass  # the server closed on us: what we want
        status, _ = _answer(sock)
    assert status == 400
    assert patient.healthz_seconds() < 1.0


def test_bodies_past_the_in_flight_budget_get_503_until_the_holder_is_answered(
    strict: Server,
) -> None:
    holder = strict.connect()
    try:
        holder.sendall(_head("/node/sync", 2 * MB) + b" " * (900 * 1024))
        time.sleep(0.3)
        with strict.connect() as late:
            late.sendall(_head("/node/sync", 400 * 1024) + b" " * (400 * 1024))
            status, body = _answer(late)
        assert status == 503
        assert "MAX_INFLIGHT_BODY_BYTES" in json.loads(body)["error"]
        assert _answer(holder)[0] == 408  # it stalls, times out and gives its bytes back
    finally:
        holder.close()
    with strict.connect() as after:
        after.sendall(_head("/node/sync", 400 * 1024) + b" " * (400 * 1024))
        assert _answer(after)[0] == 400  # read whole: blank JSON is a bad request, not busy


def test_a_thousand_slowloris_connections_do_not_stop_service(strict: Server) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1100:
        pytest.skip(f"the open-file limit ({hard}) is below 1,100 sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    crawling: list[socket.socket] = []
    try:
        for _ in range(1000):
            sock = strict.connect()
            sock.sendall(b"POST /node/sync HTTP/1.1\r\nhost: 127.0.0.1\r\n")
            crawling.append(sock)
        for _ in range(3):  # while they crawl, the service answers
            assert strict.healthz_seconds() < 1.0
            time.sleep(0.2)
        node_sync = (FIXTURES / "node-sync" / "former-reflector" / "request.json").read_bytes()
        answer = httpx.post(f"{strict.url}/node/sync", content=node_sync, timeout=5)
        assert answer.status_code == 200
        time.sleep(1.5)  # past HEADER_TIMEOUT_SECONDS: every crawler was answered and closed
        closed = 0
        for sock in crawling:
            sock.settimeout(2)
            if _answer(sock)[0] == 408:
                closed += 1
        assert closed == 1000
    finally:
        for sock in crawling:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_failure_inside_a_hook_answers_a_short_500_and_logs_the_details_cut(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "etcd at https://10.1.2.3:2379 said " + "x" * 5000

    def broken(decision: TopologyDecision) -> Applied:
        raise RuntimeError(secret)

    request = json.loads((FIXTURES / "topology-sync" / "converged" / "request.json").read_text())
    request["parent"]["spec"]["datastore"] = "etcdv3"
    app = create_app(
        {},
        clock=lambda: datetime.fromisoformat("2026-01-01T00:00:00+00:00"),
        applier=broken,
    )
    with caplog.at_level(logging.INFO, "hooks"), TestClient(app) as client:
        answer = client.post("/topology/sync", json=request)
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error", "field": None}
    line = json.loads(caplog.records[-1].getMessage())
    assert caplog.records[-1].levelno == logging.ERROR
    assert line["outcome"] == "internal_error"
    assert line["error"].startswith("RuntimeError: etcd at https://10.1.2.3:2379")
    assert len(line["error"]) < 600 and "RuntimeError" in line["trace"]
