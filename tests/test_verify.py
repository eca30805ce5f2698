"""Route-propagation simulator: hand-built topologies, and equivalence with brute-force BIRD."""

from __future__ import annotations

import itertools
import json
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nodes import peers_of
from nodes import sim_node as node
from strategies import random_sessions

from hooks.selectors import parse_selector
from hooks.sessions import (
    CLUSTER_ID_ANNOTATION,
    SimNode,
    build_graph,
    nodes_from_objects,
    read_peers,
)
from hooks.verify import format_report, verify

Peer = dict[str, Any]


def peer(name: str, node_selector: str | None, peer_selector: str) -> Peer:
    spec = {"peerSelector": peer_selector}
    if node_selector is not None:
        spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": spec,
    }


RR_MESH = peer("rr-mesh", "has(rr)", "has(rr)")


def shared_cluster(clients_peer_with_both: bool) -> tuple[list[SimNode], list[Peer]]:
    """Two RRs with one cluster ID; clients a1, a2 use rr-a, clients b1, b2 use rr-b."""
    nodes = [
        node("rr-a", "10.0.0.1", rr="", group="a"),
        node("rr-b", "10.0.0.1", rr="", group="b"),
        node("a1", group="a"),
        node("a2", group="a"),
        node("b1", group="b"),
        node("b2", group="b"),
    ]
    if clients_peer_with_both:
        return nodes, [RR_MESH, peer("clients", "!has(rr)", "has(rr)")]
    return nodes, [
        RR_MESH,
        peer("group-a", "!has(rr) && group == 'a'", "has(rr) && group == 'a'"),
        peer("group-b", "!has(rr) && group == 'b'", "has(rr) && group == 'b'"),
    ]


def test_a_full_mesh_of_five_nodes_is_reachable() -> None:
    nodes = [node(f"n{i}") for i in range(5)]

    report = verify(nodes, [peer("everyone", None, "all()")])

    assert report.reachable and report.ok
    assert report.sessions_total == 10
    assert report.sessions_per_node_max == 4
    assert report.reflectors == 0
    assert report.single_failure_ok is True  # no RR to lose
    assert report.unreachable_examples == ()


def test_the_node_to_node_mesh_flag_alone_connects_plain_nodes() -> None:
    report = verify([node(f"n{i}") for i in range(5)], [], mesh=True)

    assert report.reachable
    assert report.sessions_total == 10


def test_clients_of_different_rrs_sharing_a_cluster_id_cannot_reach_each_other() -> None:
    nodes, peers = shared_cluster(clients_peer_with_both=False)

    report = verify(nodes, peers, max_examples=3)

    assert not report.reachable and not report.ok
    assert report.unreachable_pairs == 8  # a* <-> b*, both directions
    assert report.unreachable_examples == ("a1 -> b1", "a1 -> b2", "a2 -> b1")
    assert "FAILED" in format_report(report)


def test_clients_peering_with_every_rr_of_a_shared_cluster_survive_one_rr_failure() -> None:
    nodes, peers = shared_cluster(clients_peer_with_both=True)

    report = verify(nodes, peers, pairs=True)

    assert report.reachable
    assert report.single_failure_ok is True
    assert report.pair_failure_ok is False  # losing both RRs leaves the clients alone
    assert report.pair_failure_examples == ("without rr-a+rr-b: a1 -> a2",)
    assert report.clients_per_rr_max == 4  # the other RR is a non-client: same cluster ID
    assert report.sessions_per_rr_max == 5


def test_rrs_with_unique_cluster_ids_route_but_a_client_with_one_rr_is_not_failure_tolerant() -> (
    None
):
    nodes = [
        node("rr-1", "10.0.0.1", rr="", group="1"),
        node("rr-2", "10.0.0.2", rr="", group="2"),
        node("rr-3", "10.0.0.3", rr="", group="3"),
        *(node(f"c{g}{i}", group=g) for g in "123" for i in range(2)),
    ]
    peers = [RR_MESH] + [
        peer(f"group-{g}", f"!has(rr) && group == '{g}'", f"has(rr) && group == '{g}'")
        for g in "123"
    ]

    report = verify(nodes, peers)

    assert report.reachable
    assert report.single_failure_ok is False
    assert report.single_failure_examples[0] == "without rr-1: c10 -> c11"
    assert len(report.single_failure_examples) == 3
    assert report.clients_per_rr_max == 4  # 2 clients + 2 RRs of other clusters


def test_a_client_without_sessions_is_named_in_the_unreachable_examples() -> None:
    nodes, peers = shared_cluster(clients_peer_with_both=True)
    nodes.append(node("lonely", group="none"))
    peers[1] = peer("clients", "!has(rr) && group != 'none'", "has(rr)")

    report = verify(nodes, peers, max_examples=20)

    assert not report.reachable
    assert report.unreachable_pairs == 2 * 6
    assert "a1 -> lonely" in report.unreachable_examples
    assert "lonely -> rr-a" in report.unreachable_examples


def test_an_rr_never_passes_on_a_path_that_already_holds_its_cluster_id() -> None:
    # a1 -> rr-a -> rr-b (same cluster, keeps the path) -/-> rr-q: rr-b's ID is in the list
    topology = Topology(
        {"rr-a": "10.0.0.1", "rr-b": "10.0.0.1", "rr-q": "10.0.0.2", "a1": None, "q1": None},
        frozenset({("rr-a", "rr-b"), ("rr-b", "rr-q"), ("a1", "rr-a"), ("q1", "rr-q")}),
        mesh=False,
    )

    report = verify(topology.nodes(), topology.peers(), max_examples=100)

    assert "q1 -> a1" in report.unreachable_examples
    assert "rr-b -> a1" not in report.unreachable_examples  # it keeps the route for itself
    assert list(report.unreachable_examples) == reference_unreachable(**topology.arguments())


def test_an_rr_drops_a_path_from_a_client_that_already_holds_its_cluster_id() -> None:
    # c0 -> r0 -> r2 -> r1 is dropped by r1: r0 and r1 share a cluster ID
    topology = Topology(
        {"r0": "10.0.0.1", "r1": "10.0.0.1", "r2": "10.0.0.2", "c0": None, "c1": None},
        frozenset({("r0", "r2"), ("r1", "r2"), ("c0", "r0"), ("c1", "r1")}),
        mesh=False,
    )

    report = verify(topology.nodes(), topology.peers(), max_examples=100)

    assert report.unreachable_examples == ("c0 -> c1", "c1 -> c0", "r0 -> c1", "r1 -> c0")
    assert list(report.unreachable_examples) == reference_unreachable(**topology.arguments())


def hierarchy() -> tuple[list[SimNode], list[Peer]]:
    """Two racks with two rack RRs each (one cluster ID per rack) under two spine RRs."""
    nodes = [node("spine-1", "10.9.9.9", spine=""), node("spine-2", "10.9.9.9", spine="")]
    peers = [
        peer("spine-mesh", "has(spine)", "has(spine)"),
        peer("racks-to-spine", "has(rack-rr)", "has(spine)"),
    ]
    for r in (1, 2):
        rack = f"rack-{r}"
        nodes += [
            node(f"{rack}-rr-{i}", f"10.0.{r}.1", rack=rack, **{"rack-rr": ""}) for i in (1, 2)
        ]
        nodes += [node(f"{rack}-n{i}", rack=rack) for i in range(3)]
        peers.append(
            peer(
                rack,
                f"!has(rack-rr) && !has(spine) && rack == '{rack}'",
                f"has(rack-rr) && rack == '{rack}'",
            )
        )
    return nodes, peers


def test_a_hierarchy_of_rack_and_spine_rrs_routes_and_survives_one_rr_failure() -> None:
    nodes, peers = hierarchy()

    report = verify(nodes, peers, pairs=True)

    assert report.reachable
    assert report.single_failure_ok is True
    assert report.pair_failure_ok is False
    assert (
        report.pair_failure_examples[0] == "without rack-1-rr-1+rack-1-rr-2: rack-1-n0 -> rack-1-n1"
    )


def test_with_the_mesh_on_rrs_take_no_mesh_sessions() -> None:
    nodes = [node("rr", "10.0.0.1", rr=""), node("c1"), node("c2"), node("c3")]

    report = verify(nodes, [peer("clients", "!has(rr)", "has(rr)")], mesh=True)

    assert report.reachable
    assert report.sessions_per_rr_max == 3
    assert report.sessions_total == 3 + 3  # three RR sessions plus the client mesh
    assert report.sessions_per_node_max == 3


def test_with_the_mesh_on_an_rr_without_bgppeers_is_cut_off() -> None:
    nodes = [node("rr-1", "10.0.0.1", rr=""), node("c1"), node("c2")]

    report = verify(nodes, [], mesh=True, max_examples=2)

    assert not report.reachable
    assert report.unreachable_examples == ("c1 -> rr-1", "c2 -> rr-1")


def test_peer_ip_and_selectorless_peers_are_skipped_and_reported() -> None:
    nodes = [node("n1"), node("n2")]
    peers: list[Peer] = [
        {"metadata": {"name": "tor"}, "spec": {"peerIP": "192.0.2.1", "asNumber": 64512}},
        {"metadata": {"name": "empty"}, "spec": {}},
        {"metadata": {"name": "one"}, "spec": {"node": "n1", "peerSelector": "name == 'n2'"}},
    ]

    report = verify(nodes, peers)

    assert report.bgp_peers == 3
    assert report.skipped_peers == (
        "empty: neither peerSelector nor peerIP",
        "tor: peerIP 192.0.2.1 is outside the simulation",
    )
    assert report.reachable and report.sessions_total == 1


def test_a_broken_selector_names_the_bgppeer() -> None:
    with pytest.raises(ValueError, match=r"BGPPeer bad: .*position 5"):
        verify([node("n1")], [peer("bad", None, "zone = 'a'")])


def test_duplicate_node_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate node name 'n1'"):
        verify([node("n1"), node("n1")], [])


def test_nodes_from_objects_reads_labels_and_the_cluster_id_annotation() -> None:
    objects: list[dict[str, Any]] = [
        {"metadata": {"name": "b", "labels": {"zone": "x"}}},
        {
            "metadata": {
                "name": "a",
                "labels": {"rr": ""},
                "annotations": {CLUSTER_ID_ANNOTATION: "224.0.0.1"},
            }
        },
        {"metadata": {"name": "c", "annotations": {CLUSTER_ID_ANNOTATION: ""}}},
        {"metadata": {"name": "d"}, "spec": {"bgp": {"routeReflectorClusterID": "224.0.0.2"}}},
    ]

    assert nodes_from_objects(objects) == [
        SimNode("a", {"rr": ""}, "224.0.0.1"),
        SimNode("b", {"zone": "x"}, None),
        SimNode("c", {}, None),
        SimNode("d", {}, "224.0.0.2"),
    ]


def test_the_report_is_json_with_a_stable_key_order_and_reads_as_text() -> None:
    nodes, peers = shared_cluster(clients_peer_with_both=True)

    report = verify(nodes, peers)
    data = report.to_dict()

    assert list(data)[:4] == ["ok", "nodes", "reflectors", "bgp_peers"]
    assert json.loads(json.dumps(data)) == data
    assert data["ok"] is True and data["pair_failure_ok"] is None
    text = format_report(report)
    assert text.splitlines()[0] == "verify: OK"
    assert "single RR failure: tolerated (2 checked)" in text
    assert "RR pair failure: not checked" in text


def test_shuffled_input_gives_the_same_report() -> None:
    nodes, peers = hierarchy()
    expected = verify(nodes, peers, pairs=True).to_dict()
    rng = random.Random(7)
    for _ in range(3):
        rng.shuffle(nodes)
        rng.shuffle(peers)
        assert verify(nodes, peers, pairs=True).to_dict() == expected


# ---------------------------------------------------------------------------------------------
# Brute force: BIRD's rules applied literally to every (origin, CLUSTER_LIST, sender) path.


def reference_unreachable(
    cluster_ids: Mapping[str, str | None],
    edges: Iterable[tuple[str, str]],
    mesh: bool,
    down: frozenset[str] = frozenset(),
) -> list[str]:
    peers = peers_of(cluster_ids, edges, mesh, down)
    alive = sorted(peers)

    def is_client(reflector: str, other: str) -> bool:
        own = cluster_ids[reflector]
        return own is not None and cluster_ids[other] != own

    Path = tuple[str, str, tuple[str, ...], str | None]  # at, origin, cluster list, from
    paths: set[Path] = set()
    queue: deque[Path] = deque((n, n, (), None) for n in alive)
    while queue:
        at, origin, clusters, sender = queue.popleft()
        own = cluster_ids[at]
        if sender is not None and own is None:
            continue  # a plain iBGP speaker re-advertises nothing it learned
        for to in sorted(peers[at]):
            if to == sender:
                continue
            if sender is None:
                sent = clusters
            else:
                assert own is not None
                if not is_client(at, sender) and not is_client(at, to):
                    continue
                if is_client(at, to) and own in clusters:
                    continue
                sent = (own, *clusters)
            if to == origin:
                continue  # ORIGINATOR_ID
            if is_client(to, at) and cluster_ids[to] in sent:
                continue  # CLUSTER_LIST, checked on client sessions only
            path = (to, origin, sent, at)
            if path not in paths:
                paths.add(path)
                queue.append(path)
    learned = {(at, origin) for at, origin, _, _ in paths}
    return [f"{a} -> {b}" for a in alive for b in alive if a != b and (a, b) not in learned]


@dataclass(frozen=True)
class Topology:
    cluster_ids: dict[str, str | None]
    edges: frozenset[tuple[str, str]]
    mesh: bool

    def nodes(self) -> list[SimNode]:
        return [node(name, cid) for name, cid in self.cluster_ids.items()]

    def arguments(self) -> dict[str, Any]:
        return {"cluster_ids": self.cluster_ids, "edges": self.edges, "mesh": self.mesh}

    def peers(self) -> list[Peer]:
        return [
            {
                "metadata": {"name": f"{a}-{b}"},
                "spec": {"node": a, "peerSelector": f"name == '{b}'"},
            }
            for a, b in sorted(self.edges)
        ]


CLUSTER_IDS = ("10.0.0.1", "10.0.0.2", "10.0.0.3")


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    """Up to 4 RRs over 1-3 cluster IDs, clients in up to 3 groups, a few client-client sessions."""
    # a seeded Random spreads the choices evenly; hypothesis's own draws favour the smallest
    rng = draw(st.randoms(use_true_random=False))
    reflectors = [f"r{i}" for i in range(rng.randint(0, 4))]
    clients = [f"c{i}" for i in range(rng.randint(0, 4))]
    cluster_ids: dict[str, str | None] = {
        r: rng.choice(CLUSTER_IDS[:2] * 2 + CLUSTER_IDS) for r in reflectors
    }
    cluster_ids.update(dict.fromkeys(clients))
    edges = random_sessions(rng, reflectors, clients, rr_pair=0.5, in_group=0.4)
    return Topology(cluster_ids, edges, rng.random() < 0.5)


@settings(max_examples=300, deadline=None, database=None)
@given(topologies())
def test_class_based_simulation_matches_the_brute_force_model(topology: Topology) -> None:
    report = verify(
        topology.nodes(), topology.peers(), mesh=topology.mesh, pairs=True, max_examples=1000
    )

    expected = reference_unreachable(topology.cluster_ids, topology.edges, topology.mesh)
    assert list(report.unreachable_examples) == expected
    assert report.unreachable_pairs == len(expected)
    reflectors = sorted(n for n, cid in topology.cluster_ids.items() if cid)
    for size, examples, ok in (
        (1, report.single_failure_examples, report.single_failure_ok),
        (2, report.pair_failure_examples, report.pair_failure_ok),
    ):
        broken = []
        for down in itertools.combinations(reflectors, size):
            missing = reference_unreachable(
                topology.cluster_ids, topology.edges, topology.mesh, frozenset(down)
            )
            if missing:
                broken.append(f"without {'+'.join(down)}: {missing[0]}")
        assert list(examples) == broken
        assert ok is (not broken)


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.lists(st.dictionaries(st.sampled_from("ab"), st.sampled_from(["x", "y", ""])), max_size=8),
    st.lists(
        st.sampled_from(
            ["a == 'x'", "a == ''", "b in {'x', 'y'}", "b in {}", "a != 'x'", "has(b)"]
        ),
        min_size=2,
        max_size=4,
    ),
)
def test_sessions_from_looked_up_selectors_equal_sessions_from_scanning_every_node(
    labels: list[dict[str, str]], selectors: list[str]
) -> None:
    nodes = [SimNode(f"n{i}", found) for i, found in enumerate(labels)]
    peers = [peer(f"p{i}", a, b) for i, (a, b) in enumerate(itertools.pairwise(selectors))]

    graph = build_graph(nodes, read_peers(peers)[0], False)

    expected: dict[str, set[str]] = {n.name: set() for n in nodes}
    for a, b in itertools.pairwise(selectors):
        local = [n.name for n in nodes if parse_selector(a).matches(n.labels)]
        remote = [n.name for n in nodes if parse_selector(b).matches(n.labels)]
        for x, y in itertools.product(local, remote):
            if x != y:
                expected[x].add(y)
                expected[y].add(x)
    found = {
        graph.names[i]: {graph.names[j] for j in neighbours}
        for i, neighbours in enumerate(graph.adjacency)
    }
    assert found == expected
