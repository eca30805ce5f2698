"""Make-before-break, played step by step on a simulated cluster (tests/scenario.py).

Every step checks the invariants: all live nodes reach each other through the RRs alone, no
client is without an RR session, no client loses two live RRs in one step, and a zone's last
healthy RR is never removed.
"""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from typing import Any

import pytest
from scenario import ZONE, Scenario, largest_cluster, make_node, zoned_nodes

from hooks import controllers, wire
from hooks.paths import mid_roll_bound
from hooks.stamps import stamp

Json = dict[str, Any]
TOPOLOGIES = ("simple", "multi", "quorum")


def spec(topology: str = "simple", **extra: Any) -> Json:
    base: Json = {"topology": topology, "zoneLabel": ZONE, "min": 3, "max": 5, "ratio": 0.1}
    return base | extra


def converged(
    topology: str = "simple",
    zones: dict[str, int] | None = None,
    **options: Any,
) -> Scenario:
    extra = options.pop("extra", {})
    scenario = Scenario(
        spec(topology, **extra), zoned_nodes(zones or {"a": 20, "b": 20, "c": 20}), **options
    )
    scenario.run_until_still()
    assert scenario.condition("Ready")["reason"] == "Converged", scenario.condition("Ready")
    assert set(scenario.reflectors().values()) == {"Active"}
    return scenario


def in_zone(scenario: Scenario, zone: str) -> list[str]:
    return sorted(n for n in scenario.reflectors() if n.startswith(f"{zone}-"))


def released_per_step(scenario: Scenario, since: int) -> list[set[str]]:
    """Per step from `since`, the nodes whose RR label went away."""
    history = scenario.history
    return [set(history[i - 1].labelled - history[i].labelled) for i in range(since, len(history))]


# --- scale-down --------------------------------------------------------------------------------


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_scale_down_releases_surplus_reflectors_one_per_zone_per_step(topology: str) -> None:
    scenario = converged(topology, extra={"min": 2, "ratio": 0.25})  # 5 RRs per zone
    assert len(in_zone(scenario, "a")) == 5
    start = len(scenario.history)

    scenario.set_spec(ratio=0.05)  # demand 2 per zone
    scenario.run_until_still()

    assert {z: len(in_zone(scenario, z)) for z in "abc"} == {"a": 2, "b": 2, "c": 2}
    for released in released_per_step(scenario, start):
        zones = [name.split("-")[0] for name in released]
        assert len(zones) == len(set(zones)), f"two RRs of one zone released at once: {released}"
    # Groups that left the plan retire first: their clients move (keeping the old group as the
    # previous group), then the retiring group sheds one RR a step, so no client ever loses two;
    # only then are the surplus RRs released, one per zone a step. Bounded by the largest group
    # (peersPerNode + a draining RR, or a quorum subset), the 3 surplus RRs a zone sheds, and
    # a few steps for labels and sessions to settle.
    largest_group = 4
    assert len(scenario.history) - start <= largest_group + 3 + 5
    assert scenario.condition("Ready")["reason"] == "Converged"


def test_scale_down_drains_the_surplus_it_cannot_release_yet() -> None:
    scenario = converged(extra={"min": 2, "ratio": 0.25})
    scenario.set_spec(ratio=0.05)

    record = scenario.step()

    states = record.reflectors
    assert sorted(s for n, s in states.items() if n.startswith("a-")) == [
        "Active",
        "Active",
        "Draining",
        "Draining",
    ]
    assert scenario.condition("Ready")["reason"] == "TransitionPending"
    assert record.decision.resync_after is not None


# --- cordon ------------------------------------------------------------------------------------


def test_cordoned_reflector_drains_until_its_replacement_is_established() -> None:
    scenario = converged(establish_after=2)
    leaving = in_zone(scenario, "a")[0]
    scenario.cordon(leaving)

    first = scenario.step()
    [newcomer] = [n for n, s in first.reflectors.items() if s == "Pending"]
    assert newcomer.startswith("a-")
    assert first.reflectors[leaving] == "Draining"
    assert {leaving, newcomer} <= first.labelled
    assert scenario.condition("Ready")["status"] == "False"
    assert scenario.condition("Ready")["reason"] == "TransitionPending"
    assert wire.decode(first.response, dict[str, Any])["resyncAfterSeconds"] > 0
    assert not first.decision.mesh_can_go

    second = scenario.step()  # the newcomer carried its label one step: not Established yet
    assert second.reflectors[newcomer] == "Pending"
    assert second.reflectors[leaving] == "Draining"
    assert leaving in second.labelled

    third = scenario.step()  # two steps labelled: Established, so the cordoned RR goes
    assert third.reflectors[newcomer] == "Active"
    assert leaving not in third.reflectors
    assert leaving not in third.labelled
    assert CLUSTER_ID not in scenario.node(leaving)["metadata"]["annotations"]

    scenario.run_until_still()
    assert scenario.condition("Ready")["reason"] == "Converged"
    assert scenario.last.decision.mesh_can_go


CLUSTER_ID = wire.CLUSTER_ID_ANNOTATION


@pytest.mark.parametrize("topology", ["multi", "quorum"])
def test_cordoned_reflector_in_groups_is_replaced_before_it_is_released(topology: str) -> None:
    scenario = converged(topology, establish_after=2)
    leaving = in_zone(scenario, "a")[0]
    scenario.cordon(leaving)

    first = scenario.step()
    assert first.reflectors[leaving] == "Draining"
    assert leaving in first.labelled
    pending = [n for n, s in first.reflectors.items() if s == "Pending"]
    assert pending

    scenario.run_until_still()
    assert leaving not in scenario.reflectors()
    assert leaving not in scenario.labelled()
    assert scenario.condition("Ready")["reason"] == "Converged"
    # Released only after the replacement's sessions were up: two steps labelled, then one more.
    released_at = next(r.step for r in scenario.history if leaving not in r.labelled)
    assert released_at - first.step >= 2


# --- failures ----------------------------------------------------------------------------------


def test_not_ready_reflector_is_replaced_at_once_without_draining() -> None:
    scenario = converged()
    failed = in_zone(scenario, "b")[0]
    scenario.set_ready(failed, False)

    record = scenario.step()

    assert failed not in record.reflectors
    assert failed not in record.labelled
    assert "Draining" not in record.reflectors.values()
    assert len(in_zone(scenario, "b")) == 3
    assert [s for n, s in record.reflectors.items() if n.startswith("b-")].count("Pending") == 1


def test_preferred_node_joining_does_not_displace_a_current_reflector() -> None:
    scenario = converged(extra={"preferredLabels": ["rr-preferred=true"]})
    before = dict(scenario.reflectors())
    scenario.add(make_node("a-new", "a", index=900, labels={"rr-preferred": "true"}))

    record = scenario.step()

    assert record.reflectors == before
    assert "a-new" not in record.labelled


def test_losing_a_whole_zone_drops_its_reflectors_at_once() -> None:
    scenario = converged()
    lost = [n for n in scenario.node_map if n.startswith("a-")]
    for name in lost:
        scenario.set_ready(name, False)

    record = scenario.step()

    # A third of the nodes NotReady is under guard.maxMissingFraction (0.5): accepted.
    assert not [n for n in record.reflectors if n.startswith("a-")]
    assert "Draining" not in record.reflectors.values()
    assert scenario.condition("Degraded")["status"] == "False"
    zone_a = next(z for z in scenario.status["zones"] if z["name"] == "a")  # type: ignore[index]
    assert zone_a["ready"] == 0
    assert zone_a["expected"] == 0
    # Its clients (down now) are served by the other zones' RRs when they come back.
    scenario.run_until_still()
    assert scenario.condition("Ready")["reason"] == "Converged"


def test_losing_a_whole_zone_past_the_guard_keeps_the_last_good_reflectors() -> None:
    scenario = converged(extra={"guard": {"maxMissingFraction": 0.2, "holdSeconds": 60}})
    children_before = scenario.children
    labelled_before = scenario.labelled()
    for name in [n for n in scenario.node_map if n.startswith("a-")]:
        scenario.set_ready(name, False)

    record = scenario.step()

    degraded = scenario.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "GuardTripped")
    assert scenario.condition("Ready")["status"] == "False"
    assert _specs(record.children) == _specs(children_before)
    assert scenario.labelled() == labelled_before
    # Held for guard.holdSeconds, then the missing zone is the new truth.
    scenario.step(5)
    assert scenario.condition("Degraded")["reason"] == "GuardTripped"
    scenario.step(2)
    assert scenario.condition("Degraded")["reason"] != "GuardTripped"
    assert not [n for n in scenario.reflectors() if n.startswith("a-")]


def _specs(children: dict[str, dict[str, Json]]) -> dict[str, dict[str, Json]]:
    return {
        kind: {name: child["spec"] for name, child in objects.items()}
        for kind, objects in children.items()
    }


# --- growth ------------------------------------------------------------------------------------


def test_five_hundred_nodes_joining_at_once_move_no_existing_client() -> None:
    scenario = converged(extra={"ratio": 0.01})
    clients = {n: scenario.group_of(n) for n in scenario.node_map if n not in scenario.labelled()}
    peers = dict(scenario.last.peers_of)
    scenario.add(*zoned_nodes({"a": 167, "b": 167, "c": 166}, start=1000, prefix="new-"))

    scenario.run_until_still()

    for name, group in clients.items():
        if name in scenario.labelled():
            continue  # promoted to RR: no longer a client
        assert scenario.group_of(name) == group, name
        assert peers[name] <= scenario.last.peers_of[name], name
    assert all(scenario.group_of(n) for n in scenario.node_map if n not in scenario.labelled())


# --- the guard ---------------------------------------------------------------------------------


def test_an_empty_node_list_is_refused_for_good_past_hold_seconds() -> None:
    scenario = converged(extra={"guard": {"holdSeconds": 60}})
    children_before = scenario.children
    labelled_before = scenario.labelled()
    status_before = scenario.status
    scenario.hidden = set(scenario.node_map)  # the request holds no Node; the Nodes are there

    record = scenario.step()

    degraded = scenario.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "GuardTripped")
    assert "no Node" in degraded["message"]
    assert scenario.condition("Ready")["reason"] == "GuardTripped"
    # Echoed unchanged, so Metacontroller deletes and rewrites nothing.
    assert _specs(record.children) == _specs(children_before)
    echoed = wire.decode(record.response, dict[str, Any])["children"]
    assert sorted(c["metadata"]["name"] for c in echoed) == sorted(
        name for objects in children_before.values() for name in objects
    )
    assert scenario.labelled() == labelled_before
    assert scenario.status["routeReflectors"] == status_before["routeReflectors"]  # type: ignore[index]
    assert wire.decode(record.response, dict[str, Any])["resyncAfterSeconds"] > 0

    scenario.step(20)  # 200 s, well past guard.holdSeconds: an empty set is never the truth
    assert scenario.condition("Degraded")["reason"] == "GuardTripped"
    assert scenario.labelled() == labelled_before
    assert _specs(scenario.children) == _specs(children_before)


def test_the_guard_hold_runs_from_the_services_own_first_sighting_not_the_requests_stamps() -> None:
    scenario = converged(extra={"guard": {"maxMissingFraction": 0.2, "holdSeconds": 60}})
    labelled_before = scenario.labelled()
    for name in [n for n in scenario.node_map if n.startswith("a-")]:
        scenario.set_ready(name, False)
    scenario.step()
    first_seen = scenario.status["guard"]["trippedSince"]  # type: ignore[index]
    assert first_seen == stamp(scenario.last.now)

    # A forged transition time in the request does not shorten the hold.
    assert scenario.status is not None
    for condition in scenario.status["conditions"]:
        condition["lastTransitionTime"] = "0001-01-01T00:00:00Z"
    scenario.step()
    assert scenario.condition("Degraded")["reason"] == "GuardTripped"
    assert scenario.status["guard"]["trippedSince"] == first_seen
    assert scenario.labelled() == labelled_before

    # A stamp before the object was created, or in the future, counts as now: the hold restarts.
    for forged in ("0001-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        scenario.status["guard"]["trippedSince"] = forged
        scenario.step()
        assert scenario.condition("Degraded")["reason"] == "GuardTripped"
        assert scenario.status["guard"]["trippedSince"] == stamp(scenario.last.now)
        assert scenario.labelled() == labelled_before

    # Held for holdSeconds from the last sighting we trust, then accepted; the record goes.
    scenario.step(6)
    assert scenario.condition("Degraded")["reason"] != "GuardTripped"
    assert "guard" not in scenario.status
    assert not [n for n in scenario.reflectors() if n.startswith("a-")]


# --- sessions ----------------------------------------------------------------------------------


def test_sessions_that_never_establish_keep_the_draining_reflector_forever() -> None:
    scenario = converged(establish_after=None)
    leaving = in_zone(scenario, "a")[0]
    scenario.cordon(leaving)

    scenario.step(30)

    assert scenario.reflectors()[leaving] == "Draining"
    assert leaving in scenario.labelled()
    ready = scenario.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TransitionPending")
    assert wire.decode(scenario.last.response, dict[str, Any])["resyncAfterSeconds"] > 0
    assert not scenario.last.decision.mesh_can_go


def test_old_calico_waits_wait_seconds_on_the_clock() -> None:
    scenario = converged(calico_status=False, extra={"waitSeconds": 30})
    assert wire.NODESTATUS_KEY not in scenario.children
    leaving = in_zone(scenario, "a")[0]
    scenario.cordon(leaving)

    first = scenario.step()
    [newcomer] = [n for n, s in first.reflectors.items() if s == "Pending"]
    resync = [wire.decode(first.response, dict[str, Any])["resyncAfterSeconds"]]
    assert resync[0] == pytest.approx(30, abs=1)
    while scenario.reflectors()[newcomer] == "Pending":
        assert scenario.reflectors()[leaving] == "Draining"
        assert leaving in scenario.labelled()
        record = scenario.step()
        resync.append(wire.decode(record.response, dict[str, Any]).get("resyncAfterSeconds"))

    assert scenario.last.now - first.now == timedelta(seconds=30)
    assert resync[:3] == [
        pytest.approx(30, abs=1),
        pytest.approx(20, abs=1),
        pytest.approx(10, abs=1),
    ]
    assert leaving not in scenario.reflectors()
    assert leaving not in scenario.labelled()
    assert not scenario.last.decision.mesh_can_go  # never without session state to prove it


# --- stability ---------------------------------------------------------------------------------


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_step_with_nothing_changed_answers_the_same_bytes(topology: str) -> None:
    scenario = converged(topology)
    before = scenario.last.response

    scenario.shuffle = random.Random(7)
    for _ in range(3):
        assert scenario.step().response == before


def test_a_transition_in_progress_answers_the_same_bytes_while_it_waits() -> None:
    scenario = converged(establish_after=None)
    scenario.cordon(in_zone(scenario, "a")[0])
    scenario.step(2)

    responses = {scenario.step().response for _ in range(3)}

    assert len(responses) == 1


# --- cluster-ID changes roll, one RR per group per step (issue 11 §2) ----------------------------


def carried_ids(scenario: Scenario) -> dict[str, str]:
    """RR → the cluster-ID annotation its node carries now."""
    found = {}
    for name in scenario.reflectors():
        annotations = scenario.node(name)["metadata"].get("annotations") or {}
        found[name] = annotations.get(wire.CLUSTER_ID_ANNOTATION, "")
    return found


def changes_per_group(scenario: Scenario, steps: int) -> list[dict[str, list[str]]]:
    """Per step: target cluster ID → the RRs whose carried ID changed in that step."""
    per_step = []
    for _ in range(steps):
        before = carried_ids(scenario)
        scenario.step()
        after = carried_ids(scenario)
        changed: dict[str, list[str]] = {}
        for name, cid in after.items():
            if before.get(name) and before[name] != cid:
                changed.setdefault(cid, []).append(name)
        per_step.append(changed)
    return per_step


def racked(zones: dict[str, int], racks: int = 4) -> list[Json]:
    """Zoned nodes spread over `racks` racks (label `rack`) for hierarchy."""
    nodes = zoned_nodes(zones)
    for index, node in enumerate(nodes):
        node["metadata"]["labels"]["rack"] = f"r{index % racks}"
    return nodes


def rolling(topology: str, **options: Any) -> Scenario:
    """A converged cluster of 3 x 20 nodes (hierarchy: in 4 racks) whose cluster-ID template
    was just changed."""
    extra = options.pop("extra", {})
    if topology == "hierarchy":
        scenario = Scenario(
            spec("hierarchy", rackLabel="rack", **extra),
            racked({"a": 20, "b": 20, "c": 20}),
            **options,
        )
        scenario.run_until_still()
    else:
        scenario = converged(topology, extra=extra, **options)
    assert scenario.condition("Ready")["reason"] == "Converged"
    scenario.set_spec(clusterID="10.9.0.%d")
    return scenario


def roll_steps_for(scenario: Scenario, count: int) -> list[set[str]]:
    """Per step of `count`, the RRs whose carried cluster ID changed."""
    steps = []
    for _ in range(count):
        before = carried_ids(scenario)
        scenario.step()
        after = carried_ids(scenario)
        steps.append({n for n, cid in after.items() if before.get(n) and before[n] != cid})
    return steps


def roll_steps(scenario: Scenario, limit: int = 20) -> list[set[str]]:
    """Step until every RR carries a 10.9.0.x ID and Ready is Converged; per step, the RRs whose
    carried ID changed."""
    steps: list[set[str]] = []
    for _ in range(limit):
        steps += roll_steps_for(scenario, 1)
        done = all(cid.startswith("10.9.0.") for cid in carried_ids(scenario).values())
        if done and scenario.condition("Ready")["reason"] == "Converged":
            return steps
    raise AssertionError(f"the roll did not finish in {limit} steps: {steps}")


@pytest.mark.parametrize("topology", [*TOPOLOGIES, "hierarchy"])
def test_a_cluster_id_template_change_rolls_one_rr_per_group_per_step(topology: str) -> None:
    scenario = rolling(topology)
    rrs = set(scenario.reflectors())

    steps = changes_per_group(scenario, 12)

    assert any(steps), "no cluster ID changed"
    assert all(len(nodes) <= 1 for step in steps for nodes in step.values()), steps
    assert all(cid.startswith("10.9.0.") for cid in carried_ids(scenario).values())
    assert set(scenario.reflectors()) == rrs  # an ID change moves no RR
    assert scenario.run_until_still() and scenario.condition("Ready")["reason"] == "Converged"


@pytest.mark.parametrize("topology", [*TOPOLOGIES, "hierarchy"])
def test_a_roll_changes_one_rr_a_step_one_cluster_at_a_time_after_the_last_ones_sessions(
    topology: str,
) -> None:
    scenario = rolling(topology)
    rrs = set(scenario.reflectors())

    steps = roll_steps(scenario, 60)

    # The scenario checks every step that no client has two RRs down (lost, or restarting for
    # a new ID) at once; sessions come back one step after the change, so every step changes
    # one RR, and one more step sees the last one back.
    changed = [step for step in steps if step]
    assert all(len(step) == 1 for step in changed), steps
    assert set().union(*changed) == rrs
    assert len(changed) == len(rrs)  # each RR changed once
    assert len(steps) == len(changed) + 1, steps
    # One cluster at a time: a cluster, once started, finishes before the next one starts.
    final = carried_ids(scenario)
    order = [final[next(iter(step))] for step in changed]
    blocks = [cid for i, cid in enumerate(order) if i == 0 or order[i - 1] != cid]
    assert len(blocks) == len(set(order)), order
    assert not [rr for rr in (scenario.status or {})["routeReflectors"] if "nextClusterID" in rr]


@pytest.mark.parametrize(
    ("topology", "zones"),
    [
        ("simple", {"a": 20, "b": 20, "c": 20}),
        ("simple", {"a": 50, "b": 50, "c": 50}),  # groups of 5
        ("multi", {"a": 50, "b": 50, "c": 50}),
        ("quorum", {"a": 50, "b": 50, "c": 50}),
        ("hierarchy", {"a": 20, "b": 20, "c": 20}),
    ],
)
def test_paths_per_prefix_stay_within_the_mid_roll_bound_at_every_step_of_a_roll(
    topology: str, zones: dict[str, int]
) -> None:
    if topology == "hierarchy":
        scenario = Scenario(spec("hierarchy", rackLabel="rack"), racked(zones))
    else:
        scenario = Scenario(spec(topology), zoned_nodes(zones))
    scenario.run_until_still()
    stable = scenario.paths()
    scenario.set_spec(clusterID="10.9.0.%d")
    worst = 0
    for _ in range(60):
        scenario.step()
        report = scenario.paths()
        bound = mid_roll_bound(largest_cluster(scenario.status or {}))
        assert not report.exploded
        assert report.paths_client_max <= bound, (report.paths_client_max, bound)
        assert report.paths_rr_max <= 32
        worst = max(worst, report.paths_client_max)
        if all(cid.startswith("10.9.0.") for cid in carried_ids(scenario).values()):
            break
    assert worst > stable.paths_client_max  # the roll was seen mid-way
    scenario.run_until_still()
    assert scenario.paths().paths_client_max == stable.paths_client_max


def test_a_cluster_keeps_its_members_while_it_rolls() -> None:
    # Clusters of 3 and 2 RRs (multi, 1 peer a node: groups of 2 to 3) over uneven zones. The
    # last status's nextClusterID is what keeps a rolling cluster together: keyed by the IDs
    # its RRs carry mid-roll (two), it was cut anew and a client lost both its RRs at once.
    zones = ["a", "a", None, "c", "d", "a", "a", "a", "b"]
    born = [60, 61, 2, 3, 4, 5, 6, 7, 100]  # the RRs: node-002 to -005 and node-008
    nodes = [make_node(f"node-{i:03d}", z, index=born[i]) for i, z in enumerate(zones)]
    document = spec("multi", min=0, max=1, ratio=0.01, peersPerNode=1)
    scenario = Scenario(document, nodes)
    scenario.run_until_still()
    groups = {g["name"]: g["reflectors"] for g in (scenario.status or {})["groups"]}
    assert sorted(len(members) for members in groups.values()) == [2, 3]
    scenario.set_spec(clusterID="10.9.0.%d")

    steps = roll_steps(scenario)  # the scenario checks every step: no client loses two RRs

    assert sum(len(step) for step in steps) == 5
    assert {g["name"]: g["reflectors"] for g in (scenario.status or {})["groups"]} == groups


def test_an_rr_on_the_new_id_is_set_aside_while_two_of_its_cluster_keep_the_old_one() -> None:
    scenario = rolling("simple")  # clusters of 3
    (moved,) = roll_steps_for(scenario, 1)[0]
    cluster = {rr for rr in scenario.reflectors() if rr[0] == moved[0]}

    # Two of its cluster still on the old ID: it peers with its cluster only (no clients, no
    # plane), so the two ID classes cannot hand each other's copies to anyone.
    assert set(scenario.sessions_of(moved)) == cluster - {moved}

    roll_steps_for(scenario, 1)  # the second of the cluster changes: one old one is left
    back = set(scenario.sessions_of(moved))
    assert back > cluster - {moved}
    assert back - set(scenario.reflectors())  # its clients again


def test_rrs_waiting_their_turn_show_the_id_they_change_to() -> None:
    scenario = rolling("simple")

    scenario.step()

    shown = {rr["node"]: rr for rr in (scenario.status or {})["routeReflectors"]}
    changing = [n for n, rr in shown.items() if rr["state"] == "Pending"]
    waiting = [n for n, rr in shown.items() if "nextClusterID" in rr]
    assert changing and waiting
    for name in changing:
        assert shown[name]["clusterID"].startswith("10.9.0.")
        assert "nextClusterID" not in shown[name]
    for name in waiting:
        assert shown[name]["clusterID"].startswith("224.0.0.")
        assert shown[name]["nextClusterID"].startswith("10.9.0.")
        assert shown[name]["state"] == "Active"
        assert carried_ids(scenario)[name] == shown[name]["clusterID"]  # nodes keep theirs
    ready = scenario.condition("Ready")
    assert ready["reason"] == "TransitionPending"
    assert "cluster ID changing on" in ready["message"]
    assert f"{len(waiting)} RR(s) change theirs later" in ready["message"]


def test_a_roll_waits_for_as_long_as_the_changed_rrs_sessions_stay_down() -> None:
    scenario = rolling("simple")
    scenario.establish_after = None  # sessions that restart never come back
    first = roll_steps_for(scenario, 1)[0]
    assert first

    later = roll_steps_for(scenario, 8)

    assert not any(later), later
    assert {n for n, s in scenario.reflectors().items() if s == "Pending"} == first
    ready = scenario.condition("Ready")
    assert "cluster-ID changes wait for BGP sessions of" in ready["message"]
    assert scenario.last.decision.resync_after == 10
    scenario.establish_after = 1
    assert any(roll_steps_for(scenario, 2))


def test_a_stale_report_from_before_the_change_does_not_count() -> None:
    scenario = rolling("simple")
    # calico-node on every RR stops reporting: its last report shows the old sessions
    # Established, dated before the change.
    scenario.frozen = set(scenario.reflectors())
    first = roll_steps_for(scenario, 1)[0]
    assert first
    stale = {
        child["spec"]["node"]: child["status"]
        for child in scenario.children[wire.NODESTATUS_KEY].values()
    }
    assert all(stale[n]["bgp"]["numberNotEstablishedV4"] == 0 for n in first)

    later = roll_steps_for(scenario, 6)

    assert not any(later), later
    assert {n for n, s in scenario.reflectors().items() if s == "Pending"} == first
    scenario.frozen = set()
    assert any(roll_steps_for(scenario, 2))


@pytest.mark.parametrize(
    ("options", "extra", "wait", "changes"),
    [
        ({"undated": True}, {"waitSeconds": 30}, 30, 4),  # undated: max(update period, wait)
        ({"undated": True}, {}, 10, 9),  # ... the update period with waitSeconds 0: all 9 RRs
        ({"calico_status": False}, {"waitSeconds": 30}, 30, 4),  # no session state: waitSeconds
    ],
)
def test_without_a_dated_report_the_next_change_waits_on_the_clock(
    options: Json, extra: Json, wait: int, changes: int
) -> None:
    scenario = rolling("simple", extra=extra, **options)

    per_step = roll_steps_for(scenario, 12)
    moments = [scenario.history[-12 + i].now for i, step in enumerate(per_step) if step]

    assert len(moments) == changes, per_step  # one RR per change, `wait` apart
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(moments)]
    assert gaps == [wait] * (len(moments) - 1), gaps


def test_a_roll_waits_while_an_rr_drains() -> None:
    scenario = converged("simple", establish_after=1)
    scenario.establish_after = None  # the replacement never establishes: a-x drains forever
    leaving = in_zone(scenario, "a")[0]
    scenario.cordon(leaving)
    scenario.step()
    assert scenario.reflectors()[leaving] == "Draining"
    scenario.set_spec(clusterID="10.9.0.%d")

    assert not any(roll_steps_for(scenario, 5))
    assert any("nextClusterID" in rr for rr in (scenario.status or {})["routeReflectors"])


def test_a_first_install_over_the_go_operators_rrs_keeps_one_of_their_ids_and_rolls_the_rest() -> (
    None
):
    nodes = zoned_nodes({"a": 20, "b": 20, "c": 20})
    old = {"a-005": "224.0.0.42", "b-005": "224.0.0.99", "c-005": "224.0.0.7"}
    for node in nodes:
        if node["metadata"]["name"] in old:
            node["metadata"]["labels"]["calico-route-reflector"] = ""
            node["metadata"]["annotations"] = {
                wire.CLUSTER_ID_ANNOTATION: old[node["metadata"]["name"]]
            }
    scenario = Scenario(spec("multi", min=3, max=3, ratio=0.01), nodes)

    steps = changes_per_group(scenario, 12)

    final = carried_ids(scenario)
    assert set(old) <= set(final), final  # they stay RRs
    assert any(final[name] == cid for name, cid in old.items()), final  # not all renumbered
    assert all(len(nodes) <= 1 for step in steps for nodes in step.values()), steps
    assert scenario.condition("Ready")["reason"] == "Converged", scenario.condition("Ready")


def test_a_first_install_over_hand_labelled_rrs_sharing_an_id_per_zone_keeps_every_id() -> None:
    nodes = zoned_nodes({"a": 20, "b": 20, "c": 20})
    by_hand = {
        f"{zone}-{n:03d}": cid
        for zone, cid in (("a", "224.0.0.7"), ("b", "224.0.0.9"), ("c", "224.0.0.3"))
        for n in (10, 11, 12)
    }
    for node in nodes:
        name = node["metadata"]["name"]
        if name in by_hand:
            node["metadata"]["labels"]["calico-route-reflector"] = ""
            node["metadata"]["annotations"][wire.CLUSTER_ID_ANNOTATION] = by_hand[name]
    scenario = Scenario(spec("simple", min=3, max=3), nodes)

    steps = roll_steps_for(scenario, 6)

    assert not any(steps), steps  # not one ID changed: no session was reset
    assert carried_ids(scenario) == by_hand
    assert scenario.condition("Ready")["reason"] == "Converged", scenario.condition("Ready")
    assert not [rr for rr in (scenario.status or {})["routeReflectors"] if "nextClusterID" in rr]


def test_an_unreadable_calico_node_status_child_is_reported_and_never_trusted() -> None:
    scenario = Scenario(
        {"zoneLabel": ZONE, "min": 2, "nodeToNodeMesh": "DisableWhenReady"},
        zoned_nodes({"a": 4, "b": 4}),
    )
    scenario.run_until_still()
    children = scenario.children[wire.NODESTATUS_KEY]
    name = sorted(children)[0]
    children[name]["status"]["bgp"] = "Established"  # not a BGP status: proves nothing

    decision = controllers.decide_topology(
        wire.decode_topology_request(scenario.topology_request()), {}, scenario.now
    )
    response = controllers.render_topology(decision)

    assert decision.sessions.unreadable == (name,)
    assert children[name]["spec"]["node"] not in decision.sessions.established
    assert not decision.mesh_can_go
    (problem,) = [c for c in response.status["conditions"] if c["type"] == "SessionState"]
    assert (problem["status"], problem["reason"]) == ("False", "ReportUnreadable")
    assert name in problem["message"] and "the CalicoNodeStatus children" in problem["message"]
