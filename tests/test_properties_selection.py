"""Invariants of the plan over random clusters: order-independence, eligibility, stability,
counts per zone, cluster IDs, and convergence when the answers are fed back."""

from __future__ import annotations

import copy
import ipaddress
import json
import math
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

import msgspec
from golden import NOW, call_hook, node_sync_request, topology, topology_sync_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import ZONE, clusters, make_node, specs

from hooks import wire
from hooks.config import load_settings
from hooks.offline import run_plan
from hooks.selection import ineligibility
from hooks.stamps import stamp

Json = dict[str, Any]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sync(
    spec: Json, nodes: Iterable[Json], status: Json | None = None, children: Iterable[Json] = ()
) -> tuple[bytes, Json]:
    body = json.dumps(topology_sync_request(spec, list(nodes), status, list(children))).encode()
    raw = call_hook("topology-sync", body)
    return raw, json.loads(raw)


def merge(target: dict[str, str], changes: dict[str, str | None]) -> bool:
    """Metacontroller's merge of a decorator answer: a value sets, null deletes."""
    changed = False
    for key, value in changes.items():
        if value is None:
            changed |= target.pop(key, None) is not None
        elif target.get(key) != value:
            target[key] = value
            changed = True
    return changed


def apply_node_hooks(spec: Json, nodes: list[Json], status: Json) -> bool:
    """Run the node hook on every node and merge its answer; True when any node changed."""
    planned = topology(spec, status)
    changed = False
    for node in nodes:
        body = json.dumps(node_sync_request(node, [planned])).encode()
        answer = json.loads(call_hook("node-sync", body))
        assert answer["status"] is None
        meta = node["metadata"]
        changed |= merge(meta.setdefault("labels", {}), answer["labels"])
        changed |= merge(meta.setdefault("annotations", {}), answer["annotations"])
    return changed


def converge(spec: Json, nodes: list[Json], rounds: int) -> list[tuple[bytes, bool, bool]]:
    """Metacontroller's loop: children applied, status stored, labels merged. Per round:
    (status bytes, children changed, node labels/annotations changed)."""
    status: Json | None = None
    children: dict[str, Json] = {}
    history = []
    for _ in range(rounds):
        _, answer = sync(spec, nodes, status, children.values())
        new_children = {c["metadata"]["name"]: c for c in answer["children"]}
        moved_children = new_children != children
        children, status = new_children, answer["status"]
        moved_nodes = apply_node_hooks(spec, nodes, status)
        history.append((wire.encode(status), moved_children, moved_nodes))
    return history


def served_by(status: Json) -> dict[str, str]:
    """RR → the zone whose clients it serves (simple: one group per served zone)."""
    return {rr: group["zone"] for group in status["groups"] for rr in group["reflectors"]}


# --- order independence ------------------------------------------------------------------------


@FAST
@given(spec=specs(), nodes=clusters(), seed=st.randoms(use_true_random=False))
def test_shuffled_nodes_give_the_same_topology_bytes(
    spec: Json, nodes: list[Json], seed: random.Random
) -> None:
    first, answer = sync(spec, nodes)
    shuffled = nodes[:]
    seed.shuffle(shuffled)
    assert sync(spec, shuffled)[0] == first
    # and again with a previous status, whose lists arrive in another order too
    status = copy.deepcopy(answer["status"])
    again, _ = sync(spec, nodes, answer["status"], answer["children"])
    for key in ("routeReflectors", "groups", "zones"):
        seed.shuffle(status.get(key, []))
    assert sync(spec, shuffled, status, reversed(answer["children"]))[0] == again


@FAST
@given(spec=specs(), nodes=clusters(max_nodes=60), seed=st.randoms(use_true_random=False))
def test_shuffled_input_gives_the_same_node_hook_bytes(
    spec: Json, nodes: list[Json], seed: random.Random
) -> None:
    _, answer = sync(spec, nodes)
    status = answer["status"]
    shuffled_status = copy.deepcopy(status)
    for key in ("routeReflectors", "groups", "zones"):
        seed.shuffle(shuffled_status.get(key, []))
    for node in nodes[:10]:
        plain = call_hook(
            "node-sync", json.dumps(node_sync_request(node, [topology(spec, status)])).encode()
        )
        other = copy.deepcopy(node)
        labels = list(other["metadata"]["labels"].items())
        seed.shuffle(labels)
        other["metadata"]["labels"] = dict(labels)
        mixed = call_hook(
            "node-sync",
            json.dumps(node_sync_request(other, [topology(spec, shuffled_status)])).encode(),
        )
        assert mixed == plain


# --- eligibility and counts --------------------------------------------------------------------


@FAST
@given(spec=specs(), nodes=clusters())
def test_no_ineligible_node_is_ever_chosen(spec: Json, nodes: list[Json]) -> None:
    config = load_settings(spec, {})
    infos = {n["metadata"]["name"]: msgspec.convert(n, wire.NodeWire).to_info() for n in nodes}
    _, answer = sync(spec, nodes)
    for rr in answer["status"]["routeReflectors"]:
        assert ineligibility(infos[rr["node"]], config) is None, rr


def expected_demand(ready: int, spec: Json) -> int:
    if ready == 0:
        return 0
    if "steps" in spec:
        wanted = spec["min"]
        for step in sorted(spec["steps"], key=lambda s: s["nodes"]):
            if step["nodes"] <= ready:
                wanted = step["reflectors"]
    else:
        wanted = math.ceil(ready * spec["ratio"])
    return int(max(spec["min"], min(spec["max"], wanted)))


@FAST
@given(spec=specs(), nodes=clusters())
def test_counts_per_zone_follow_the_formula(spec: Json, nodes: list[Json]) -> None:
    config = load_settings(spec, {})
    zones: dict[str, Counter[str]] = {}
    for n in nodes:
        info = msgspec.convert(n, wire.NodeWire).to_info()
        count = zones.setdefault(n["metadata"]["labels"].get(ZONE, ""), Counter())
        count["nodes"] += 1
        count["ready"] += info.ready and not info.deleting
        count["eligible"] += ineligibility(info, config) is None
    _, answer = sync(spec, nodes)
    status = answer["status"]
    assert [z["name"] for z in status["zones"]] == sorted(zones)
    serves = served_by(status)
    own = Counter(
        rr["zone"] for rr in status["routeReflectors"] if serves[rr["node"]] == rr["zone"]
    )
    total_demand = total_eligible = 0
    for zone in status["zones"]:
        seen = zones[zone["name"]]
        demand = expected_demand(seen["ready"], spec)
        assert (zone["nodes"], zone["ready"], zone["eligible"]) == (
            seen["nodes"],
            seen["ready"],
            seen["eligible"],
        )
        assert zone["demand"] == demand, zone
        assert own[zone["name"]] == min(demand, seen["eligible"]), zone
        located = sum(rr["zone"] == zone["name"] for rr in status["routeReflectors"])
        assert zone["expected"] == located <= seen["eligible"]
        total_demand += demand
        total_eligible += seen["eligible"]
    assert len(status["routeReflectors"]) == min(total_demand, total_eligible)
    served = Counter(serves.values())
    for zone in status["zones"]:
        # spill-over: a short zone is served by min(demand, whatever is eligible anywhere)
        assert served[zone["name"]] <= zone["demand"]
        if total_demand <= total_eligible:
            assert served[zone["name"]] == zone["demand"], zone
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    fragile = any(len(g["reflectors"]) < 2 for g in status["groups"])
    assert (degraded["status"] == "True") == (total_demand > total_eligible or fragile)
    if total_demand > total_eligible:
        assert degraded["reason"] == "InsufficientEligibleNodes"
    elif fragile:
        assert degraded["reason"] == "TopologyUnverified"


@FAST
@given(spec=specs(), nodes=clusters())
def test_cluster_ids_are_ipv4_one_per_group_and_a_zone_of_n_rrs_has_max_1_n_div_3_groups(
    spec: Json, nodes: list[Json]
) -> None:
    """`simple` cuts a zone's n RRs into max(1, n // 3) groups, each sharing one cluster ID of its
    own (README, Topologies): a zone of up to 5 RRs has one ID, of 6 two."""
    _, answer = sync(spec, nodes)
    status = answer["status"]
    serves = served_by(status)
    id_of = {rr["node"]: rr["clusterID"] for rr in status["routeReflectors"]}
    for cluster_id in id_of.values():
        ipaddress.IPv4Address(cluster_id)
    group_ids = [{id_of[rr] for rr in group["reflectors"]} for group in status["groups"]]
    assert all(len(ids) == 1 for ids in group_ids), status["groups"]
    assert len({next(iter(ids)) for ids in group_ids}) == len(group_ids), status["groups"]
    by_zone: dict[str, list[str]] = {}
    for rr in status["routeReflectors"]:
        by_zone.setdefault(serves[rr["node"]], []).append(rr["clusterID"])
    for zone, ids in by_zone.items():
        assert len(set(ids)) == max(1, len(ids) // 3), (zone, ids)


# --- stability ---------------------------------------------------------------------------------


@FAST
@given(spec=specs(), nodes=clusters(max_nodes=150), data=st.data())
def test_eligible_current_reflectors_stay_when_the_count_does_not_shrink(
    spec: Json, nodes: list[Json], data: st.DataObject
) -> None:
    _, first = sync(spec, nodes)
    apply_node_hooks(spec, nodes, first["status"])
    before = served_by(first["status"])
    zone_of = {rr["node"]: rr["zone"] for rr in first["status"]["routeReflectors"]}
    # Cordon some nodes (they stay ready, so no zone's demand shrinks) and add new ones.
    names = [n["metadata"]["name"] for n in nodes]
    cordon = set(data.draw(st.lists(st.sampled_from(names), max_size=5)))
    later = copy.deepcopy(nodes)
    for n in later:
        if n["metadata"]["name"] in cordon:
            n["spec"]["unschedulable"] = True
    extra = data.draw(
        st.lists(
            st.tuples(st.sampled_from(["zone-a", "zone-b", "zone-z"]), st.integers(0, 60)),
            max_size=10,
        )
    )
    later += [make_node(f"new-{i:02d}", z, "plain", h) for i, (z, h) in enumerate(extra)]
    _, second = sync(spec, later, first["status"], first["children"])
    after = served_by(second["status"])
    config = load_settings(spec, {})
    for name, zone in before.items():
        info = msgspec.convert(
            next(n for n in later if n["metadata"]["name"] == name), wire.NodeWire
        ).to_info()
        if zone_of[name] == zone and ineligibility(info, config) is None:
            assert after.get(name) == zone, (name, zone)


# --- convergence -------------------------------------------------------------------------------


def test_feeding_answers_back_converges_in_two_rounds() -> None:
    nodes = [make_node(f"node-{i:02d}", f"zone-{'abc'[i % 3]}", "plain", i) for i in range(30)] + [
        make_node("node-cordoned", "zone-a", "cordoned", 0)
    ]
    spec = {"topology": "simple", "zoneLabel": ZONE, "min": 2, "max": 4, "ratio": 0.1}
    history = converge(spec, nodes, rounds=4)
    first, second, third, fourth = history
    assert first[1] and first[2], "the first round creates children and labels"
    assert not second[1] and not second[2], "the second round changes no child and no label"
    assert third[0] == second[0] == fourth[0], "status is byte-identical once converged"
    status = json.loads(third[0])
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Converged")
    assert ready["lastTransitionTime"] == stamp(NOW)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), nodes=clusters(max_nodes=100))
def test_any_cluster_converges_and_then_stays_still(spec: Json, nodes: list[Json]) -> None:
    history = converge(spec, nodes, rounds=3)
    assert not history[1][1] and not history[1][2]
    assert history[2] == (history[1][0], False, False)


def test_run_plan_reaches_the_same_fixed_point_as_the_explicit_loop() -> None:
    nodes = [make_node(f"node-{i:02d}", f"zone-{'ab'[i % 2]}", "plain", i) for i in range(12)]
    spec = {"topology": "simple", "zoneLabel": ZONE, "min": 1, "max": 3, "ratio": 0.2}
    document = {"apiVersion": "v1", "kind": "List", "items": copy.deepcopy(nodes)}
    result = run_plan(document, topology(spec), {}, NOW)
    assert result.rounds <= 3
    history = converge(spec, nodes, rounds=3)
    assert json.loads(history[-1][0]) | {"observedGeneration": 1} == result.status | {
        "observedGeneration": 1
    }
    by_name = {n["metadata"]["name"]: n["metadata"] for n in result.nodes}
    for n in nodes:
        assert by_name[n["metadata"]["name"]]["labels"] == n["metadata"]["labels"]
        assert by_name[n["metadata"]["name"]]["annotations"] == n["metadata"]["annotations"]
