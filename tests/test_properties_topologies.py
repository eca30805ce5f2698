"""Routing invariants of every topology over random clusters, after convergence: every node
reaches every other, still does after any single RR failure (multi with 3 peers: any two), the
same input in another order gives the same bytes, a joining node moves nobody else, and a lost
RR moves only the clients of its groups, none of them losing more than that one RR."""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from typing import Any

import pytest
from golden import NOW, call_hook, topology, topology_sync_request
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scenario import Scenario, largest_cluster
from strategies import INCOMPATIBLE, KINDS, PREFERRED, ZONE, make_node, specs

from hooks.calico import GROUP_LABEL, PREVIOUS_GROUP_LABEL, label_value
from hooks.offline import PlanInputError, PlanResult, run_plan
from hooks.paths import mid_roll_bound

Json = dict[str, Any]
TOPOLOGIES = ("simple", "multi", "quorum", "hierarchy")
RACK = "topology.example.com/rack"
# A group with a single RR (or an RR short anywhere) makes failure tolerance impossible; the
# status says so with one of these Degraded reasons, and only then may a failure break routing.
UNVERIFIABLE = frozenset({"TopologyUnverified", "InsufficientEligibleNodes"})
SMALL = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
TINY = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))


# --- strategies --------------------------------------------------------------------------------


@st.composite
def racked_clusters(draw: st.DrawFn, max_nodes: int = 300) -> list[Json]:
    """Like `clusters()`, but sized evenly up to `max_nodes` (hypothesis keeps lists short),
    with racks inside each zone: some racks hold fewer than two eligible nodes, and some
    nodes carry no rack label at all."""
    zones = [f"zone-{chr(ord('a') + i)}" for i in range(draw(st.integers(1, 5), label="zones"))]
    count = draw(st.one_of(st.integers(1, 12), st.integers(12, max_nodes)), label="count")
    racks = draw(st.integers(1, 6), label="racks per zone")
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(zones),
                st.sampled_from(KINDS),
                st.integers(0, 50),
                st.integers(-1, racks - 1),
            ),
            min_size=count,
            max_size=count,
        ),
        label="nodes",
    )
    nodes = []
    for i, (zone, kind, hours, rack) in enumerate(rows):
        node = make_node(f"node-{i:03d}", zone, kind, hours)
        if rack >= 0:
            node["metadata"]["labels"][RACK] = f"{zone}-r{rack}"
        nodes.append(node)
    return nodes


@st.composite
def topology_specs(draw: st.DrawFn, kind: str, peers: int | None = None) -> Json:
    """`specs()` for any topology: multi draws peersPerNode, hierarchy names the rack label."""
    spec: Json = draw(specs()) | {"topology": kind}
    # More RRs than `specs()` draws, so clusters of 4 and 5 (quorum) and big groups occur.
    spec["min"] = draw(st.integers(0, 5))
    spec["max"] = draw(st.integers(max(spec["min"], 1), 8))
    if kind == "multi":
        spec["peersPerNode"] = peers if peers is not None else draw(st.integers(1, 4))
    if kind == "hierarchy":
        spec["rackLabel"] = RACK
    return spec


# --- helpers -----------------------------------------------------------------------------------


def node_list(nodes: list[Json]) -> Json:
    return {"apiVersion": "v1", "kind": "List", "items": copy.deepcopy(nodes)}


def plan(nodes: list[Json], spec: Json) -> PlanResult:
    return run_plan(node_list(nodes), topology(spec), {}, NOW)


def degraded_reasons(status: Json) -> set[str]:
    return {
        c["reason"]
        for c in status.get("conditions", [])
        if c["type"] == "Degraded" and c["status"] == "True"
    }


def failure_tolerant_by_design(status: Json) -> bool:
    """The precondition of the failure checks: every group has at least two RRs, i.e. the
    status reports neither TopologyUnverified nor InsufficientEligibleNodes."""
    if degraded_reasons(status) & UNVERIFIABLE:
        return False
    small = [g["name"] for g in status.get("groups", []) if len(g["reflectors"]) < 2]
    assert not small, f"groups {small} have one RR but the status does not say Degraded"
    return True


def rr_counts(status: Json) -> tuple[Counter[str], Counter[str]]:
    """RRs located in each zone, and RRs serving each zone (or rack)."""
    located = Counter({z["name"]: z["expected"] for z in status.get("zones", [])})
    serving = Counter(rr.get("serves") or rr["zone"] for rr in status.get("routeReflectors", []))
    return +located, serving


def demands(status: Json) -> dict[str, int]:
    return {z["name"]: z["demand"] for z in status.get("zones", [])}


def labels_of(nodes: list[Json]) -> dict[str, dict[str, str]]:
    return {n["metadata"]["name"]: dict(n["metadata"].get("labels", {})) for n in nodes}


def client_reflectors(labels: dict[str, str], status: Json) -> set[str]:
    """The RRs a client peers with: its group's, plus its previous group's while it moves."""
    groups = {label_value(g["name"]): g["reflectors"] for g in status.get("groups", [])}
    found: set[str] = set()
    for key in (GROUP_LABEL, PREVIOUS_GROUP_LABEL):
        if key in labels:
            found.update(groups.get(labels[key], ()))
    return found


def check_routing(result: PlanResult, *, pairs: bool = False) -> None:
    """(1) reachability whenever some RR is planned; (2) any single RR failure, and (3) any
    pair with `pairs`, when the status promises failure tolerance."""
    status = result.status
    report = result.verify(failures=True, pairs=pairs)
    if not status["routeReflectors"]:
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "NoReflectors", ready
        return
    assert report.reachable, report.unreachable_examples
    if failure_tolerant_by_design(status):
        assert report.single_failure_ok, report.single_failure_examples
        if pairs:
            assert report.pair_failure_ok, report.pair_failure_examples


# --- (1) reachability and (2) any single RR failure --------------------------------------------


@pytest.mark.parametrize("kind", TOPOLOGIES)
@SMALL
@given(data=st.data())
def test_every_node_reaches_every_other_and_survives_any_single_rr_failure(
    kind: str, data: st.DataObject
) -> None:
    spec = data.draw(topology_specs(kind), label="spec")
    nodes = data.draw(racked_clusters(), label="nodes")
    check_routing(plan(nodes, spec))


def check_paths(result: PlanResult) -> None:
    """Issue 11's targets, counted by the add-path model (hooks.paths): at most 16 paths per
    remote prefix at any non-RR node (mean at most 8), at most 32 at any RR, never exploding."""
    report = result.paths()
    assert not report.exploded, report
    assert report.paths_client_max <= 16, report
    assert report.paths_client_mean <= 8, report
    assert report.paths_rr_max <= 32, report


@pytest.mark.parametrize("kind", TOPOLOGIES)
@SMALL
@given(data=st.data())
def test_no_node_holds_more_than_sixteen_paths_per_remote_prefix_nor_an_rr_more_than_32(
    kind: str, data: st.DataObject
) -> None:
    spec = data.draw(topology_specs(kind), label="spec")
    nodes = data.draw(racked_clusters(), label="nodes")
    check_paths(plan(nodes, spec))


# --- (3) multi with three peers per client: any two RRs ----------------------------------------


@TINY
@given(spec=topology_specs("multi", peers=3), nodes=racked_clusters(max_nodes=100))
def test_multi_with_three_peers_survives_any_two_rr_failures(spec: Json, nodes: list[Json]) -> None:
    result = plan(nodes, spec)
    status = result.status
    zones = {rr["zone"] for rr in status["routeReflectors"]}
    # Precondition: every group has >= 2 RRs (as above), and >= 3 RRs in >= 2 zones.
    assume(failure_tolerant_by_design(status))
    assume(len(status["routeReflectors"]) >= 3 and len(zones) >= 2)
    # A group is peersPerNode to 2 * peersPerNode - 1 RRs sharing one cluster ID (the RRs left
    # over when the count is not a multiple join groups rather than form a smaller one).
    assert all(3 <= len(g["reflectors"]) <= 5 for g in status["groups"]), status["groups"]
    check_routing(result, pairs=True)


# --- (1)-(3) on larger clusters, as plain tests ------------------------------------------------


def big_cluster(count: int, zones: int, racks: int, seed: int, unusual: float = 0.05) -> list[Json]:
    """`count` nodes over `zones` zones and `racks` racks per zone; some unusual."""
    rng = random.Random(seed)
    nodes = []
    for i in range(count):
        zone = f"zone-{chr(ord('a') + i % zones)}"
        kind = rng.choice(KINDS[12:]) if rng.random() < unusual else "plain"
        node = make_node(f"node-{i:04d}", zone, kind, rng.randint(0, 500))
        if rng.random() < 0.95:
            node["metadata"]["labels"][RACK] = f"{zone}-r{rng.randrange(racks)}"
        nodes.append(node)
    return nodes


BIG_SPEC: Json = {
    "zoneLabel": ZONE,
    "min": 2,
    "max": 6,
    "ratio": 0.01,
    "incompatibleLabels": [INCOMPATIBLE],
    "preferredLabels": [f"{PREFERRED}=preferred"],
    "rackLabel": RACK,
}


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_two_thousand_nodes_in_three_zones_route_and_survive_any_single_rr_failure(
    kind: str,
) -> None:
    result = plan(big_cluster(2000, 3, 6, seed=7), BIG_SPEC | {"topology": kind})
    assert result.status["routeReflectors"]
    assert failure_tolerant_by_design(result.status), result.status["conditions"]
    check_routing(result, pairs=kind == "multi")
    check_paths(result)


@pytest.mark.parametrize("per_zone", [3, 4, 5, 6, 7, 8])
def test_quorum_clusters_of_every_size_survive_any_single_rr_failure(per_zone: int) -> None:
    """One zone with `per_zone` RRs: clusters of 3 to 5 (and 6 = 3+3, 7 = 4+3, 8 = 4+4)."""
    spec = {"topology": "quorum", "zoneLabel": ZONE, "min": per_zone, "max": per_zone}
    result = plan(big_cluster(60, 1, 1, seed=per_zone, unusual=0), spec)
    cluster_of = {rr["node"]: rr["clusterID"] for rr in result.status["routeReflectors"]}
    sizes = Counter(cluster_of.values())
    assert sum(sizes.values()) == per_zone
    for group in result.status["groups"]:
        k = sizes[cluster_of[group["reflectors"][0]]]
        assert 2 * len(group["reflectors"]) - k > 1, (group, k)
    check_routing(result)


@pytest.mark.parametrize(("smaller", "larger"), [(1, 4), (1, 5), (2, 4), (2, 5)])
def test_quorum_clusters_of_one_or_two_beside_four_or_five_route_and_survive_single_failures(
    smaller: int, larger: int
) -> None:
    """A zone with 1 or 2 RRs (m = k) beside a zone with 4 or 5 (m = k - 1): every group of the
    larger cluster must hold its RRs on the planes the small cluster has (hypothesis found plans
    whose clients met the small zone on one plane only, cut off by that plane's hub failing, and
    with a 1-RR zone, clients that did not reach it at all)."""
    rng = random.Random(larger)
    nodes = [make_node(f"node-a{i:02d}", "zone-a", "plain", rng.randint(0, 500)) for i in range(20)]
    nodes += [
        make_node(f"node-b{i:02d}", "zone-b", "plain", rng.randint(0, 500)) for i in range(60)
    ]
    steps = [{"nodes": 1, "reflectors": smaller}, {"nodes": 40, "reflectors": larger}]
    spec = {"topology": "quorum", "zoneLabel": ZONE, "min": 1, "max": 5, "steps": steps}
    result = plan(nodes, spec)
    cluster_of = {rr["node"]: rr["clusterID"] for rr in result.status["routeReflectors"]}
    assert sorted(Counter(cluster_of.values()).values()) == [smaller, larger]
    check_routing(result)
    big = sorted(rr for rr in cluster_of if rr.startswith("node-b"))
    for group in result.status["groups"]:
        if group["zone"] == "zone-b":
            assert set(big[:smaller]) <= set(group["reflectors"]), group


# --- (4) shuffled input, same bytes ------------------------------------------------------------


def shuffled(items: list[Json], rng: random.Random) -> list[Json]:
    out = copy.deepcopy(items)
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("kind", TOPOLOGIES)
@TINY
@given(data=st.data(), rng=st.randoms(use_true_random=False))
def test_shuffled_input_gives_the_same_topology_sync_and_plan_bytes(
    kind: str, data: st.DataObject, rng: random.Random
) -> None:
    spec = data.draw(topology_specs(kind), label="spec")
    nodes = data.draw(racked_clusters(max_nodes=150), label="nodes")

    def sync(nodes: list[Json], status: Json | None = None, peers: list[Json] = []) -> bytes:  # noqa: B006 - never mutated
        return call_hook(
            "topology-sync", json.dumps(topology_sync_request(spec, nodes, status, peers)).encode()
        )

    assert sync(shuffled(nodes, rng)) == sync(nodes)
    result = plan(nodes, spec)
    again = plan(shuffled(nodes, rng), spec)
    assert json.dumps(again.as_json()) == json.dumps(result.as_json())
    # From the converged state: status lists and observed children in another order too.
    status = copy.deepcopy(result.status)
    for key in ("routeReflectors", "groups", "zones", "conditions"):
        rng.shuffle(status.get(key, []))
    converged = sync(result.nodes, result.status, result.bgp_peers)
    assert sync(shuffled(result.nodes, rng), status, shuffled(result.bgp_peers, rng)) == converged


def drawn_plan(data: st.DataObject, kind: str) -> PlanResult:
    """The plan of a drawn spec of `kind` over a drawn racked cluster of up to 150 nodes."""
    spec = data.draw(topology_specs(kind), label="spec")
    nodes = data.draw(racked_clusters(max_nodes=150), label="nodes")
    return plan(nodes, spec)


# --- (5) a joining node moves nobody else ------------------------------------------------------


@pytest.mark.parametrize("kind", TOPOLOGIES)
@SMALL
@given(data=st.data())
def test_a_node_joining_without_changing_any_rr_count_changes_only_its_own_labels(
    kind: str, data: st.DataObject
) -> None:
    converged = drawn_plan(data, kind)
    zone = data.draw(st.sampled_from(["zone-a", "zone-b", "zone-c", "zone-z"]), label="zone")
    joining = make_node(
        data.draw(st.sampled_from(["node-new", "a-new", "node-000a"]), label="name"),
        zone,
        data.draw(st.sampled_from(KINDS), label="kind"),
        data.draw(st.integers(0, 60), label="hours"),
    )
    rack = data.draw(st.sampled_from([None, "r0", "r1", "r9"]), label="rack")
    if rack is not None:
        joining["metadata"]["labels"][RACK] = f"{zone}-{rack}"
    name = joining["metadata"]["name"]
    after = run_plan(node_list([*converged.nodes, joining]), converged.topology, {}, NOW)
    # Precondition: no zone (nor rack) gains or loses an RR.
    assume(rr_counts(after.status) == rr_counts(converged.status))
    moved = sorted(set(after.changes) - {name})
    assert not moved, {n: after.changes[n] for n in moved[:5]}


# --- (5b) a hub stays the hub of its plane while it stays an RR on that plane -----------------


def hubs_of(status: Json) -> dict[tuple[str, int], str]:
    """(role, plane) → its hub, from status."""
    return {
        (rr.get("role", ""), rr["plane"]): rr["node"]
        for rr in status["routeReflectors"]
        if rr.get("hub")
    }


@pytest.mark.parametrize("kind", TOPOLOGIES)
@SMALL
@given(data=st.data())
def test_a_hub_does_not_move_while_it_stays_an_rr_on_its_plane(
    kind: str, data: st.DataObject
) -> None:
    converged = drawn_plan(data, kind)
    hubs = hubs_of(converged.status)
    assume(hubs)
    current = copy.deepcopy(converged.nodes)
    kept = set(hubs.values())
    others = sorted(n["metadata"]["name"] for n in current if n["metadata"]["name"] not in kept)
    change = data.draw(st.sampled_from(["join", "leave", "cordon"]), label="change")
    if change == "join":
        for i in range(data.draw(st.integers(1, 20), label="joining")):
            zone = data.draw(st.sampled_from(["zone-a", "zone-b", "zone-c", "zone-z"]))
            node = make_node(f"node-new-{i:02d}", zone, "plain", data.draw(st.integers(0, 60)))
            node["metadata"]["labels"][RACK] = f"{zone}-r{data.draw(st.integers(0, 3))}"
            current.append(node)
    else:
        assume(others)
        names = set(data.draw(st.lists(st.sampled_from(others), min_size=1, max_size=5)))
        if change == "leave":
            current = [n for n in current if n["metadata"]["name"] not in names]
        for node in current:
            if node["metadata"]["name"] in names:
                node.setdefault("spec", {})["unschedulable"] = True

    try:
        after = run_plan(node_list(current), converged.topology, {}, NOW)
    except PlanInputError as refused:
        # Precondition: the change is one the service acts on; more than half the Ready nodes
        # leaving at once trips the guard, which keeps the last plan (no hub moves then).
        assume("GuardTripped" not in str(refused))
        raise

    # Moved: the plane has another hub while the old one is still an RR of that role and plane
    # (a plane that has no hub any more, e.g. hierarchy without a spine, is not a move).
    places = {
        rr["node"]: (rr.get("role", ""), rr.get("plane")) for rr in after.status["routeReflectors"]
    }
    now = hubs_of(after.status)
    moved = {
        place: (hub, now[place])
        for place, hub in hubs.items()
        if places.get(hub) == place and now.get(place, hub) != hub
    }
    assert not moved, moved


# --- (6) a lost RR moves only the clients of its groups, each losing only that RR -------------


def with_addresses(nodes: list[Json]) -> list[Json]:
    """Nodes as the Scenario's fake calico-node reads them (an InternalIP each)."""
    out = copy.deepcopy(nodes)
    for index, node in enumerate(out):
        node["status"]["addresses"] = [
            {"type": "InternalIP", "address": f"10.0.{index // 256}.{index % 256}"}
        ]
    return out


def converged_scenario(data: st.DataObject, kind: str, max_nodes: int) -> Scenario:
    """A drawn spec of `kind` over a drawn racked cluster, converged. Unchecked: with no RR yet
    and the mesh off nothing routes; a test sets `check` once it is converged."""
    spec = data.draw(topology_specs(kind), label="spec")
    nodes = data.draw(racked_clusters(max_nodes=max_nodes), label="nodes")
    cluster = Scenario(spec, with_addresses(nodes), check=False)
    cluster.run_until_still()
    return cluster


@pytest.mark.parametrize("kind", TOPOLOGIES)
@TINY
@given(data=st.data())
def test_removing_an_rr_changes_only_the_labels_of_clients_of_its_groups(
    kind: str, data: st.DataObject
) -> None:
    cluster = converged_scenario(data, kind, max_nodes=60)
    before_status = copy.deepcopy(cluster.status or {})
    assume(before_status.get("routeReflectors"))
    cluster.check = True
    gone = data.draw(
        st.sampled_from([rr["node"] for rr in before_status["routeReflectors"]]), label="gone"
    )
    # Precondition, found on a copy: the lost RR is replaced, so no zone (nor rack) has fewer
    # RRs, and the node's absence changes no zone's demand. (Else its clients may be cut off
    # until the mesh is back, or demand moves groups, which is not what is checked here.)
    trial = copy.deepcopy(cluster)
    trial.check = False
    trial.remove(gone)
    trial.step()
    trial_status = trial.status or {}
    assume(rr_counts(trial_status) == rr_counts(before_status))
    assume(demands(trial_status) == demands(before_status))

    before = labels_of(list(cluster.node_map.values()))
    cluster.remove(gone)
    cluster.step()  # also checks reachability and that no client loses two live RRs at once
    after_status = cluster.status or {}
    after = labels_of(list(cluster.node_map.values()))
    its_groups = {
        label_value(g["name"]) for g in before_status["groups"] if gone in g["reflectors"]
    }
    new_rrs = {rr["node"] for rr in after_status["routeReflectors"]} - {
        rr["node"] for rr in before_status["routeReflectors"]
    }
    for name, labels in after.items():
        if labels == before[name] or name in new_rrs:  # a replacement RR gets its RR labels
            continue
        assert before[name].get(GROUP_LABEL) in its_groups, (
            f"{name} was in {before[name].get(GROUP_LABEL)} (not a group of {gone}) and changed:"
            f" {before[name]} -> {labels}"
        )
    rrs_after = {rr["node"] for rr in after_status["routeReflectors"]}
    for name, labels in after.items():
        if name in rrs_after or GROUP_LABEL not in before[name]:
            continue
        lost = client_reflectors(before[name], before_status) - client_reflectors(
            labels, after_status
        )
        assert len(lost) <= 1, f"{name} lost {sorted(lost)} after {gone} went"


@pytest.mark.parametrize("kind", ["simple", "quorum"])
def test_a_spill_over_rr_keeps_serving_its_zone_when_its_home_zone_loses_its_rr(kind: str) -> None:
    """zone-b has no eligible node: node-001 (zone-a) serves it. When zone-a's own RR node-000
    fails, node-001 must go on serving zone-b (its clients keep their RR and cluster ID) and a
    new zone-a node replaces node-000."""
    nodes = [make_node(f"node-{i:03d}", "zone-a", "plain", 0) for i in range(5)]
    nodes.append(make_node("node-zb", "zone-b", "cordoned", 0))
    spec = {"topology": kind, "zoneLabel": ZONE, "min": 1, "max": 1}
    cluster = Scenario(spec, with_addresses(nodes), check=False)
    cluster.run_until_still()
    before = {rr["node"]: rr for rr in (cluster.status or {})["routeReflectors"]}
    assert before["node-001"]["serves"] == "zone-b", before
    cluster.check = True
    cluster.remove("node-000")
    cluster.step()
    after = {rr["node"]: rr for rr in (cluster.status or {})["routeReflectors"]}
    assert after["node-001"] == before["node-001"], after


def test_hierarchy_without_nodes_for_a_spine_meshes_its_rack_reflectors() -> None:
    """Every eligible node is a rack RR (two racks of two): no spine can be built, so the rack
    RRs must mesh or the racks cannot reach each other."""
    nodes = []
    for index, rack in enumerate(["r1", "r1", "r2", "r2"]):
        node = make_node(f"node-{index:03d}", "zone-a", "plain", index)
        node["metadata"]["labels"][RACK] = rack
        nodes.append(node)
    result = plan(nodes, {"topology": "hierarchy", "rackLabel": RACK, "min": 0, "max": 1})
    assert {rr["role"] for rr in result.status["routeReflectors"]} == {"rack"}
    assert any(p["metadata"]["name"].endswith("-rr-racks-mesh") for p in result.bgp_peers)
    report = result.verify(failures=False)
    assert report.reachable, report.unreachable_examples


# Found by the removal property: node-003 (rack RR of r3) goes, spine RR node-009 becomes r3's
# rack RR while the new spine RR is Pending. It must take r3's cluster ID at once: kept, the
# spine's ID made it a sibling of the spine it left and cut node-013, node-023 off.
MOVED_TO_A_RACK = [
    ("000", "zone-a", "plain", 43, "zone-a-r1"),
    ("001", "zone-a", "unfit-taint", 50, "zone-a-r5"),
    ("002", "zone-a", "tainted", 46, "zone-a-r3"),
    ("003", "zone-a", "plain", 12, "zone-a-r3"),
    ("004", None, "plain", 32, None),
    ("005", "zone-a", "plain", 0, "zone-a-r1"),
    ("006", None, "plain", 18, "zone-a-r5"),
    ("007", "zone-a", "not-ready", 33, "zone-a-r5"),
    ("008", "zone-a", "plain", 0, "zone-a-r2"),
    ("009", "zone-a", "plain", 22, "zone-a-r3"),
    ("010", "zone-a", "plain", 0, "zone-a-r4"),
    ("011", "zone-a", "unfit-taint", 16, "zone-a-r4"),
    ("012", "zone-a", "tainted", 19, "zone-a-r4"),
    ("013", "zone-a", "plain", 30, "zone-a-r4"),
    ("014", "zone-a", "plain", 33, "zone-a-r2"),
    ("015", "zone-a", "not-ready", 0, "zone-a-r2"),
    ("016", "zone-a", "plain", 0, "zone-a-r3"),
    ("017", "zone-a", "plain", 0, "zone-a-r5"),
    ("018", "zone-a", "cordoned", 35, "zone-a-r5"),
    ("019", "zone-a", "plain", 11, "zone-a-r2"),
    ("020", "zone-a", "plain", 41, "zone-a-r4"),
    ("021", "zone-a", "plain", 41, None),
    ("022", "zone-a", "cordoned", 16, None),
    ("023", "zone-a", "plain", 25, "zone-a-r0"),
    ("024", "zone-a", "plain", 44, "zone-a-r3"),
    ("025", "zone-a", "incompatible", 46, "zone-a-r5"),
    ("026", "zone-a", "unknown", 0, "zone-a-r3"),
    ("027", "zone-a", "not-ready", 0, "zone-a-r4"),
    ("028", "zone-a", "not-ready", 17, None),
]


def test_an_rr_moving_to_another_group_takes_its_cluster_id_at_once() -> None:
    nodes = []
    for number, zone, kind, hours, rack in MOVED_TO_A_RACK:
        node = make_node(f"node-{number}", zone, kind, hours)
        if rack is not None:
            node["metadata"]["labels"][RACK] = rack
        nodes.append(node)
    spec = {
        "topology": "hierarchy",
        "zoneLabel": ZONE,
        "min": 4,
        "max": 7,
        "incompatibleLabels": [INCOMPATIBLE],
        "preferredLabels": [f"{PREFERRED}=preferred"],
        "steps": [{"nodes": 35, "reflectors": 0}],
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}
        ],
        "rackLabel": RACK,
    }
    cluster = Scenario(spec, with_addresses(nodes), check=False)
    cluster.run_until_still()
    roles = {rr["node"]: rr.get("role") for rr in (cluster.status or {})["routeReflectors"]}
    assert roles["node-009"] == "spine" and roles["node-003"] == "rack"
    cluster.check = True

    cluster.remove("node-003")
    cluster.step(3)  # checks that every live node reaches every other at each step

    moved = next(rr for rr in (cluster.status or {})["routeReflectors"] if rr["node"] == "node-009")
    r3_ids = {
        rr["clusterID"]
        for rr in (cluster.status or {})["routeReflectors"]
        if rr.get("serves") == "zone-a-r3"
    }
    assert moved.get("role") == "rack" and r3_ids == {moved["clusterID"]}
    assert "nextClusterID" not in moved


# --- (6) a cluster-ID roll: every step routes and stays within the mid-roll bound --------------


@pytest.mark.parametrize("kind", TOPOLOGIES)
@TINY
@given(data=st.data())
def test_every_step_of_a_cluster_id_roll_routes_and_stays_within_the_mid_roll_bound(
    kind: str, data: st.DataObject
) -> None:
    cluster = converged_scenario(data, kind, max_nodes=100)
    reflectors = (cluster.status or {}).get("routeReflectors", [])
    assume(reflectors and failure_tolerant_by_design(cluster.status or {}))
    bound = mid_roll_bound(largest_cluster(cluster.status or {}))
    # From here the Scenario checks every step: every live node reaches every other, and no
    # client has two of its RRs down (lost, or restarting for a new ID) at once.
    cluster.check = True
    cluster.set_spec(clusterID="10.9.0.%d")
    for _ in range(len(reflectors) + 3):
        cluster.step()
        report = cluster.paths()
        assert not report.exploded
        assert report.paths_client_max <= bound, (report.paths_client_max, bound)
        assert report.paths_rr_max <= 32, report.paths_rr_max
    carried = {rr["clusterID"] for rr in (cluster.status or {})["routeReflectors"]}
    assert all(cid.startswith("10.9.0.") for cid in carried), carried
