"""Load figures against the real server: a 20,000-node sync with /healthz probed meanwhile, and
concurrent 5,000-node syncs with the server's peak RSS. Bodies are sent by raw sockets
(`sendall` of bytes already in memory), so the client is not what is timed."""

from __future__ import annotations

import socket
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


def healthz_during_sync(server: Server, body: bytes) -> dict[str, Any]:
    """One topology sync of `body`; /healthz probed every 50 ms meanwhile (worst probe kept)."""
    done = threading.Event()
    probes: list[float] = []

    def probe() -> None:
        while not done.is_set():
            status, seconds = raw_probe(server.port)
            if status != 200:
                probes.append(float("inf"))
            else:
                probes.append(seconds)
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        status, sync_seconds = raw_post(server.port, "/topology/sync", body)
    finally:
        done.set()
        prober.join()
    return {
        "status": status,
        "sync_ms": round(sync_seconds * 1e3, 1),
        "body_mb": round(len(body) / 1e6, 1),
        "healthz_probes": len(probes),
        "healthz_max_ms": round(max(probes) * 1e3, 1) if probes else None,
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
