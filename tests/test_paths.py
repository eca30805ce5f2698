"""Add-path route counting: a per-route brute force of BIRD's rules, hand-counted cases, the cap."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nodes import peers_of
from nodes import sim_node as node
from scenario import zoned_nodes
from strategies import random_sessions

from hooks.offline import run_plan
from hooks.paths import PathReport, count_paths, format_paths
from hooks.sessions import SimNode, nodes_from_objects

Peer = dict[str, Any]
NOW = datetime(2026, 11, 28, tzinfo=UTC)


def session(a: str, b: str) -> Peer:
    return {"metadata": {"name": f"{a}-{b}"}, "spec": {"node": a, "peerSelector": f"name == '{b}'"}}


def sessions(edges: Iterable[tuple[str, str]]) -> list[Peer]:
    return [session(a, b) for a, b in sorted(edges)]


# ---------------------------------------------------------------------------------------------
# Brute force: every route as BIRD 1.6 holds it (one per path per session), attributes and all.


@dataclass(frozen=True)
class Route:
    at: str
    origin: str
    originator: str | None  # ORIGINATOR_ID, set by the first reflector
    clusters: tuple[str, ...]  # CLUSTER_LIST, newest first
    sender: str | None  # the session it arrived on; None: originated here
    walk: tuple[str, ...]  # what makes two routes distinct (path IDs): the sessions it crossed


def reference_routes(
    cluster_ids: Mapping[str, str | None], edges: Iterable[tuple[str, str]], mesh: bool
) -> Counter[tuple[str, str]]:
    """(learner, origin) → routes held, by applying BIRD's import/export checks to each route."""
    peers = peers_of(cluster_ids, edges, mesh)

    def rr_client(local: str, remote: str) -> bool:
        """Calico's template: `rr client` when local is an RR and remote's ID is none or differs."""
        own = cluster_ids[local]
        return own is not None and cluster_ids[remote] != own

    held: Counter[tuple[str, str]] = Counter()
    stack = [Route(n, n, None, (), None, (n,)) for n in sorted(cluster_ids)]
    while stack:
        route = stack.pop()
        at = route.at
        if route.sender is not None:
            held[(at, route.origin)] += 1
        for to in sorted(peers[at]):
            if to == route.sender:
                continue  # never back to the session it came from
            if route.sender is None:  # our own prefix: exported as is
                sent = route
            else:
                if not (rr_client(at, route.sender) or rr_client(at, to)):
                    continue  # iBGP to iBGP only through an rr client session
                if rr_client(at, to) and cluster_ids[at] in route.clusters:
                    continue  # CLUSTER_LIST check on sending to a client
                own = cluster_ids[at]
                assert own is not None  # rr_client above needs a cluster ID
                sent = Route(
                    at,
                    route.origin,
                    route.originator or route.sender,
                    (own, *route.clusters),
                    route.sender,
                    route.walk,
                )
            if sent.originator == to:
                continue  # ORIGINATOR_ID: our own route
            if rr_client(to, at) and cluster_ids[to] in sent.clusters:
                continue  # CLUSTER_LIST check on receiving from a client
            stack.append(
                Route(to, route.origin, sent.originator, sent.clusters, at, (*route.walk, to))
            )
    return held


@dataclass(frozen=True)
class Topology:
    cluster_ids: dict[str, str | None]
    edges: frozenset[tuple[str, str]]
    mesh: bool

    def count(self, budget: int = 10**6) -> PathReport:
        nodes = [node(name, cid) for name, cid in self.cluster_ids.items()]
        return count_paths(nodes, sessions(self.edges), mesh=self.mesh, budget=budget)


CLUSTER_IDS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    """Up to 5 RRs over 1-4 cluster IDs, random RR sessions, clients in up to 3 groups."""
    rng = draw(st.randoms(use_true_random=False))
    reflectors = [f"r{i}" for i in range(rng.randint(0, 5))]
    clients = [f"c{i}" for i in range(rng.randint(0, 4))]
    ids = CLUSTER_IDS[: rng.randint(1, 4)]
    cluster_ids: dict[str, str | None] = {r: rng.choice(ids) for r in reflectors}
    cluster_ids.update(dict.fromkeys(clients))
    edges = random_sessions(rng, reflectors, clients, rr_pair=0.7, in_group=0.5)
    return Topology(cluster_ids, edges, rng.random() < 0.3)


@settings(max_examples=300, deadline=None, database=None)
@given(topologies())
def test_the_fast_count_equals_bird_applied_route_by_route(topology: Topology) -> None:
    report = topology.count()

    expected = reference_routes(topology.cluster_ids, topology.edges, topology.mesh)
    names = sorted(topology.cluster_ids)
    assert not report.exploded
    for learner, origin in itertools.product(names, names):
        assert report.paths(learner, origin) == expected[(learner, origin)], (learner, origin)
    assert dict(report.routes) == {
        n: sum(expected[(n, o)] for o in names) for n in names
    }  # and none for a node's own prefix
    clients = [n for n in names if topology.cluster_ids[n] is None]
    rrs = [n for n in names if topology.cluster_ids[n] is not None]
    pairs = {
        kind: [expected[(a, b)] for a in group for b in names if a != b]
        for kind, group in (("client", clients), ("rr", rrs))
    }
    assert report.paths_client_max == max(pairs["client"], default=0)
    assert report.paths_rr_max == max(pairs["rr"], default=0)
    if pairs["client"]:
        assert report.paths_client_mean == round(sum(pairs["client"]) / len(pairs["client"]), 2)
    assert report.routes_per_node_max == max(report.routes.values(), default=0)


# ---------------------------------------------------------------------------------------------
# Hand-counted cases


def full_mesh_of_rrs(ids: list[str], clients: int) -> Topology:
    """RRs r0.. with these cluster IDs, all meshed, every client peering every RR."""
    rrs = {f"r{i}": cid for i, cid in enumerate(ids)}
    plain = {f"c{i}": None for i in range(clients)}
    edges = set(itertools.combinations(sorted(rrs), 2))
    edges |= {(c, r) for c in plain for r in rrs}
    return Topology({**rrs, **plain}, frozenset(edges), False)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_k_rrs_sharing_one_cluster_id_give_a_client_k_paths_per_remote_prefix(k: int) -> None:
    report = full_mesh_of_rrs(["10.0.0.1"] * k, clients=4).count()

    assert report.paths("c0", "c1") == k
    assert report.paths_client_max == k
    # an RR: the path from the client, and the same path reflected by each other RR
    assert report.paths("r0", "c1") == k
    assert report.paths("c0", "r0") == k  # its own, and each other RR's reflection of it


def test_two_meshed_rrs_with_different_ids_each_pass_on_the_other_s_path() -> None:
    report = full_mesh_of_rrs(["10.0.0.1", "10.0.0.2"], clients=2).count()

    assert report.paths("r0", "c1") == 2  # from c1, and from c1 via r1
    assert report.paths("c0", "c1") == 4  # r0 and r1 each send both
    assert report.paths("c0", "r0") == 2  # r0's own, and r0's via r1
    assert report.paths("r1", "r0") == 1  # r0's, never reflected back to r0 by a client


def test_a_lone_rr_with_its_clients_holds_one_path_each() -> None:
    report = full_mesh_of_rrs(["10.0.0.1"], clients=3).count()

    assert report.routes == {"c0": 3, "c1": 3, "c2": 3, "r0": 3}
    assert report.routes_per_node_mean == 3.0


def test_with_the_mesh_on_plain_nodes_add_the_direct_path() -> None:
    topology = full_mesh_of_rrs(["10.0.0.1"], clients=3)
    report = Topology(topology.cluster_ids, topology.edges, mesh=True).count()

    assert report.paths("c0", "c1") == 2  # the mesh session and the RR
    assert report.paths("c0", "r0") == 1  # RRs take no mesh sessions
    assert report.sessions_per_client_max == 3


def plan(topology: str, zones: Mapping[str, int], **spec: Any) -> tuple[list[SimNode], list[Peer]]:
    document = {
        "apiVersion": "route-reflector.dev/v1alpha1",
        "kind": "RouteReflectorTopology",
        "metadata": {"name": "default"},
        "spec": {"topology": topology, "zoneLabel": "topology.kubernetes.io/zone", **spec},
    }
    result = run_plan({"items": zoned_nodes(zones)}, document, {}, NOW)
    return nodes_from_objects(result.nodes), result.bgp_peers


def old_multi(reflectors: int, nodes: int = 16) -> Topology:
    """The multi plan before the redesign: every RR its own cluster ID, all RRs meshed, each
    client peering with a group of 3 RRs (one client per 3-subset, the rest round-robin)."""
    rrs = {f"r{i}": f"10.0.0.{i + 1}" for i in range(reflectors)}
    groups = list(itertools.combinations(sorted(rrs), 3))
    plain = {f"c{i:02d}": None for i in range(nodes - reflectors)}
    edges = set(itertools.combinations(sorted(rrs), 2))
    for index, client in enumerate(sorted(plain)):
        edges |= {(client, r) for r in groups[index % len(groups)]}
    return Topology({**rrs, **plain}, frozenset(edges), False)


@pytest.mark.parametrize(("reflectors", "paths"), [(3, 15), (4, 37), (5, 129)])
def test_the_old_multi_on_16_nodes_matches_the_paths_measured_on_real_bird(
    reflectors: int, paths: int
) -> None:
    report = old_multi(reflectors).count()

    assert report.reflectors == reflectors
    assert report.paths_client_max == paths


@pytest.mark.parametrize("reflectors", [3, 4, 5, 6])
def test_todays_multi_on_16_nodes_gives_a_client_one_path_per_rr_of_its_group(
    reflectors: int,
) -> None:
    nodes, peers = plan("multi", {"a": 16}, min=reflectors, max=reflectors)

    report = count_paths(nodes, peers)

    assert report.reflectors == reflectors
    assert report.paths_client_max == report.sessions_per_client_max <= 5


def test_six_meshed_rrs_with_own_ids_give_585_paths_between_clients_of_disjoint_groups() -> None:
    # measured on real BIRD for multi with 6 RRs on 16 nodes, where two groups share no RR
    ids = [f"10.0.0.{i + 1}" for i in range(6)]
    topology = full_mesh_of_rrs(ids, clients=0)
    edges = set(topology.edges)
    edges |= {("a0", r) for r in ("r0", "r1", "r2")} | {("b0", r) for r in ("r3", "r4", "r5")}
    report = Topology(
        {**topology.cluster_ids, "a0": None, "b0": None}, frozenset(edges), False
    ).count()

    assert report.paths("a0", "b0") == 585
    assert report.paths("b0", "a0") == 585


def test_simple_on_16_nodes_with_5_rrs_sharing_one_id_gives_5_paths() -> None:
    nodes, peers = plan("simple", {"a": 16}, min=5, max=5)

    report = count_paths(nodes, peers)

    assert report.reflectors == 5 and report.cluster_ids == 1
    assert report.paths_client_max == 5
    assert not report.exploded


def test_the_old_multi_on_a_few_hundred_nodes_is_reported_exploding_with_a_lower_bound() -> None:
    topology = old_multi(9, nodes=300)

    report = topology.count(budget=200_000)

    assert report.exploded
    assert report.work <= 200_000
    assert report.paths_client_max > 16  # a lower bound, already past the design's ceiling
    lines = format_paths(report)
    assert lines[0].startswith("add-path routes: EXPLODES")
    assert "at least" in lines[1]


def test_an_exploded_count_is_a_lower_bound_of_the_full_count() -> None:
    ids = [f"10.0.0.{i + 1}" for i in range(6)]
    topology = full_mesh_of_rrs(ids, clients=3)

    full = topology.count()
    capped = topology.count(budget=300)

    assert not full.exploded and capped.exploded
    for name, routes in capped.routes.items():
        assert routes <= full.routes[name]
    assert 0 < capped.paths_client_max < full.paths_client_max


def test_the_report_is_json_without_per_node_routes_unless_asked() -> None:
    report = full_mesh_of_rrs(["10.0.0.1"], clients=2).count()

    assert "routes" not in report.to_dict()
    assert report.to_dict(routes=True)["routes"] == {"c0": 2, "c1": 2, "r0": 2}
    assert report.to_dict()["paths_client_max"] == 1


def test_budget_left_by_cheap_origins_goes_to_the_expensive_ones() -> None:
    ids = [f"10.0.0.{i + 1}" for i in range(6)]
    meshed = full_mesh_of_rrs(ids, clients=2)
    lone = {f"z{i}": f"10.0.1.{i + 1}" for i in range(20)}  # RRs without RR peers: no work
    topology = Topology({**meshed.cluster_ids, **lone}, meshed.edges, False)
    full = topology.count()
    assert not full.exploded

    enough = topology.count(budget=2 * full.work)  # an equal share each would not be
    too_little = topology.count(budget=full.work // 2)

    assert not enough.exploded and enough.routes == full.routes
    assert too_little.exploded
