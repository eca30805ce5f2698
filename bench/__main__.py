"""`python -m bench`: hook latency against the JSON-decode floor, memory, BGPPeers and churn, at
100 to 20,000 realistic nodes, for the four topologies; writes bench/results.json and RESULTS.md.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bench import load, plan_input
from bench import plans as plan_bench
from bench.generate import NOW, SIZES, TOPOLOGIES, Generator, Json, slim, steady_state
from bench.measure import (
    Samples,
    Server,
    floor_call,
    interleaved,
    node_sync_call,
    orjson_call,
    peak_rss,
    per_call,
    timed,
    topology_sync_call,
)
from bench.report import exponent, machine, markdown
from bench.targets import targets

HERE = Path(__file__).resolve().parent
QUICK = (100, 1_000, 5_000)
ENVIRON: dict[str, str] = {}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def predict(rows: Sequence[dict[str, Any]], topology: str, size: int) -> float | None:
    """Seconds one sync of `size` nodes should take, from the sizes measured so far."""
    done = [r for r in rows if r["topology"] == topology and r.get("sync")]
    if not done:
        return None
    last = done[-1]
    slope = 1.0
    if len(done) >= 2:
        slope = max(1.0, last.get("exponent") or 1.0)
    seconds: float = last["sync"]["median_ms"] / 1e3 * (size / last["n"]) ** slope
    return seconds


def measure_row(
    nodes: Sequence[Json],
    topology: str,
    args: argparse.Namespace,
    server: Server | None,
    server_idle: int,
) -> dict[str, Any]:
    """One size and topology: its steady state, the in-process timings, over HTTP, memory."""
    row, body, node_bodies, rr_body = _steady_row(nodes, topology, args)
    gc.collect()
    gc.freeze()  # the generated cluster is not the service's heap: keep it out of collections
    row["load_before"] = round(os.getloadavg()[0], 2)
    row |= _in_process(body, node_bodies, rr_body, args)
    if server is not None:
        row |= _over_http(server, server_idle, body, node_bodies, args)
    if not args.no_rss:
        row["rss"] = peak_rss(body, topology)
    row["load_after"] = round(os.getloadavg()[0], 2)
    gc.unfreeze()
    return row


def _steady_row(
    nodes: Sequence[Json], topology: str, args: argparse.Namespace
) -> tuple[dict[str, Any], bytes, list[bytes], bytes | None]:
    """The steady state's figures (size, RRs, BGPPeers, routes; whether a sync of it changes
    nothing), its topology body, 20 client nodes' bodies and one RR's."""
    size = len(nodes)
    started = time.perf_counter()
    state = steady_state(nodes, topology, ENVIRON)
    body = state.topology_body()
    row: dict[str, Any] = {"n": size, "topology": topology, "body_bytes": len(body)}
    row["reflectors"] = len(state.reflectors)
    row["bgp_peers"] = len(state.children)
    if not args.no_paths:
        row["paths"] = plan_bench.path_stats(state.nodes, state.children)
    answer = orjson.loads(topology_sync_call(body, ENVIRON, NOW))
    previous = {k: v for k, v in state.parent["status"].items() if k != "observedGeneration"}
    row["steady"] = answer["status"] == previous
    row["answer_bytes"] = len(orjson.dumps(answer))
    del answer
    log(
        f"  {size:>6,} {topology:<9} state built in {time.perf_counter() - started:.1f}s,"
        f" body {len(body) / 1e6:.1f} MB, steady={row['steady']}"
    )
    reflectors = set(state.reflectors)
    clients = [i for i, n in enumerate(state.nodes) if n["metadata"]["name"] not in reflectors]
    picks = clients[:: max(1, len(clients) // 20)][:20]
    node_bodies = [state.node_body(i) for i in picks]
    rr_index = next(
        (i for i, n in enumerate(state.nodes) if n["metadata"]["name"] in reflectors), None
    )
    rr_body = state.node_body(rr_index) if rr_index is not None else None
    row["node_body_bytes"] = max(len(b) for b in node_bodies)
    return row, body, node_bodies, rr_body


def _in_process(
    body: bytes, node_bodies: Sequence[bytes], rr_body: bytes | None, args: argparse.Namespace
) -> dict[str, Any]:
    """The topology sync against the decode floor and orjson, timed in turns; node syncs."""
    row: dict[str, Any] = {}
    found = interleaved(
        {
            "floor": lambda: floor_call(body),
            "sync": lambda: topology_sync_call(body, ENVIRON, NOW),
            "orjson": lambda: orjson_call(body),
        },
        args.repeats,
        args.budget,
    )
    sync = found["sync"]
    for name, samples in found.items():
        row[name] = samples.as_json()
    row["x_floor"] = round(sync.median / found["floor"].median, 2)
    row["x_orjson"] = round(sync.median / found["orjson"].median, 4)
    calls = [functools.partial(node_sync_call, node, ENVIRON) for node in node_bodies]
    for call in calls:
        call()
    row["node_sync"] = _cycle(calls, args.node_calls).as_json()
    if rr_body is not None:
        row["node_sync_rr"] = per_call(lambda: node_sync_call(rr_body, ENVIRON), 50).as_json()
    return row


def _over_http(
    server: Server,
    server_idle: int,
    body: bytes,
    node_bodies: Sequence[bytes],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The same syncs POSTed to the server: curl where there is one, and a raw socket."""
    row: dict[str, Any] = {}
    server.post("/topology/sync", body)  # warm, and the peak of the first sync counts too
    reset = server.reset_peak()
    if shutil.which("curl"):
        server.post_curl("/topology/sync", body)  # writes the body file, untimed
        http = timed(
            lambda: server.post_curl("/topology/sync", body), args.http_repeats, args.budget
        )
        row["http"] = http.as_json()
        row["http_client"] = "curl"
    raw = timed(lambda: server.post("/topology/sync", body), args.http_repeats, args.budget)
    row["http_raw"] = raw.as_json()
    row.setdefault("http", row["http_raw"])
    row.setdefault("http_client", "raw socket")
    if reset:
        row["server_peak_above_idle"] = server.memory()["VmHWM"] - server_idle
    posts = [lambda b=b: server.post("/node/sync", b) for b in node_bodies]
    row["node_http"] = _cycle(posts, args.node_calls // 2).as_json()
    return row


def _cycle(calls: Sequence[Any], count: int) -> Samples:
    samples: list[float] = []
    for i in range(count):
        samples += per_call(calls[i % len(calls)], 1).seconds
    return Samples(tuple(samples))


def _line(row: dict[str, Any]) -> str:
    if not row.get("sync"):
        return f"  {row['n']:>6,} {row['topology']:<9} skipped: {row.get('skipped')}"
    http = row.get("http", {})
    rss = row.get("rss", {})
    return (
        f"  {row['n']:>6,} {row['topology']:<9} sync {row['sync']['median_ms']:9.1f} ms"
        f" (floor ×{row['x_floor']:.2f}, orjson ×{row['x_orjson']:.3f},"
        f" exp {row.get('exponent') or 0:.2f})"
        f" HTTP {http.get('median_ms', 0):9.1f} ms node {row['node_sync']['median_ms']:.3f} ms"
        f" peak−idle ×{rss.get('above_idle_x_body', 0):.2f} body"
    )


def measure_load(nodes: Sequence[Json], gen: Generator) -> dict[str, Any]:
    """The figures issue 15 says held, each on a fresh server (simple topology), warmed by one
    small sync as a running server is."""
    found: dict[str, Any] = {}
    nodes = [*nodes, *(gen.node(i) for i in range(len(nodes), 20_000))]
    small = steady_state(nodes[:30], "simple", ENVIRON)
    for name, size in (
        ("healthz_during_20000", 20_000),
        ("concurrent_5x5000", 5_000),
        ("slowloris_1000", 0),
    ):
        body = steady_state(nodes[:size], "simple", ENVIRON).topology_body() if size else b""
        server = Server(keep_log=True)
        try:
            server.post("/topology/sync", small.topology_body())
            if size == 20_000:  # the first sync of a plan, then three resyncs
                found[name] = load.healthz_during_sync(server, body, repeats=4)
            elif size:
                found[name] = load.concurrent_syncs(server, body, 5)
            else:
                found[name] = load.slowloris(server, 1000, small.node_body(0))
        finally:
            server.close()
        del body
        gc.collect()
        log(f"  load {name}: {json.dumps(found[name])}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = sorted(
        {int(s.replace("_", "")) for s in args.sizes.split(",")}
        if args.sizes
        else set(QUICK if args.quick else SIZES)
    )
    topologies = [t for t in args.topologies.split(",") if t]
    started = time.perf_counter()
    gen = Generator(args.seed)
    count = max([*sizes, 0 if args.no_plans else args.plan_size, args.plan_input_size])
    log(f"generating {count:,} nodes (seed {args.seed})")
    nodes = [gen.node(i) for i in range(count)]
    gc.collect()
    rows, server_idle = _measure_sizes(nodes, sizes, topologies, args)
    loads: dict[str, Any] = {}
    if not args.no_load and not args.no_http:
        loads = measure_load(nodes, gen)
    plans, churn = _measure_plans(nodes, rows, topologies, gen, args)
    inputs: dict[str, Any] = {}
    if args.plan_input_size:
        inputs = plan_input.measure(nodes[: args.plan_input_size])
        log(f"  plan input: {json.dumps(inputs['rows'])}")
    result: dict[str, Any] = {
        "machine": machine(),
        "args": " ".join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed,
        "server_idle_rss": server_idle,
        "plan_size": args.plan_size,
        "rows": rows,
        "plans": plans,
        "churn": churn,
        "plan_input": inputs,
        "load": loads,
    }
    result["targets"] = targets(rows, plans, churn, args.plan_size, loads)
    result["seconds"] = round(time.perf_counter() - started, 1)
    _write(result, inputs, args.output)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100, 1,000 and 5,000 nodes only")
    parser.add_argument("--sizes", help="comma-separated node counts (default: 100 to 20,000)")
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timings per measurement (max)")
    parser.add_argument("--http-repeats", type=int, default=3)
    parser.add_argument("--node-calls", type=int, default=200)
    parser.add_argument(
        "--budget", type=float, default=6.0, help="seconds one measurement may take in all"
    )
    parser.add_argument(
        "--max-call",
        type=float,
        default=10.0,
        help="skip a size whose sync is predicted to take longer than this (seconds)",
    )
    parser.add_argument("--plan-size", type=int, default=5_000, help="nodes for plans and churn")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--no-plans", action="store_true", help="skip BGPPeers/sessions/churn")
    parser.add_argument(
        "--plan-input-size",
        type=int,
        default=plan_input.DEFAULT_NODES,
        help="nodes for `plan` on a JSON and a YAML file (0: skip)",
    )
    parser.add_argument("--no-paths", action="store_true", help="skip the add-path route count")
    parser.add_argument(
        "--no-load",
        action="store_true",
        help="skip a 20,000-node sync over HTTP with /healthz probed, 5 concurrent 5,000-node"
        " syncs, and 1,000 slowloris connections",
    )
    parser.add_argument("--output", type=Path, default=HERE, help="where results go")
    return parser


def _measure_sizes(
    nodes: Sequence[Json], sizes: Sequence[int], topologies: Sequence[str], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], int]:
    """A row per size and topology (skipped where a sync is predicted over --max-call), and the
    server's idle RSS (0 without HTTP)."""
    server = None if args.no_http else Server()
    server_idle = 0
    rows: list[dict[str, Any]] = []
    try:
        if server is not None:
            warm = steady_state(nodes[:30], "simple", ENVIRON)
            server.post("/topology/sync", warm.topology_body())
            server.post("/node/sync", warm.node_body(0))
            server_idle = server.memory()["VmRSS"]
            log(f"server idle RSS {server_idle / 1e6:.1f} MB")
        for size in sizes:
            for topology in topologies:
                expected = predict(rows, topology, size)
                if expected is not None and expected > args.max_call:
                    rows.append(
                        {
                            "n": size,
                            "topology": topology,
                            "predicted_s": round(expected, 1),
                            "skipped": f"predicted {expected:.0f} s per sync > --max-call"
                            f" {args.max_call:.0f} s",
                        }
                    )
                    log(_line(rows[-1]))
                    continue
                row = measure_row(nodes[:size], topology, args, server, server_idle)
                earlier = [r for r in rows if r["topology"] == topology and r.get("sync")]
                if earlier:
                    last = earlier[-1]
                    row["exponent"] = round(
                        exponent(
                            last["sync"]["median_ms"], row["sync"]["median_ms"], last["n"], size
                        ),
                        3,
                    )
                rows.append(row)
                log(_line(row))
    finally:
        if server is not None:
            server.close()
    return rows, server_idle


def _measure_plans(
    nodes: Sequence[Json],
    rows: Sequence[dict[str, Any]],
    topologies: Sequence[str],
    gen: Generator,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each topology's plan at --plan-size nodes, and the churn of each event on it."""
    plans: dict[str, Any] = {}
    churn: dict[str, Any] = {}
    if args.no_plans:
        return plans, churn
    size = args.plan_size
    view = [slim(n) for n in nodes[:size]]
    for topology in topologies:
        expected = predict([r for r in rows if r["n"] <= size], topology, size)
        if expected is not None and expected > args.max_call:
            log(f"  plans {topology}: skipped (predicted {expected:.0f} s per sync)")
            continue
        began = time.perf_counter()
        base = plan_bench.base_plan(view, topology, ENVIRON)
        plans[topology] = plan_bench.plan_stats(base)
        churn[topology] = plan_bench.churn(base, topology, gen, size, ENVIRON)
        log(
            f"  plans {topology}: {json.dumps(plans[topology])}"
            f" churn {json.dumps(churn[topology])} ({time.perf_counter() - began:.0f}s)"
        )
    return plans, churn


def _write(result: dict[str, Any], inputs: dict[str, Any], output: Path) -> None:
    """RESULTS.md (printed too) and results.json under `output`."""
    text = markdown(result)
    if inputs:
        text = text.rstrip("\n") + "\n\n" + "\n".join(plan_input.markdown(inputs)) + "\n"
    print(text)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (output / "RESULTS.md").write_text(text)
    log(f"done in {result['seconds']:.0f}s; wrote {output / 'results.json'} and RESULTS.md")


if __name__ == "__main__":
    raise SystemExit(main())
