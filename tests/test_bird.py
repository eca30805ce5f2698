"""Every topology on real BIRD 1.6: one BIRD per node on its own 127.x.y.z, configured as
calico/node configures it; every node's BGP route count must equal the path model's, with all
RRs up and with the busiest RR stopped.  `python -m hooks verify --bird` runs the same check."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nodes import sim_node as node
from scenario import ZONE, Scenario, zoned_nodes

from hooks import bird_check, cli
from hooks.bird import (
    BirdError,
    LabNode,
    Neighbour,
    protocol_name,
    render_config,
    render_lab,
    restarted_sessions,
)
from hooks.bird_check import (
    BirdCheck,
    Phase,
    RollStep,
    apply_plan,
    format_check,
    model_routes,
    run_check,
    sample_nodes,
)
from hooks.bird_lab import BirdLab, Snapshot, bird_available, lab, sessions
from hooks.offline import run_plan
from hooks.sessions import SimNode, nodes_from_objects

NOW = datetime(2026, 11, 28, tzinfo=UTC)
RACK = "topology.example.com/rack"
INSTALL = "make test (as root: apt-get install --no-install-recommends bird)"
# Per test run: a port and a 127.N.0.0/16 of its own, so parallel runs on one host do not meet.
PORT = 20000 + os.getpid() % 20000
NET = 100 + os.getpid() % 100


def bird() -> str:
    found = bird_available()
    if found:
        return found
    if os.environ.get("RR_SKIP_BIRD") == "1":
        pytest.skip("bird (BIRD 1.6) missing and RR_SKIP_BIRD=1: the BIRD tier did NOT run")
    pytest.fail(f"bird is missing: run `{INSTALL}` (or set RR_SKIP_BIRD=1 to skip)")


def cluster(
    topology: str, zones: Mapping[str, int], racks: int = 0, **spec: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Zoned nodes (in `racks` racks a zone) and the topology object for them."""
    nodes = zoned_nodes(zones)
    document: dict[str, Any] = {
        "apiVersion": "route-reflector.dev/v1alpha1",
        "kind": "RouteReflectorTopology",
        "metadata": {"name": "default"},
        "spec": {"topology": topology, "zoneLabel": ZONE, **spec},
    }
    if racks:
        for i, node in enumerate(nodes):
            labels = node["metadata"]["labels"]
            labels[RACK] = f"{labels[ZONE]}-rack{i // len(zones) % racks}"
        document["spec"]["rackLabel"] = RACK
    return nodes, document


def plan(
    topology: str, zones: Mapping[str, int], racks: int = 0, **spec: Any
) -> tuple[list[SimNode], list[dict[str, Any]]]:
    nodes, document = cluster(topology, zones, racks, **spec)
    result = run_plan({"items": nodes}, document, {}, NOW)
    return nodes_from_objects(result.nodes), result.bgp_peers


# --- configs, no BIRD needed ------------------------------------------------------------------


def peer(selector: str, nodes: str) -> dict[str, Any]:
    return {"metadata": {"name": nodes}, "spec": {"nodeSelector": nodes, "peerSelector": selector}}


def test_rr_client_is_set_by_calicos_rule_on_the_rr_side_only() -> None:
    nodes = [node("c", role="client"), node("r1", "1.1.1.1", role="rr"), node("r2", "1.1.1.1")]
    nodes.append(node("r3", "2.2.2.2", role="rr"))
    peers = [peer("role == 'rr'", "all()"), peer("name == 'r2'", "name == 'r1'")]

    by_name = {n.name: n for n in render_lab(nodes, peers)}
    configs = {name: render_config(n, port=1179) for name, n in by_name.items()}

    r1 = {p.name: p.rr_client for p in by_name["r1"].neighbours}
    assert r1 == {"c": True, "r2": False, "r3": True}  # same cluster ID: not a client
    assert not any(p.rr_client for p in by_name["c"].neighbours)  # a client has no cluster ID
    assert "rr client" not in configs["c"]
    assert configs["r1"].count("rr cluster id 1.1.1.1;") == 2
    assert configs["r3"].count("rr cluster id 2.2.2.2;") == 3  # for c, r1 and r2


def test_each_node_gets_its_own_loopback_address_pod_block_and_calicos_bgp_settings() -> None:
    nodes = [node("a", "9.9.9.9"), node("b")]
    lab = render_lab(
        [*nodes], [peer("all()", "all()")], first_address=ipaddress.IPv4Address("127.5.0.1")
    )

    config = render_config(lab[1], port=1179)

    assert [(n.name, n.address, n.block) for n in lab] == [
        ("a", "127.5.0.1", "10.0.0.0/26"),
        ("b", "127.5.0.2", "10.0.0.64/26"),
    ]
    assert "router id 127.5.0.2;" in config
    assert "listen bgp address 127.5.0.2 port 1179;" in config
    assert "neighbor 127.5.0.1 port 1179 as 64512;" in config
    for setting in ("add paths on;", "graceful restart;", "multihop;", "connect retry time 3;"):
        assert setting in config
    assert "protocol kernel" not in config  # the host routing table never changes
    assert "connect delay time 2;" in config  # b, the higher address, dials second
    assert "connect delay time 2;" not in render_config(lab[0], port=1179)


def test_a_new_cluster_id_restarts_every_session_of_that_rr_and_no_other() -> None:
    nodes = [node("c", role="client"), node("r1", "1.1.1.1", role="rr"), node("r2", "1.1.1.1")]
    nodes.append(node("r3", "2.2.2.2", role="rr"))
    peers = [peer("role == 'rr'", "all()")]
    old = render_lab(nodes, peers)
    nodes[1] = node("r1", "9.9.9.9", role="rr")

    restarted = restarted_sessions(old, render_lab(nodes, peers))

    # r1-r2 too: they shared an ID, so both ends now add `rr client` (r2 with its own ID)
    assert restarted == {frozenset(("r1", p)) for p in ("c", "r2", "r3")}
    assert restarted_sessions(old, old) == frozenset()
    fewer = render_lab(nodes[1:], [peer("role == 'rr'", "role == 'rr'")])
    assert restarted_sessions(old, fewer) == {frozenset(("r1", "r3"))}  # r1-c removed, not counted


def test_a_sample_keeps_every_rr_and_spreads_the_clients_over_the_name_order() -> None:
    nodes = [node(f"c{i:02d}") for i in range(10)] + [node("r", "1.1.1.1")]

    chosen = [n.name for n in sample_nodes(nodes, 3)]

    assert chosen == ["c00", "c03", "c06", "r"]
    assert len(sample_nodes(nodes, None)) == len(sample_nodes(nodes, 50)) == 11


def test_the_report_lists_mismatches_first_and_fails_the_verdict() -> None:
    phase = Phase(
        "all up",
        bird={"a": 5, "b": 4, "r": 9},
        model={"a": 5, "b": 3, "r": 9},
        networks={"a": 4, "b": 4, "r": 3},
        seconds=1.0,
    )
    check = BirdCheck(3, 1, None, (phase,))

    lines = format_check(check, {"a": "client", "b": "client", "r": "RR"})

    assert not check.ok and phase.mismatched == ["b"] and phase.unreachable == ["r"]
    assert lines[1].startswith("-- all up: converged in 1.0 s; 1 nodes differ")
    assert lines[3].split() == ["b", "client", "4", "3", "MISMATCH"]
    assert lines[-1] == "verdict: FAIL"


# --- the tier: every topology on real BIRD ------------------------------------------------------


def assert_matches_the_model(check: BirdCheck) -> None:
    assert check.stopped is not None and len(check.phases) == 2
    for phase in check.phases:
        assert dict(phase.bird) == dict(phase.model), phase.title
        assert phase.unreachable == [], phase.title
    assert check.ok


# Settings that converge today (the defaults explode: multi holds millions of routes); the check
# compares BIRD with the model whatever the plan, so it runs unchanged on redesigned topologies.
CASES = {
    "simple": ("simple", {"a": 20, "b": 20, "c": 20}, 0, {"min": 2, "max": 2}),
    "multi": ("multi", {"a": 20, "b": 20}, 0, {"min": 2, "max": 2}),
    "quorum": ("quorum", {"a": 20, "b": 20}, 0, {}),
    "hierarchy": ("hierarchy", {"a": 20, "b": 20, "c": 20}, 4, {}),
}


@pytest.mark.bird
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_nodes_bgp_routes_on_real_bird_equal_the_models_before_and_after_an_rr_stops(
    case: str, tmp_path: Path
) -> None:
    binary = bird()
    topology, zones, racks, spec = CASES[case]
    nodes, peers = plan(topology, zones, racks, **spec)
    assert 40 <= len(nodes) <= 60

    offset = sorted(CASES).index(case)
    check = run_check(
        nodes,
        peers,
        workdir=tmp_path,
        port=PORT,
        first_address=ipaddress.IPv4Address(f"127.{NET}.{offset}.1"),
        bird=binary,
    )

    assert check.nodes == len(nodes)
    assert_matches_the_model(check)


# --- a live cluster-ID roll (issue 11 §2) --------------------------------------------------------


@dataclass
class LiveScenario(Scenario):
    """The scenario whose calico-node reports what the running BIRDs say once `running` is set:
    a node is up when every BGP session it is configured with is Established."""

    running: BirdLab | None = None

    def up(self, name: str) -> bool:
        if self.running is None:
            return super().up(name)
        proc = self.running.started[name]
        states = sessions(proc.socket_path)
        return all(
            states.get(protocol_name(peer.address)) == "Established"
            for peer in proc.node.neighbours
        )


def planned(scenario: Scenario) -> tuple[list[SimNode], list[dict[str, Any]]]:
    """The scenario's nodes (labels and cluster-ID annotations as applied) and BGPPeers."""
    return nodes_from_objects(list(scenario.node_map.values())), scenario.bgp_peers()


def waiting(scenario: Scenario) -> list[str]:
    """RRs the status shows waiting for their turn to change cluster ID."""
    return [
        rr["node"] for rr in (scenario.status or {})["routeReflectors"] if "nextClusterID" in rr
    ]


@pytest.mark.bird
@pytest.mark.slow
def test_a_cluster_id_roll_on_running_birds_keeps_every_route_and_matches_the_model(
    tmp_path: Path,
) -> None:
    """A whole roll on one set of running BIRDs (simple, 3 zones x 12 nodes, 3 RRs a zone),
    each step applied as confd applies it: changed configs rewritten and `configure`d, no BIRD
    restarted.  calico-node's reports (CalicoNodeStatus, dated each step) come from the BIRDs'
    own session states, so the roll moves on only once real sessions are back.  At every step
    BIRD restarts exactly the sessions whose options changed, and once converged every node's
    BGP routes equal the model's and every node holds every pod block.  Make-before-break:
    while a step converges, every client (all 27, none sampled: a poll of every client's
    `show route count` and every node's sessions takes about 60 ms) is polled and never
    misses a pod block but those of the RRs changing ID in that step: all their sessions
    restart, so their own blocks are withdrawn everywhere until the sessions are back."""
    binary = bird()
    nodes, document = cluster("simple", {"a": 12, "b": 12, "c": 12}, min=3, max=3)
    scenario = LiveScenario(document["spec"], nodes)
    scenario.run_until_still()
    template_a = sorted(scenario.cluster_ids().values())
    assert template_a == [f"224.0.0.{zone}" for zone in (1, 2, 3) for _ in range(3)]
    first = ipaddress.IPv4Address(f"127.{NET}.{len(CASES)}.1")
    steps: list[RollStep] = []
    moved: list[set[str]] = []  # per step, the RRs whose cluster ID changed

    def step(title: str) -> None:
        ids = scenario.cluster_ids()
        if steps:
            scenario.step()
        moved.append({name for name, cid in scenario.cluster_ids().items() if ids[name] != cid})
        steps.append(apply_plan(running, *planned(scenario), title=title, first_address=first))

    start = planned(scenario)
    with lab(render_lab(*start, first_address=first), tmp_path, port=PORT + 2,
             bird=binary) as running:  # fmt: skip
        running.converge(model_routes(*start))
        pids = running.pids()
        scenario.running = running
        step("A, converged")  # nothing to reconfigure: nothing restarts
        scenario.set_spec(clusterID="10.9.0.%d")
        for number in range(1, 13):  # one RR a step: 9 steps
            step(f"roll step {number}")
            if not waiting(scenario):
                break
        else:
            raise AssertionError(f"RRs still wait for a new cluster ID: {waiting(scenario)}")
        rolled = len(steps)
        for number in range(1, 4):  # BIRD's own report that the last RRs' sessions are back ...
            step(f"B{number}")
            if scenario.condition("Ready")["reason"] == "Converged":  # ... ends the roll
                break
        else:
            raise AssertionError(f"not Converged: {scenario.condition('Ready')}")
        # What the roll avoids: a zone's RRs all on a new ID at once (as a fresh install did).
        final, peers = planned(scenario)
        renumbered = [
            replace(n, cluster_id="10.8.0.1") if n.cluster_id == "10.9.0.1" else n for n in final
        ]
        at_once = apply_plan(running, renumbered, peers, title="at once", first_address=first)
        assert running.pids() == pids  # no BIRD was restarted

    for done, rrs in zip(steps, moved, strict=True):
        where = done.phase.title
        assert dict(done.phase.bird) == dict(done.phase.model), where
        assert done.phase.unreachable == [], where
        assert done.restarted == done.changed, where  # BIRD restarts exactly these sessions
        assert all(rrs & session for session in done.changed), where  # ... each of a moved RR
        assert bool(done.changed) == bool(rrs), where  # ... and a moved RR restarts some
        assert done.blocks_missed <= rrs, where  # make-before-break for every other block
        assert len(done.missed) == 27 and done.polls >= 2, where
    roll = moved[1:rolled]
    assert not moved[0] and not any(moved[rolled:])
    assert sorted(name for rrs in roll for name in rrs) == sorted(scenario.cluster_ids())
    assert all(len(rrs) == 1 for rrs in roll)  # one RR a step (one cluster at a time)
    # The watch does see gaps: the moved RRs' own blocks (gone for tenths of a second or more),
    # and, when a zone's RRs all restart at once, clients' blocks too.
    assert any(done.blocks_missed for done in steps)
    assert dict(at_once.phase.bird) == dict(at_once.phase.model)
    assert at_once.blocks_missed - set(scenario.cluster_ids())
    assert sorted(scenario.cluster_ids().values()) == [
        f"10.9.0.{zone}" for zone in (1, 2, 3) for _ in range(3)
    ]


# --- verify --bird ------------------------------------------------------------------------------


def small_plan_file(tmp_path: Path, topology: str = "simple", **spec: Any) -> Path:
    document = {
        "apiVersion": "route-reflector.dev/v1alpha1",
        "kind": "RouteReflectorTopology",
        "metadata": {"name": "default"},
        "spec": {"topology": topology, "zoneLabel": ZONE, **spec},
    }
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps({"items": zoned_nodes({"a": 6, "b": 6})}))
    (tmp_path / "topology.json").write_text(json.dumps(document))
    return nodes


@pytest.mark.bird
def test_verify_bird_prints_counts_next_to_the_models_and_exits_0_when_they_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bird()
    nodes = small_plan_file(tmp_path, min=2, max=2)
    argv = ["verify", str(nodes), "--topology", str(tmp_path / "topology.json"), "--bird"]
    argv += ["--sample", "5", "--bird-port", str(PORT + 1), "-o", "json"]

    code = cli.main(argv)

    out = json.loads(capsys.readouterr().out)["bird"]
    assert code == 0 and out["ok"]
    assert out["nodes"] == 4 + 5  # every RR, 5 of the 8 clients
    assert [p["ok"] for p in out["phases"]] == [True, True]
    routes = out["phases"][0]["routes"]
    assert all(r["bird"] == r["model"] > 0 for r in routes.values())


def test_verify_bird_without_bird_installed_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("hooks.bird_lab.bird_available", lambda: None)
    nodes = small_plan_file(tmp_path)

    code = cli.main(["verify", str(nodes), "--topology", str(tmp_path / "topology.json"), "--bird"])

    assert code == 2
    assert "apt-get install bird" in capsys.readouterr().err


def test_no_bird_is_started_when_the_models_count_explodes(tmp_path: Path) -> None:
    nodes, peers = plan("multi", {"a": 8, "b": 8}, min=4, max=4)

    with pytest.raises(BirdError, match="explodes"):
        run_check(nodes, peers, workdir=tmp_path, port=PORT, bird="/nonexistent/bird", budget=10)

    assert list(tmp_path.iterdir()) == []  # no config written, nothing started


def test_a_step_waits_until_a_changed_session_restarting_would_move_its_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # r-c was (re)established in this very second: restarted now, it could be down and up
    # between two polls with its `since` one second on, which reads as no change.
    slept: list[float] = []
    monkeypatch.setattr("hooks.bird_check.time.strftime", lambda _: "10:00:01")
    monkeypatch.setattr("hooks.bird_check.time.sleep", slept.append)
    r = LabNode("r", "127.0.0.2", "10.0.0.0/26", "1.0.0.1", (Neighbour("c", "127.0.0.3", True),))
    c = LabNode("c", "127.0.0.3", "10.0.0.64/26", None, (Neighbour("r", "127.0.0.2", False),))
    recent = {
        "r": Snapshot(0, 0, {}, {protocol_name("127.0.0.3"): "10:00:00"}),
        "c": Snapshot(0, 0, {}, {protocol_name("127.0.0.2"): "09:59:30"}),
    }
    changed = frozenset({frozenset(("r", "c"))})
    bird_check._wait_for_a_readable_since(recent, [r, c], changed)
    assert slept == [2]  # until 10:00:03: a restart then reads at least 2 s on
    bird_check._wait_for_a_readable_since(recent, [r, c], frozenset())  # nothing changes
    old = {name: Snapshot(0, 0, {}, {p: "09:59:30" for p in s.since}) for name, s in recent.items()}
    bird_check._wait_for_a_readable_since(old, [r, c], changed)  # established long before
    assert slept == [2]
