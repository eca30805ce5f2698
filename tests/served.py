"""`python -m hooks serve` as a real process on a free loopback port, for tests over a socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop(process: subprocess.Popen[Any]) -> None:
    """Terminate `process`, killing it if it has not gone within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serving(
    extra_env: dict[str, str] | None = None, stderr: int | IO[bytes] = subprocess.DEVNULL
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The server with none of the operator's environment, once /healthz answers; stopped after."""
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ROUTE_REFLECTOR_", "DATASTORE"))
    }
    env |= {"LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)} | (extra_env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "hooks", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                said = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"the server exited: {said}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server did not answer /healthz within 20 s")
            time.sleep(0.05)
        yield process, port
    finally:
        stop(process)
        if process.stderr is not None:
            process.stderr.close()
