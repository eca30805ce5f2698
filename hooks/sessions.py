"""The BGP sessions that nodes and BGPPeers make, as Calico opens them, and their counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from hooks.selectors import Selector, SelectorError, parse_selector

__all__ = [
    "CLUSTER_ID_ANNOTATION",
    "Graph",
    "Peering",
    "SessionStats",
    "SimNode",
    "build_graph",
    "nodes_from_objects",
    "read_peers",
    "session_stats",
]

CLUSTER_ID_ANNOTATION: Final = "projectcalico.org/RouteReflectorClusterID"


@dataclass(frozen=True)
class SimNode:
    """A node as the simulator sees it: a name, labels, and a cluster ID when it is an RR."""

    name: str
    labels: Mapping[str, str]
    cluster_id: str | None = None

    @property
    def is_reflector(self) -> bool:
        return bool(self.cluster_id)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def nodes_from_objects(nodes: Iterable[Mapping[str, Any]]) -> list[SimNode]:
    """Kubernetes Nodes (or Calico v3 Nodes) → SimNodes sorted by name."""
    result: list[SimNode] = []
    for obj in nodes:
        metadata = _mapping(obj.get("metadata"))
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("node without metadata.name")
        labels = {str(k): str(v) for k, v in _mapping(metadata.get("labels")).items()}
        cluster_id = _mapping(metadata.get("annotations")).get(CLUSTER_ID_ANNOTATION)
        if not cluster_id:  # etcd datastore: Calico Node spec.bgp.routeReflectorClusterID
            bgp = _mapping(_mapping(obj.get("spec")).get("bgp"))
            cluster_id = bgp.get("routeReflectorClusterID")
        result.append(SimNode(name, labels, str(cluster_id) if cluster_id else None))
    return sorted(result, key=lambda node: node.name)


@dataclass(frozen=True)
class Peering:
    name: str
    node: str | None  # spec.node: one node by name
    node_selector: Selector | None  # None with node None: every node (a global peer)
    peer_selector: Selector


def read_peers(peers: Iterable[Mapping[str, Any]]) -> tuple[list[Peering], list[str], int]:
    peerings: list[Peering] = []
    skipped: list[str] = []
    count = 0
    for index, obj in enumerate(peers):
        count += 1
        name = str(_mapping(obj.get("metadata")).get("name") or f"<unnamed #{index}>")
        spec = _mapping(obj.get("spec"))
        kind = obj.get("kind", "BGPPeer")
        if kind != "BGPPeer":
            skipped.append(f"{name}: kind {kind} is not BGPPeer")
            continue
        if spec.get("peerIP"):
            skipped.append(f"{name}: peerIP {spec['peerIP']} is outside the simulation")
            continue
        peer_text = spec.get("peerSelector")
        if not isinstance(peer_text, str) or not peer_text.strip():
            skipped.append(f"{name}: neither peerSelector nor peerIP")
            continue
        node = spec.get("node") or None
        node_text = spec.get("nodeSelector") or ""
        if node is not None and node_text:
            skipped.append(f"{name}: both node and nodeSelector")
            continue
        try:
            peer_selector = parse_selector(peer_text)
            node_selector = parse_selector(node_text) if node_text else None
        except SelectorError as error:
            raise ValueError(f"BGPPeer {name}: {error}") from error
        peerings.append(
            Peering(name, None if node is None else str(node), node_selector, peer_selector)
        )
    return peerings, sorted(skipped), count


# ---------------------------------------------------------------------------------------------
# Sessions


@dataclass(frozen=True)
class Graph:
    """Nodes indexed in name order; explicit sessions; the mesh flag stays implicit (O(n²))."""

    names: tuple[str, ...]
    cluster_ids: tuple[str | None, ...]
    adjacency: tuple[frozenset[int], ...]
    mesh: bool

    def is_reflector(self, node: int) -> bool:
        return self.cluster_ids[node] is not None

    def is_client(self, reflector: int, peer: int) -> bool:
        """Calico marks `peer` an rr client of `reflector` when their cluster IDs differ."""
        return self.cluster_ids[peer] != self.cluster_ids[reflector]


def build_graph(nodes: Iterable[SimNode], peerings: list[Peering], mesh: bool) -> Graph:
    ordered = sorted(nodes, key=lambda node: node.name)
    index: dict[str, int] = {}
    for position, node in enumerate(ordered):
        if node.name in index:
            raise ValueError(f"duplicate node name {node.name!r}")
        index[node.name] = position
    adjacency: list[set[int]] = [set() for _ in ordered]
    matched: dict[Selector, list[int]] = {}
    by_key: dict[str, dict[str, list[int]]] = {}  # label key → value → nodes carrying it

    def carrying(key: str) -> dict[str, list[int]]:
        if key not in by_key:
            values: dict[str, list[int]] = {}
            for i, node in enumerate(ordered):
                value = node.labels.get(key)
                if value is not None:
                    values.setdefault(value, []).append(i)
            by_key[key] = values
        return by_key[key]

    def matching(selector: Selector) -> list[int]:
        if selector not in matched:
            lookup = selector.lookup()
            # the selectors the hooks render (k == 'v', k in {...}) are looked up, not scanned
            if lookup is not None:
                key, wanted = lookup
                values = carrying(key)
                found = sorted(i for value in wanted for i in values.get(value, ()))
            else:
                found = [i for i, n in enumerate(ordered) if selector.matches(n.labels)]
            matched[selector] = found
        return matched[selector]

    for peering in peerings:
        if peering.node is not None:
            local = [index[peering.node]] if peering.node in index else []
        elif peering.node_selector is None:
            local = list(range(len(ordered)))
        else:
            local = matching(peering.node_selector)
        remote = matching(peering.peer_selector)
        for i in local:  # one BGPPeer makes the session from both ends
            adjacency[i].update(remote)
        for j in remote:
            adjacency[j].update(local)
    for i, neighbours in enumerate(adjacency):
        neighbours.discard(i)
    return Graph(
        names=tuple(node.name for node in ordered),
        cluster_ids=tuple(node.cluster_id or None for node in ordered),
        adjacency=tuple(frozenset(neighbours) for neighbours in adjacency),
        mesh=mesh,
    )


@dataclass(frozen=True)
class SessionStats:
    total: int
    per_node_max: int
    per_node_mean: float
    clients_per_rr_max: int
    clients_per_rr_mean: float
    per_rr_max: int
    per_rr_mean: float
    per_client_max: int  # a client: a node that is not an RR
    per_client_mean: float


def session_stats(graph: Graph) -> SessionStats:
    reflectors = [i for i in range(len(graph.names)) if graph.is_reflector(i)]
    plain = len(graph.names) - len(reflectors)
    degrees: list[int] = []
    for i, neighbours in enumerate(graph.adjacency):
        if graph.mesh and not graph.is_reflector(i):  # since Calico 3.21 RRs take no mesh sessions
            degrees.append(plain - 1 + sum(1 for j in neighbours if graph.is_reflector(j)))
        else:
            degrees.append(len(neighbours))
    clients = [sum(1 for j in graph.adjacency[r] if graph.is_client(r, j)) for r in reflectors]
    rr_degrees = [degrees[r] for r in reflectors]
    client_degrees = [d for i, d in enumerate(degrees) if not graph.is_reflector(i)]
    return SessionStats(
        total=sum(degrees) // 2,
        per_node_max=max(degrees, default=0),
        per_node_mean=round(sum(degrees) / len(degrees), 2) if degrees else 0.0,
        clients_per_rr_max=max(clients, default=0),
        clients_per_rr_mean=round(sum(clients) / len(clients), 2) if clients else 0.0,
        per_rr_max=max(rr_degrees, default=0),
        per_rr_mean=_mean(rr_degrees),
        per_client_max=max(client_degrees, default=0),
        per_client_mean=_mean(client_degrees),
    )


def _mean(values: list[int]) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0
