"""Timing and memory: the hooks in-process and over HTTP, the references, a child for peak RSS."""

from __future__ import annotations

import gc
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from hooks import controllers, wire

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Samples:
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def as_json(self) -> dict[str, Any]:
        return {
            "n": len(self.seconds),
            "median_ms": round(self.median * 1e3, 4),
            "p95_ms": round(self.p95 * 1e3, 4),
            "min_ms": round(min(self.seconds) * 1e3, 4),
        }


def timed(call: Callable[[], object], repeats: int, budget: float, collect: bool = True) -> Samples:
    """Up to `repeats` timings of `call`, fewer when they would take over `budget` seconds (at
    least one; two when the first took under half the budget). Garbage from one call is
    collected before the next so calls do not pay for each other."""
    samples: list[float] = []
    spent = 0.0
    while len(samples) < repeats:
        if collect:
            gc.collect()
        started = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - started
        del result
        samples.append(elapsed)
        spent += elapsed
        if spent + elapsed > budget and not (len(samples) == 1 and elapsed < budget / 2):
            break
    if collect:
        gc.collect()
    return Samples(tuple(samples))


def interleaved(
    calls: Mapping[str, Callable[[], object]], repeats: int, budget: float
) -> dict[str, Samples]:
    """Timings of several calls taken in turns (a, b, c, a, b, c, ...), so that a machine busy
    with something else slows each of them alike and their ratios hold. Each call stops at
    `repeats`, or when its next timing would take it over `budget` seconds (one at least)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            taken = samples[name]
            if taken and sum(taken) + taken[-1] > budget:
                continue
            gc.collect()
            started = time.perf_counter()
            result = call()
            taken.append(time.perf_counter() - started)
            del result
    gc.collect()
    return {name: Samples(tuple(taken)) for name, taken in samples.items()}


def topology_sync_call(body: bytes, environ: Mapping[str, str], now: datetime) -> bytes:
    """What the /topology/sync route does with a body: decode, decide and render, encode, with
    the cyclic collector paused as the route pauses it."""
    with wire.collector_paused:
        request = wire.decode_topology_request(body)
        return wire.encode(controllers.topology_sync(request, environ, now))


def node_sync_call(body: bytes, environ: Mapping[str, str]) -> bytes:
    """What the /node/sync route does with a body."""
    request = wire.decode(body, wire.NodeSyncRequest)
    return wire.encode(controllers.node_sync(request, environ))


def floor_call(body: bytes) -> int:
    """The floor: one pass over the bytes, as cheap as reading a body can be."""
    return body.count(b'"')


def orjson_call(body: bytes) -> object:
    return orjson.loads(body)


def per_call(call: Callable[[], object], count: int) -> Samples:
    """`count` timings of a fast call (no collection between: these are microseconds)."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return Samples(tuple(samples))


# --- memory --------------------------------------------------------------------------------------


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM in bytes from /proc."""
    found = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    return found


def reset_peak(pid: int) -> bool:
    """Reset a process's VmHWM (Linux clear_refs); False where the kernel refuses."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


_CHILD = r"""
import gc, json, os, resource, sys, time
from bench.generate import Generator, NOW, steady_state
from bench.measure import proc_status, reset_peak, topology_sync_call
warm = steady_state([Generator(1).node(i) for i in range(3)], sys.argv[2])
topology_sync_call(warm.topology_body(), {}, NOW)  # imports and caches, as a running server has
del warm
gc.collect()
idle = proc_status()["VmRSS"]
with open(sys.argv[1], "rb") as handle:
    body = handle.read()
loaded = proc_status()["VmRSS"]
reset = reset_peak(os.getpid())
started = time.perf_counter()
answer = topology_sync_call(body, {}, NOW)
elapsed = time.perf_counter() - started
print(json.dumps({"idle": idle, "loaded": loaded, "peak": proc_status()["VmHWM"],
                  "reset": reset, "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  * 1024, "seconds": elapsed, "answer": len(answer)}))
"""


def peak_rss(body: bytes, topology: str) -> dict[str, Any]:
    """Peak RSS of one topology sync, in a fresh interpreter that loads `body` from a file.

    The peak is the child's VmHWM, reset after the body is loaded where the kernel allows:
    ru_maxrss is no use here, since Linux carries the parent's high-water mark over exec
    when subprocess spawns with vfork (it is reported as `ru_maxrss` all the same)."""
    with tempfile.NamedTemporaryFile(prefix="bench-body-", suffix=".json") as handle:
        handle.write(body)
        handle.flush()
        found = run_child(_CHILD, handle.name, topology)
    if "error" in found:
        return found
    size = len(body)
    found["body"] = size
    found["sync_delta"] = found["peak"] - found["loaded"]
    found["above_idle"] = found["peak"] - found["idle"]
    found["sync_delta_x_body"] = round(found["sync_delta"] / size, 3)
    found["above_idle_x_body"] = round(found["above_idle"] / size, 3)
    return found


# --- HTTP ----------------------------------------------------------------------------------------


def run_child(code: str, *args: str) -> dict[str, Any]:
    """`python -c code args` in a fresh interpreter at the repository root, without the
    service's settings in its environment: the JSON object its last line prints, or
    {"error": its last line of stderr}."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        check=False,
        text=True,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?"}
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ROUTE_REFLECTOR_", "DATASTORE", "K8S_", "ETCD_"))
    }
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """`python -m hooks serve` on a free loopback port, as deployed (uvicorn, INFO logs).

    The client must not be the bottleneck: a Python HTTP client spends seconds building and
    sending a 281 MB body. Requests go out through a raw socket (`sendall` of the body as it is,
    the answer read into one buffer), and `post_curl` times the same request with curl."""

    def __init__(self, keep_log: bool = False) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._folder = tempfile.TemporaryDirectory(prefix="rr-bench-")
        # With `keep_log`, the server's JSON log lines go to a file (`hook_lines` reads them).
        self._log = Path(self._folder.name) / "server.log"
        log = self._log.open("wb") if keep_log else None
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hooks",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env=_clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if log is None else log,
        )
        if log is not None:
            log.close()
        self._files: dict[int, Path] = {}
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("python -m hooks serve exited at start")
            try:
                if self._request(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
                    break
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("python -m hooks serve did not answer /healthz in 30 s")
            time.sleep(0.05)

    def _request(self, head: bytes, body: bytes = b"") -> bytes:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(head)
            if body:
                sock.sendall(body)
            chunks = []
            while data := sock.recv(1 << 20):
                chunks.append(data)
        header, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:300]!r}")
        return payload

    def post(self, path: str, body: bytes) -> bytes:
        """POST through a raw socket: the request line and headers, then the body as it is."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            return self._request(head, body)
        except RuntimeError as error:
            raise RuntimeError(f"{path}: {error}") from None

    def post_curl(self, path: str, body: bytes) -> bytes:
        """POST with curl streaming the body from a file (written once per body, untimed)."""
        key = id(body)
        if key not in self._files:
            file = Path(self._folder.name) / f"body-{len(self._files)}.json"
            file.write_bytes(body)
            self._files[key] = file
        done = subprocess.run(
            ["curl", "-sS", "--fail-with-body", "-X", "POST", "-T", str(self._files[key]),
             "-H", "Content-Type: application/json", "-H", "Expect:", "-o", "-",
             f"{self.url}{path}"],
            capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{path}: curl {done.returncode}: {done.stderr[:300]!r}")
        return done.stdout

    def hook_lines(self, hook: str) -> list[dict[str, Any]]:
        """The server's log lines of `hook` so far (empty unless started with `keep_log`)."""
        if not self._log.exists():
            return []
        found = []
        for line in self._log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("hook") == hook:
                found.append(entry)
        return found

    def memory(self) -> dict[str, int]:
        return proc_status(self.process.pid)

    def reset_peak(self) -> bool:
        return reset_peak(self.process.pid)

    def close(self) -> None:
        self._folder.cleanup()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
