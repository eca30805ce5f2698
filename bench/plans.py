"""What a plan costs the network: BGPPeers, sessions, and churn when the cluster changes.

Plans come from `hooks.offline.run_plan` (topology sync, node sync for every node, labels
applied, again until still), on nodes reduced to what the plan reads (`generate.slim`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from bench.generate import NOW, Generator, Json, slim, strip_ours, topology_object
from hooks import wire
from hooks.offline import PlanResult, run_plan

Matcher = Callable[[Mapping[str, str]], bool]


def _selector(text: str) -> Matcher:
    """A Calico selector; hooks.verify parses the full grammar when it is there."""
    try:
        from hooks.selectors import parse_selector
    except ImportError:  # only the two forms the hooks render
        return _simple_selector(text)
    selector = parse_selector(text)
    return selector.matches


def _simple_selector(text: str) -> Matcher:
    key, op, rest = text.partition(" == ")
    if op:
        value = rest.strip("'")
        return lambda labels: labels.get(key) == value
    key, op, rest = text.partition(" in ")
    if op:
        values = {v.strip().strip("'") for v in rest.strip("{}").split(",")}
        return lambda labels: labels.get(key) in values
    raise ValueError(f"selector {text!r} needs hooks.verify")


def sessions(nodes: Sequence[Json], peers: Iterable[Json]) -> dict[str, set[str]]:
    """node → the nodes it has a BGP session with (one BGPPeer makes both directions)."""
    labels = {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in nodes}
    adjacency: dict[str, set[str]] = {name: set() for name in labels}
    for peer in peers:
        spec = peer["spec"]
        local_match = _selector(spec["nodeSelector"])
        remote_match = _selector(spec["peerSelector"])
        local = [name for name, found in labels.items() if local_match(found)]
        remote = [name for name, found in labels.items() if remote_match(found)]
        for name in local:
            adjacency[name].update(remote)
        for name in remote:
            adjacency[name].update(local)
    for name, neighbours in adjacency.items():
        neighbours.discard(name)
    return adjacency


def cluster_ids(nodes: Iterable[Json]) -> dict[str, str]:
    """RR → its cluster ID (the annotation the node hook sets)."""
    found = {}
    for node in nodes:
        cid = (node["metadata"].get("annotations") or {}).get(wire.CLUSTER_ID_ANNOTATION)
        if cid:
            found[node["metadata"]["name"]] = cid
    return found


def plan_stats(result: PlanResult) -> dict[str, Any]:
    """BGPPeers, RRs, groups; sessions and rr-clients per RR (an RR marks a peer a client when
    their cluster IDs differ, RFC 4456); routing checked by hooks.verify when it is there."""
    adjacency = sessions(result.nodes, result.bgp_peers)
    ids = cluster_ids(result.nodes)
    per_rr = {rr: len(adjacency[rr]) for rr in ids}
    clients = {rr: sum(1 for p in adjacency[rr] if ids.get(p) != ids[rr]) for rr in ids}
    client_degree = [len(adjacency[n]) for n in adjacency if n not in ids]
    stats: dict[str, Any] = {
        "bgp_peers": len(result.bgp_peers),
        "reflectors": len(ids),
        "groups": len(result.status.get("groups", [])),
        "sessions_per_rr_max": max(per_rr.values(), default=0),
        "clients_per_rr_max": max(clients.values(), default=0),
        "sessions_per_client_max": max(client_degree, default=0),
        "rounds": result.rounds,
        "ready": next(
            (c["reason"] for c in result.status.get("conditions", []) if c["type"] == "Ready"), ""
        ),
    }
    try:
        from hooks.sessions import nodes_from_objects
        from hooks.verify import verify
    except ImportError:
        return stats
    report = verify(nodes_from_objects(result.nodes), result.bgp_peers, failures=False)
    stats["verify"] = {
        "reachable": report.reachable,
        "sessions_per_rr_max": report.sessions_per_rr_max,
        "clients_per_rr_max": report.clients_per_rr_max,
    }
    stats["paths"] = path_stats(result.nodes, result.bgp_peers)
    return stats


# The service caps a count at hooks.paths.DEFAULT_BUDGET (3 million steps) to bound a sync; the
# bench can wait: hierarchy at 20,000 nodes (about 1,000 rack groups) needs 4.5 million.
BENCH_PATH_BUDGET = 20_000_000


def path_stats(nodes: Sequence[Json], children: Iterable[Json]) -> dict[str, Any] | None:
    """The add-path route count (hooks.paths) of a labelled cluster and its BGPPeers, and how
    long the count took (nodes already read into the simulator's form)."""
    try:
        from hooks.paths import count_paths
        from hooks.sessions import nodes_from_objects
    except ImportError:
        return None
    sim = nodes_from_objects(nodes)
    peers = [child for child in children if child.get("kind") == "BGPPeer"]
    started = time.perf_counter()
    report = count_paths(sim, peers, budget=BENCH_PATH_BUDGET)
    return report.to_dict() | {"count_ms": round((time.perf_counter() - started) * 1e3, 1)}


# --- churn ---------------------------------------------------------------------------------------


def _ours(node: Json) -> tuple[tuple[tuple[str, str], ...], str | None]:
    meta = node["metadata"]
    labels = tuple(sorted((meta.get("labels") or {}).items()))
    return labels, (meta.get("annotations") or {}).get(wire.CLUSTER_ID_ANNOTATION)


def compare(
    before: PlanResult,
    after_nodes: Sequence[Json],
    after_peers: list[Json],
    joined: Mapping[str, Json],
    old_adj: Mapping[str, set[str]] | None = None,
) -> dict[str, int]:
    """Nodes whose labels (or cluster ID) differ, and clients that lost one of their RRs."""
    old = {n["metadata"]["name"]: n for n in before.nodes} | dict(joined)
    changed = sum(1 for n in after_nodes if _ours(n) != _ours(old[n["metadata"]["name"]]))
    old_rrs, new_rrs = set(cluster_ids(before.nodes)), set(cluster_ids(after_nodes))
    if old_adj is None:
        old_adj = sessions(before.nodes, before.bgp_peers)
    new_adj = sessions(after_nodes, after_peers)
    lost = 0
    for name, neighbours in new_adj.items():
        if name in new_rrs or name in old_rrs or name not in old_adj:
            continue
        if (old_adj[name] & old_rrs) - neighbours:
            lost += 1
    return {"labels_changed": changed, "clients_lost_rr": lost}


def _events(
    state: PlanResult, gen: Generator, count: int
) -> Iterable[tuple[str, list[Json], dict[str, Json]]]:
    """(event, nodes after it, nodes that joined as they were before any label)."""
    nodes = state.nodes
    rrs = [rr["node"] for rr in state.status.get("routeReflectors", [])]
    newcomer = slim(gen.node(count))
    yield "node joins", [*copy.deepcopy(nodes), newcomer], {newcomer["metadata"]["name"]: newcomer}
    gone = rrs[0]
    yield "RR deleted", [copy.deepcopy(n) for n in nodes if n["metadata"]["name"] != gone], {}
    cordoned = copy.deepcopy(nodes)
    for node in cordoned:
        if node["metadata"]["name"] == rrs[1 % len(rrs)]:
            node["spec"]["unschedulable"] = True
            node["spec"]["taints"] = [
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
            ]
    yield "RR cordoned", cordoned, {}
    zone = "us-east-1d"
    fresh = [
        slim(gen.node(count + 1 + j, zone=zone, rack=f"{zone}-rack-{j // 40:03d}", ready=True))
        for j in range(200)
    ]
    yield (
        "zone of 200 joins",
        [*copy.deepcopy(nodes), *fresh],
        {n["metadata"]["name"]: n for n in fresh},
    )


def churn(
    state: PlanResult, topology: str, gen: Generator, count: int, environ: Mapping[str, str]
) -> dict[str, Any]:
    """Per event: what the hooks change from `state` (kept RRs, status read back), against a
    plan from scratch (no status, nodes without our labels) on the same nodes."""
    results: dict[str, Any] = {}
    old_adj = sessions(state.nodes, state.bgp_peers)  # the same "before" for every event
    for event, nodes, joined in _events(state, gen, count):
        kept = run_plan({"items": nodes}, state.topology, environ, NOW)
        scratch = run_plan(
            {"items": [strip_ours(n) for n in nodes]}, topology_object(topology), environ, NOW
        )
        results[event] = {
            "hooks": compare(state, kept.nodes, kept.bgp_peers, joined, old_adj)
            | {"rounds": kept.rounds},
            "scratch": compare(state, scratch.nodes, scratch.bgp_peers, joined, old_adj),
        }
    return results


def base_plan(nodes: Sequence[Json], topology: str, environ: Mapping[str, str]) -> PlanResult:
    return run_plan({"items": list(nodes)}, topology_object(topology), environ, NOW)
