"""The load figures of `python -m bench` (bench/load.py) from the real server, at a small size."""

from __future__ import annotations

from bench import load
from bench.generate import Generator, steady_state
from bench.measure import Server
from bench.report import targets


def test_load_figures_come_from_the_real_server_and_become_targets() -> None:
    body = steady_state([Generator(1).node(i) for i in range(60)], "simple").topology_body()
    server = Server()
    try:
        during = load.healthz_during_sync(server, body)
        burst = load.concurrent_syncs(server, body, 3)
        assert load.raw_post(server.port, "/topology/sync", b"[")[0] == 400
    finally:
        server.close()
    assert during["status"] == 200 and during["healthz_probes"] >= 1
    assert burst["statuses"] == [200, 200, 200]
    found = {
        t["target"]: t
        for t in targets(
            [], {}, {}, loads={"healthz_during_20000": during, "concurrent_5x5000": burst}
        )
    }
    healthz = found["/healthz during a 20,000-node sync < 200 ms"]
    assert healthz["value"] == during["healthz_max_ms"]
    assert healthz["verdict"] == ("PASS" if during["healthz_max_ms"] < 200 else "MISS")
    peak = found["5 concurrent 5,000-node syncs all 200, peak RSS ≤ 368 MB"]
    # 3 answers, not the 5 the target asks for: a MISS (SKIP where the kernel kept the peak)
    assert peak["verdict"] == ("MISS" if burst["peak_rss_mb"] is not None else "SKIP")
    assert found_skip(targets([], {}, {}))


def found_skip(rows: list[dict[str, object]]) -> bool:
    verdicts = {r["target"]: r["verdict"] for r in rows}
    return verdicts["/healthz during a 20,000-node sync < 200 ms"] == "SKIP"
