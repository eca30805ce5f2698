"""The tables of bench/RESULTS.md (and the machine and commit measured); the targets are in
targets.py."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bench.load import PHASES
from bench.targets import Row, topology_order
from hooks.stamps import stamp


def revision() -> dict[str, Any]:
    """The commit measured, and whether hooks/ had uncommitted changes then."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "hooks_modified": bool(git("status", "--porcelain", "hooks")),
    }


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "date": stamp(datetime.now(UTC)),
        **revision(),
    }


def exponent(t1: float, t2: float, n1: int, n2: int) -> float:
    return math.log(t2 / t1) / math.log(n2 / n1)


def load_section(loads: dict[str, Any]) -> list[str]:
    """The load figures against `python -m hooks serve` (bench/load.py), simple topology."""
    if not loads:
        return []
    lines = [
        "",
        "## Load",
        "",
        "Each on a fresh `python -m hooks serve` (default settings) warmed by one small sync;"
        " bodies sent by raw sockets; /healthz probed every 50 ms by another socket. Phases are"
        " the server's own log fields (ms); the decoded Nodes are released after the answer is"
        " sent, so the server total leaves the release out.",
        "",
    ]
    during = loads.get("healthz_during_20000", {})
    if "syncs_ms" in during:
        header = ["sync", "answer ms", *(name[:-3] for name in PHASES), "server total"]
        body = []
        for index, total in enumerate(during["syncs_ms"]):
            phase = during["phases"][index] if index < len(during["phases"]) else {}
            body.append(
                [
                    "first (route count)" if index == 0 else f"resync {index}",
                    f"{total:,.0f}",
                    *(_ms(phase.get(name)) for name in PHASES),
                    _ms(phase.get("duration_ms")),
                ]
            )
        lines += [
            f"20,000 nodes ({during['body_mb']} MB), statuses {during['statuses']}:"
            f" /healthz worst {during['healthz_max_ms']} ms over {during['healthz_probes']}"
            f" probes; server RSS {during.get('rss_after_mb', '?')} MB after them (the body's"
            " buffer and Node texts kept for the next sync), peak"
            f" {during.get('peak_rss_mb', '?')} MB.",
            "",
            *_table(header, body),
            "",
        ]
    said = []
    burst = loads.get("concurrent_5x5000", {})
    if "slowest_ms" in burst:
        said.append(
            f"5 concurrent 5,000-node syncs ({burst['body_mb']} MB each): statuses"
            f" {burst['statuses']}, slowest {burst['slowest_ms']:,.0f} ms, server RSS idle"
            f" {burst['idle_rss_mb']} MB, peak {burst['peak_rss_mb']} MB."
        )
    crawl = loads.get("slowloris_1000", {})
    if "connections" in crawl:
        said.append(
            f"{crawl['connections']:,} slowloris connections (part of a request head, then"
            f" nothing): opened in {crawl['open_ms']:,.0f} ms; /healthz"
            f" {crawl['healthz_arrival_ms']} ms right after, as the server took them in, then"
            f" worst {crawl['healthz_max_ms']} ms over {crawl['healthz_probes']} probes with all"
            " of them stalled; a node sync"
            f" answered {crawl['node_sync_status']} in {crawl['node_sync_ms']} ms."
        )
    elif crawl:
        said.append(f"Slowloris: {crawl.get('skipped', 'not run')}.")
    for text in said:
        lines += [text, ""]
    return lines[:-1]


def _count(value: float, exploded: bool) -> str:
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"
    return f"≥ {text}" if exploded else text


def _path_cells(paths: Row | None) -> list[str]:
    if not paths:
        return ["-", "-"]
    x = paths["exploded"]
    return [_count(paths["paths_client_max"], x), _count(paths["routes_per_node_max"], x)]


def paths_table(rows: Sequence[Row]) -> list[str]:
    """Routing-table size with Calico's `add paths on`, per node count and topology."""
    body = []
    for r in rows:
        p = r.get("paths")
        if not p:
            continue
        x = p["exploded"]
        body.append(
            [
                f"{r['n']:,}",
                r["topology"],
                f"{p['reflectors']} / {p['cluster_ids']}",
                f"{_count(p['paths_client_max'], x)} / {_count(p['paths_client_mean'], x)}",
                f"{_count(p['paths_rr_max'], x)} / {_count(p['paths_rr_mean'], x)}",
                f"{_count(p['routes_per_node_max'], x)} / {_count(p['routes_per_node_mean'], x)}",
                f"{p['sessions_per_client_max']} / {p['sessions_per_client_mean']}",
                f"{p['sessions_per_rr_max']} / {p['sessions_per_rr_mean']}",
                "EXPLODES" if x else "exact",
                _ms(p["count_ms"]),
            ]
        )
    if not body:
        return []
    header = [
        "nodes",
        "topology",
        "RRs / cluster IDs",
        "paths per remote prefix at a client: max / mean",
        "at an RR: max / mean",
        "routes per node: max / mean",
        "sessions per client: max / mean",
        "per RR: max / mean",
        "count",
        "count ms",
    ]
    return [
        "",
        "## Routing tables (add paths)",
        "",
        "Counted by `hooks.paths` on the steady state of each row: every route BIRD holds with"
        " `add paths on` (one per distinct path per session), each node originating one prefix."
        " ≥ = the count hit its cap (EXPLODES): a lower bound. count ms = time of the count alone.",
        "",
        *_table(header, body),
    ]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f}"


def _x(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return out


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"{m['date']} · {m['nproc']} CPUs, {m['cpu']} · Python {m['python']} · "
        f"`python -m bench{' ' + result['args'] if result['args'] else ''}` · commit"
        f" {m['commit'][:10]}{' + uncommitted hooks/ changes' if m['hooks_modified'] else ''}",
        "",
        "Nodes are generated like an EKS cluster's (10-15 KB of JSON each, 3 zones, racks of 40);"
        " bodies are the steady state (nodes labelled, topology status and BGPPeers observed)."
        " In-process = decode + sync + encode on the body, as the route does. floor = one pass"
        " over the bytes (`body.count(b'\"')`); orjson = `orjson.loads(body)`, GC on; ×floor and"
        " ×orjson = sync median / reference median. exp = log(t2/t1)/log(n2/n1) from the previous"
        " size. Node sync: a client node's request (its Node + the topology with status)."
        " load = 1-minute load average when the row started (2 CPUs: above ~1.5, other work"
        " was competing; the ratios are timed in turns and hold better than absolute times)."
        " HTTP = the same body POSTed to `python -m hooks serve` (uvicorn) on loopback by a client"
        " that is not the bottleneck: curl streaming the body from a file (HTTP med/p95, curl's"
        " own start included, a few ms), and a raw socket writer (`sendall` of the body, answer"
        " read into one buffer: HTTP raw med). Node HTTP uses the raw socket writer.",
    ]
    plan_size = result.get("plan_size", 5000)
    lines += _latency_section(result["rows"])
    lines += _memory_section(result["rows"], result.get("server_idle_rss"))
    lines += paths_table(result["rows"])
    lines += _plans_section(result.get("plans", {}), plan_size)
    lines += _churn_section(result.get("churn", {}), plan_size)
    lines += load_section(result.get("load") or {})
    lines += _targets_section(result["targets"])
    return "\n".join(lines) + "\n"


def _latency_section(rows: Sequence[Row]) -> list[str]:
    """In-process and HTTP timings per row, against the decode floor and orjson."""
    header = [
        "nodes",
        "topology",
        "body MB",
        "floor",
        "orjson",
        "sync med",
        "sync p95",
        "×floor",
        "×orjson",
        "exp",
        "HTTP med",
        "HTTP p95",
        "HTTP raw med",
        "node sync med",
        "node p95",
        "node HTTP med",
        "load",
    ]
    body = []
    for r in rows:
        sync = r.get("sync")
        if sync is None:
            body.append(
                [
                    f"{r['n']:,}",
                    r["topology"],
                    _mb(r.get("body_bytes")),
                    "-",
                    "-",
                    f"skipped ({r.get('skipped', '')})",
                    *["-"] * 11,
                ]
            )
            continue
        http, node, node_http = r.get("http"), r.get("node_sync"), r.get("node_http")
        raw = r.get("http_raw")
        body.append(
            [
                f"{r['n']:,}",
                r["topology"],
                _mb(r["body_bytes"]),
                _ms(r["floor"]["median_ms"]),
                _ms(r["orjson"]["median_ms"]),
                _ms(sync["median_ms"]),
                _ms(sync["p95_ms"]),
                _x(r["x_floor"]),
                _x(r["x_orjson"], 3),
                _x(r.get("exponent")),
                _ms(http["median_ms"]) if http else "-",
                _ms(http["p95_ms"]) if http else "-",
                _ms(raw["median_ms"]) if raw else "-",
                _ms(node["median_ms"]) if node else "-",
                _ms(node["p95_ms"]) if node else "-",
                _ms(node_http["median_ms"]) if node_http else "-",
                str(r.get("load_before", "-")),
            ]
        )
    return ["", "## Hook latency (ms)", "", *_table(header, body)]


def _memory_section(rows: Sequence[Row], idle: int | None) -> list[str]:
    """One sync's peak memory in a fresh process, per row."""
    header = [
        "nodes",
        "topology",
        "body MB",
        "idle RSS MB",
        "peak MB",
        "peak − idle MB",
        "×body",
        "sync Δ MB",
        "×body",
        "server peak − idle MB",
    ]
    body = []
    for r in rows:
        rss = r.get("rss")
        if not rss or "error" in rss:
            continue
        server = r.get("server_peak_above_idle")
        body.append(
            [
                f"{r['n']:,}",
                r["topology"],
                _mb(rss["body"]),
                _mb(rss["idle"]),
                _mb(rss["peak"]),
                _mb(rss["above_idle"]),
                _x(rss["above_idle_x_body"]),
                _mb(rss["sync_delta"]),
                _x(rss["sync_delta_x_body"]),
                _mb(server),
            ]
        )
    lines = ["", "## Memory of one topology sync (fresh process)", "", *_table(header, body)]
    if idle:
        lines += ["", f"Idle RSS of `python -m hooks serve`: {idle / 1e6:.1f} MB."]
    return lines


def _plans_section(plans: dict[str, Any], plan_size: int) -> list[str]:
    """The plan of each topology at `plan_size` nodes: RRs, BGPPeers, sessions, routes."""
    if not plans:
        return []
    header = [
        "topology",
        "RRs",
        "groups",
        "BGPPeers",
        "sessions/RR max",
        "clients/RR max",
        "sessions/client max",
        "routes (verify)",
        "paths/prefix at a client max",
        "routes/node max",
    ]
    body = []
    for topology in sorted(plans, key=topology_order):
        p = plans[topology]
        verified = p.get("verify")
        body.append(
            [
                topology,
                str(p["reflectors"]),
                str(p["groups"]),
                str(p["bgp_peers"]),
                str(p["sessions_per_rr_max"]),
                str(p["clients_per_rr_max"]),
                str(p["sessions_per_client_max"]),
                "-" if not verified else "OK" if verified["reachable"] else "BROKEN",
                *_path_cells(p.get("paths")),
            ]
        )
    return ["", f"## Plans at {plan_size:,} nodes", "", *_table(header, body)]


def _churn_section(churn: dict[str, Any], plan_size: int) -> list[str]:
    """What each event changes at `plan_size` nodes: the hooks against a plan from scratch."""
    if not churn:
        return []
    lines = [
        "",
        f"## Churn per event at {plan_size:,} nodes",
        "",
        "labels = nodes whose labels or cluster ID change; lost = clients that lose one of"
        " their RRs. hooks = what the hooks do (current RRs kept, status read back);"
        " scratch = the same code with no status and no labels (a plan from scratch).",
        "",
    ]
    events = ["node joins", "RR deleted", "RR cordoned", "zone of 200 joins"]
    header = ["topology"] + [f"{e}: {k}" for e in events for k in ("labels", "lost")]
    body = []
    for topology in sorted(churn, key=topology_order):
        cells = [topology]
        for event in events:
            found = churn[topology].get(event)
            for key in ("labels_changed", "clients_lost_rr"):
                cells.append(
                    "-" if not found else f"{found['hooks'][key]} / {found['scratch'][key]}"
                )
        body.append(cells)
    return [*lines, "Cells: hooks / scratch.", "", *_table(header, body)]


def _targets_section(found: Sequence[Row]) -> list[str]:
    body = [
        [
            t["verdict"],
            t["target"],
            t["topology"],
            "-" if t["value"] is None else str(t["value"]),
            str(t["limit"]),
            t["note"],
        ]
        for t in found
    ]
    return [
        "",
        "## Targets",
        "",
        *_table(["", "target", "topology", "value", "limit", "note"], body),
    ]
