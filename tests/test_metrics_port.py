"""With METRICS_PORT the service answers /metrics there and nothing else, and the hook port no
longer serves /metrics: the NetworkPolicy can then admit the scraper to the metrics alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from golden import FIXTURES
from served import free_port as _free_port

ROOT = Path(__file__).resolve().parents[1]


def test_a_separate_metrics_port_serves_only_metrics_and_the_hook_port_only_hooks() -> None:
    hooks_port, metrics_port = _free_port(), _free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ROUTE_REFLECTOR_", "DATASTORE"))
    }
    env |= {"LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT), "METRICS_PORT": str(metrics_port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "hooks", "serve", "--host", "127.0.0.1", "--port", str(hooks_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    hooks, metrics = f"http://127.0.0.1:{hooks_port}", f"http://127.0.0.1:{metrics_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{metrics}/metrics", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "server not up"
            time.sleep(0.05)
        body = (FIXTURES / "node-sync" / "client" / "request.json").read_bytes()
        assert httpx.post(f"{hooks}/node/sync", content=body).status_code == 200
        assert httpx.get(f"{hooks}/healthz").status_code == 200
        assert httpx.get(f"{hooks}/metrics").status_code == 404
        assert httpx.post(f"{metrics}/node/sync", content=body).status_code == 404
        scraped = httpx.get(f"{metrics}/metrics").text
        assert 'rr_hook_duration_seconds_count{hook="node_sync"} 1.0' in scraped
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)  # one SIGTERM stops both servers
    # uvicorn re-raises the SIGTERM it handled once both have shut down (as with one server).
    assert code in (0, -signal.SIGTERM)
