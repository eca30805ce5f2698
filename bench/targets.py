"""The targets the benchmarks are held to, each per topology: PASS, MISS, or SKIP when the run
did not measure it."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from typing import Any

from bench.load import PHASES

Row = dict[str, Any]


def topology_order(topology: str) -> int:
    order = ("simple", "multi", "quorum", "hierarchy")
    return order.index(topology) if topology in order else len(order)


def _find(rows: Sequence[Row], size: int, topology: str) -> Row | None:
    return next((r for r in rows if r["n"] == size and r["topology"] == topology), None)


def _target(
    name: str, topology: str, value: float | None, limit: float, ok: bool | None, note: str = ""
) -> Row:
    verdict = "SKIP" if ok is None else "PASS" if ok else "MISS"
    return {
        "target": name,
        "topology": topology,
        "value": value,
        "limit": limit,
        "verdict": verdict,
        "note": note,
    }


def _at_most(
    name: str,
    topology: str,
    value: float | None,
    limit: float,
    note: str = "",
    *,
    below: bool = False,
    holds: bool = True,
    digits: int | None = None,
) -> Row:
    """PASS when `value` is at most `limit` (under it, with `below`) and `holds`; SKIP when
    nothing was measured. With `digits`, the value is shown rounded (and judged unrounded)."""
    if value is None:
        return _target(name, topology, value, limit, None, note)
    ok = (value < limit if below else value <= limit) and holds
    shown = value if digits is None else round(value, digits)
    return _target(name, topology, shown, limit, ok, note)


def _skipped(row: Row | None, otherwise: str = "size not run") -> str:
    return str((row or {}).get("skipped", otherwise))


def targets(
    rows: Sequence[Row],
    plans: dict[str, Any],
    churn: dict[str, Any],
    plan_size: int = 5_000,
    loads: dict[str, Any] | None = None,
) -> list[Row]:
    """Each target per topology: PASS, MISS, or SKIP when the run did not measure it."""
    topologies = sorted({r["topology"] for r in rows}, key=topology_order)
    return [
        *_sync_targets(rows, topologies),
        *_large_targets(rows, topologies),
        *_scaling_targets(rows, topologies),
        *_paths_targets(rows, topologies),
        *_load_targets(loads or {}),
        *_plan_targets(plans, churn, plan_size, topologies),
    ]


def _sync_targets(rows: Sequence[Row], topologies: Sequence[str]) -> list[Row]:
    """The in-process sync against the decode floor and orjson, at 5,000 and 20,000 nodes."""
    found = []
    for size in (5_000, 20_000):
        for topology in topologies:
            row = _find(rows, size, topology)
            measured = row is not None and row.get("sync") is not None
            note = "" if measured else _skipped(row)
            for name, key, limit in (
                ("4× floor", "x_floor", 4),
                ("0.15× orjson", "x_orjson", 0.15),
            ):
                value = row[key] if measured and row is not None else None
                found.append(
                    _at_most(f"topology sync {size:,} ≤ {name}", topology, value, limit, note)
                )
    return found


def _measured(
    rows: Sequence[Row], size: int, topologies: Sequence[str], key: str
) -> Iterator[tuple[str, Row | None, Any]]:
    """Per topology: its row at `size` nodes (None: not run) and that row's `key` (None: not
    measured)."""
    for topology in topologies:
        row = _find(rows, size, topology)
        yield topology, row, row.get(key) if row else None


def _large_targets(rows: Sequence[Row], topologies: Sequence[str]) -> list[Row]:
    """At 20,000 nodes: the node sync's median, then the sync's peak memory."""
    found = [
        _at_most(
            "node sync median at 20,000 < 1 ms",
            topology,
            node["median_ms"] if node else None,
            1.0,
            "" if node else _skipped(row),
            below=True,
        )
        for topology, row, node in _measured(rows, 20_000, topologies, "node_sync")
    ]
    for topology, row, rss in _measured(rows, 20_000, topologies, "rss"):
        note = (rss or {}).get("error") or ("" if rss else _skipped(row, "not run"))
        value = rss.get("above_idle_x_body") if rss else None
        found.append(_at_most("peak RSS at 20,000 ≤ 4× body above idle", topology, value, 4, note))
    return found


def _scaling_targets(rows: Sequence[Row], topologies: Sequence[str]) -> list[Row]:
    """How the sync's time grows from 5,000 to 20,000 nodes (predicted where 20,000 was
    skipped: a prediction never passes)."""
    name, limit, found = "20k/5k sync time ≤ 4.4", 4.4, []
    for topology in topologies:
        small, big = _find(rows, 5_000, topology), _find(rows, 20_000, topology)
        base = small["sync"]["median_ms"] if small and small.get("sync") else None
        if base is not None and big and big.get("sync"):
            ratio = big["sync"]["median_ms"] / base
            found.append(_at_most(name, topology, ratio, limit, digits=2))
            continue
        predicted, note = (big or {}).get("predicted_s"), _skipped(big)
        if predicted and base is not None:
            ratio = round(predicted * 1e3 / base, 2)
            note = f"predicted from the measured exponent; {note}"
            found.append(_target(name, topology, ratio, limit, False, note))
        else:
            found.append(_target(name, topology, None, limit, None, note))
    return found


def _paths_targets(rows: Sequence[Row], topologies: Sequence[str]) -> list[Row]:
    found = []
    for topology, _, paths in _measured(rows, 5_000, topologies, "paths"):
        value = paths["count_ms"] / 1e3 if paths else None
        note = (
            ("explodes: a lower bound" if paths["exploded"] else "exact")
            if paths
            else "size not run"
        )
        name = "add-path route count at 5,000 ≤ 10 s"
        found.append(_at_most(name, topology, value, 10, note, digits=2))
    return found


def _load_targets(loads: dict[str, Any]) -> list[Row]:
    """Against `python -m hooks serve` (bench/load.py): a 20,000-node sync over HTTP and
    /healthz meanwhile, slowloris connections, concurrent syncs' memory."""
    during = loads.get("healthz_during_20000", {})
    answered = during.get("status") == 200
    sync = during.get("steady_median_ms") or during.get("sync_ms")
    sync_note = phase_note(during) if sync is not None else during.get("skipped", "not run")
    healthz_note = (
        f"syncs {during['syncs_ms']} ms, {during['healthz_probes']} probes"
        if "syncs_ms" in during
        else during.get("skipped", "not run")
    )
    crawl = loads.get("slowloris_1000", {})
    crawl_note = (
        f"node sync {crawl['node_sync_status']} in {crawl['node_sync_ms']} ms,"
        f" {crawl['connections']} connections opened in {crawl['open_ms']} ms, /healthz"
        f" {crawl['healthz_arrival_ms']} ms as they arrived"
        if crawl.get("healthz_max_ms") is not None
        else crawl.get("skipped", "not run")
    )
    burst = loads.get("concurrent_5x5000", {})
    burst_note = (
        f"slowest {burst['slowest_ms']} ms, statuses {burst['statuses']}"
        if "slowest_ms" in burst
        else burst.get("skipped", "not run")
    )
    healthz = during.get("healthz_max_ms")
    crawled = crawl.get("node_sync_status") == 200
    all_200 = burst.get("statuses") == [200] * 5
    return [
        _at_most(
            "topology sync of 20,000 nodes over HTTP ≤ 720 ms",
            "simple",
            sync,
            720,
            sync_note,
            holds=answered,
        ),
        _at_most(
            "/healthz during a 20,000-node sync < 200 ms",
            "simple",
            healthz,
            200,
            healthz_note,
            below=True,
            holds=answered,
        ),
        _at_most(
            "1,000 slowloris connections: /healthz < 200 ms, a node sync answered",
            "simple",
            crawl.get("healthz_max_ms"),
            200,
            crawl_note,
            below=True,
            holds=crawled,
        ),
        _at_most(
            "5 concurrent 5,000-node syncs all 200, peak RSS ≤ 368 MB",
            "simple",
            burst.get("peak_rss_mb"),
            368,
            burst_note,
            holds=all_200,
        ),
    ]


def _plan_targets(
    plans: dict[str, Any], churn: dict[str, Any], plan_size: int, topologies: Sequence[str]
) -> list[Row]:
    """The plans at `plan_size` nodes: multi's BGPPeers, a joining node's label changes."""
    multi = plans.get("multi")
    found = [
        _at_most(
            f"BGPPeers in multi at {plan_size:,} < 100",
            "multi",
            multi["bgp_peers"] if multi else None,
            100,
            "" if multi else "not run",
            below=True,
        )
    ]
    for topology in topologies:
        event = churn.get(topology, {}).get("node joins")
        found.append(
            _at_most(
                f"node joining ({plan_size:,}) changes labels on ≤ 1 node",
                topology,
                event["hooks"]["labels_changed"] if event else None,
                1,
                "" if event else "not run",
            )
        )
    return found


def phase_note(during: Row) -> str:
    """Where a 20,000-node sync's time goes, as the server logged it (median over resyncs)."""
    phases = during.get("phases") or []
    steady = phases[1:] or phases
    if not steady:
        return "no server log"
    parts = []
    for name in PHASES[1:]:
        values = [p[name] for p in steady if name in p]
        if values:
            after = " after the answer" if name == "release_ms" else ""
            parts.append(f"{name[:-3]} {statistics.median(values):,.0f}{after}")
    return "server: " + ", ".join(parts) + " ms (median of resyncs)"
