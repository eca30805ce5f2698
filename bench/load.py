"""Load figures against the real server: a 20,000-node sync with /healthz probed meanwhile, and
concurrent 5,000-node syncs with the server's peak RSS. Bodies are sent by raw sockets
(`sendall` of bytes already in memory), so the client is not what is timed."""

from __future__ import annotations

import resource
import socket
import statistics
import threading
import time
from typing import Any

from bench.measure import Server


def raw_post(port: int, path: str, body: bytes, timeout: float = 600) -> tuple[int, float]:
    """POST `body` over one socket; (status, seconds from first byte sent to last byte read)."""
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        started = time.perf_counter()
        sock.sendall(head)
        sock.sendall(body)
        first = b""
        while chunk := sock.recv(1 << 20):
            if not first:
                first = chunk
        elapsed = time.perf_counter() - started
    return int(first.split(b" ", 2)[1]), elapsed


PHASES = (
    "wait_ms",
    "receive_ms",
    "decode_ms",
    "plan_ms",
    "metrics_ms",
    "encode_ms",
    "release_ms",
)
# CPU time of the thread that decoded and planned (wall time above it is the machine's load)
CPU = ("decode_cpu_ms", "plan_cpu_ms")


def healthz_during_sync(server: Server, body: bytes, repeats: int = 1) -> dict[str, Any]:
    """`repeats` topology syncs of `body`, one after the other, /healthz probed every 50 ms
    meanwhile (worst probe kept). The first sync of a plan also counts its add-path routes; the
    next ones are Metacontroller's resyncs of an unchanged cluster. Where the server keeps its
    log, each sync's phases as the server timed them (ms): waiting for a slot, receiving the
    body, decoding, planning, metrics (the route count), encoding, freeing the decoded Nodes."""
    done = threading.Event()
    probes: list[float] = []

    def probe() -> None:
        while not done.is_set():
            status, seconds = raw_probe(server.port)
            probes.append(seconds if status == 200 else float("inf"))
            time.sleep(0.05)

    answers: list[tuple[int, float]] = []
    logged = len(settled_lines(server))
    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(repeats):
            answers.append(raw_post(server.port, "/topology/sync", body))
    finally:
        done.set()
        prober.join()
    lines = settled_lines(server)[logged:]
    phases = [
        {name: line[name] for name in (*PHASES, *CPU, "duration_ms") if name in line}
        for line in lines
    ]
    times = [round(seconds * 1e3, 1) for _, seconds in answers]
    held = server.memory()  # what the server keeps between syncs, and its peak
    return {
        "rss_after_mb": round(held["VmRSS"] / 1e6, 1),
        "peak_rss_mb": round(held["VmHWM"] / 1e6, 1),
        "status": max(status for status, _ in answers),
        "statuses": [status for status, _ in answers],
        "sync_ms": times[0],
        "syncs_ms": times,
        "steady_median_ms": statistics.median(times[1:]) if repeats > 1 else None,
        "phases": phases if len(phases) == repeats else [],
        "body_mb": round(len(body) / 1e6, 1),
        "healthz_probes": len(probes),
        "healthz_max_ms": round(max(probes) * 1e3, 1) if probes else None,
    }


def settled_lines(server: Server, quiet: float = 0.3, most: float = 10) -> list[dict[str, Any]]:
    """The server's topology sync log lines once no new one came for `quiet` seconds: a sync's
    line is written once its decoded Nodes are freed, just after its answer."""
    deadline = time.monotonic() + most
    lines = server.hook_lines("topology_sync")
    while time.monotonic() < deadline:
        time.sleep(quiet)
        again = server.hook_lines("topology_sync")
        if len(again) == len(lines):
            break
        lines = again
    return lines


def slowloris(server: Server, count: int, node_body: bytes) -> dict[str, Any]:
    """`count` connections that each send part of a request head and stall (the server answers
    them 408 once HEADER_TIMEOUT_SECONDS pass). /healthz is probed once right after they are
    opened, while the server still takes them in (`healthz_arrival_ms`), then, half a second
    on, 10 times with them all stalled (`healthz_max_ms`, the worst); then one node sync. The
    bench raises its own open-file limit; the server needs `count` + a few descriptors under
    its own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < count + 100:
        return {"skipped": f"the open-file limit ({hard}) is below {count + 100}"}
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 100), hard))
    crawling: list[socket.socket] = []
    try:
        started = time.perf_counter()
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"POST /node/sync HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
            crawling.append(sock)
        opened = time.perf_counter() - started
        probes = []
        for index in range(11):  # the first as the server still takes the connections in
            try:
                status, seconds = raw_probe(server.port)
            except OSError:  # refused or timed out: service stopped
                status, seconds = 0, 0.0
            probes.append(seconds if status == 200 else float("inf"))
            time.sleep(0.5 if index == 0 else 0.05)
        try:
            node_status, node_seconds = raw_post(server.port, "/node/sync", node_body, timeout=10)
        except OSError:
            node_status, node_seconds = 0, 0.0
    finally:
        for sock in crawling:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return {
        "connections": count,
        "open_ms": round(opened * 1e3, 1),
        "healthz_arrival_ms": round(probes[0] * 1e3, 1),
        "healthz_probes": len(probes) - 1,
        "healthz_max_ms": round(max(probes[1:]) * 1e3, 1),
        "node_sync_status": node_status,
        "node_sync_ms": round(node_seconds * 1e3, 1),
    }


def raw_probe(port: int) -> tuple[int, float]:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return int(data.split(b" ", 2)[1]), time.perf_counter() - started


def concurrent_syncs(server: Server, body: bytes, count: int) -> dict[str, Any]:
    """`count` topology syncs of `body` at once; every status, the slowest, the server's peak."""
    idle = server.memory()["VmRSS"]
    peak_reset = server.reset_peak()
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one() -> None:
        answer = raw_post(server.port, "/topology/sync", body)
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=one) for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    memory = server.memory()
    return {
        "count": count,
        "body_mb": round(len(body) / 1e6, 1),
        "statuses": sorted(status for status, _ in results),
        "slowest_ms": round(max(seconds for _, seconds in results) * 1e3, 1),
        "wall_ms": round(wall * 1e3, 1),
        "idle_rss_mb": round(idle / 1e6, 1),
        "peak_rss_mb": round(memory["VmHWM"] / 1e6, 1) if peak_reset else None,
    }
