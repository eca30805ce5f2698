"""A plan on real BIRD 1.6: one config per node rendered as calico/node's confd renders it
(`bird_lab` starts them, `bird_check` compares their routes with the model's).

Rendering is pure (`render_lab`).  What follows Calico's `bird.cfg.template`:
- a `bgp_template` with `multihop`, `gateway recursive`, `add paths on`, `graceful restart`,
  `connect delay time 1`, `connect retry time 3`, `error wait time 5,60`, and the import/export
  filters (import every pod-pool route; export pod-pool routes, learned ones included, so a
  reflector re-advertises what it learnt);
- one `protocol bgp Node_<ip>` per peer, the BGPPeer selectors expanded both ways (as
  `bgp_processor.go` does), `rr client` + `rr cluster id` when this node has a cluster ID and the
  peer has none or another one;
- each node originates its pod block as a blackhole static route (Calico's bird_ipam/bird_aggr).
What differs, for a lab on one host: each node is 127.x.y.z (router id and BGP listen address);
no kernel protocol (the host routing table never changes); BGP next hops in 127/8 resolve
through a static default route via "lo" that the export filter never passes on; and of the two
ends of a session the higher address waits 2 s before dialling, not 1.  Both ends restart a
session together (a new cluster ID, or every BIRD started at once) and, dialling each other in
the same instant, BIRD 1.6 with graceful restart took the crossing connection for the peer
restarting, again and again: measured, a 36-node lab's sessions took up to 60 s to settle after
a start or a cluster-ID step, 1-2 s staggered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from hooks.sessions import SimNode, build_graph, read_peers

__all__ = [
    "POD_POOL",
    "BirdError",
    "BirdMissing",
    "LabNode",
    "Neighbour",
    "render_config",
    "render_lab",
    "restarted_sessions",
]

AS_NUMBER: Final = 64512  # Calico's default AS
POD_POOL: Final = ipaddress.IPv4Network("10.0.0.0/8")
BLOCK_PREFIX: Final = 26  # Calico's default IPAM block size
FIRST_ADDRESS: Final = ipaddress.IPv4Address("127.1.0.1")
LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")


class BirdError(RuntimeError):
    """BIRD did not start, answer or converge."""


class BirdMissing(BirdError):
    """No `bird` binary."""


@dataclass(frozen=True)
class Neighbour:
    name: str
    address: str
    rr_client: bool


@dataclass(frozen=True)
class LabNode:
    """One node of the lab: its address (router id), pod block, cluster ID and BGP peers."""

    name: str
    address: str
    block: str
    cluster_id: str | None
    neighbours: tuple[Neighbour, ...]

    @property
    def is_reflector(self) -> bool:
        return self.cluster_id is not None


def protocol_name(address: str) -> str:
    """Calico's name for a node-specific peer's protocol: Node_ plus the IP with underscores."""
    return "Node_" + address.replace(".", "_")


def render_lab(
    nodes: Iterable[SimNode],
    peers: Iterable[Mapping[str, Any]],
    *,
    first_address: ipaddress.IPv4Address = FIRST_ADDRESS,
) -> list[LabNode]:
    """Nodes in name order with an address and pod block each, and their peers as Calico would
    configure them (BGPPeer selectors expanded with the simulator's selector code)."""
    peerings, _skipped, _count = read_peers(peers)
    graph = build_graph(nodes, peerings, mesh=False)
    total = len(graph.names)
    if total and int(first_address) + total - 1 > int(LOOPBACK.broadcast_address) - 1:
        raise ValueError(f"{total} nodes do not fit in 127/8 from {first_address}")
    if total > POD_POOL.num_addresses >> (32 - BLOCK_PREFIX):
        raise ValueError(f"{total} nodes need more /{BLOCK_PREFIX} blocks than {POD_POOL} holds")
    addresses = [str(first_address + i) for i in range(total)]
    result = []
    for i, name in enumerate(graph.names):
        own = graph.cluster_ids[i]
        neighbours = tuple(
            Neighbour(
                graph.names[j],
                addresses[j],
                own is not None and graph.cluster_ids[j] != own,  # Calico's rule
            )
            for j in sorted(graph.adjacency[i])
        )
        block = POD_POOL.network_address + (i << (32 - BLOCK_PREFIX))
        result.append(LabNode(name, addresses[i], f"{block}/{BLOCK_PREFIX}", own, neighbours))
    return result


def render_config(node: LabNode, *, port: int) -> str:
    """The BIRD 1.6 configuration of one node."""
    lines = [
        f"# {node.name}: rendered like calico/node's bird.cfg.template (a loopback lab)",
        f"router id {node.address};",
        f"listen bgp address {node.address} port {port};",
        "log stderr { warning, error, fatal, bug };",
        "",
        "protocol device {",
        "  scan time 2;",
        "}",
        "",
        "# The pod block this node owns (Calico: bird_ipam.cfg / bird_aggr.cfg).",
        "protocol static pod_block {",
        f"  route {node.block} blackhole;",
        "}",
        "",
        "# BGP next hops are 127/8 addresses: resolved on lo; the export filter never sends this.",
        "protocol static loopback_nexthops {",
        '  route 0.0.0.0/0 via "lo";',
        "}",
        "",
        "filter calico_import_from_bgp_peers {",
        f"  if ( net ~ {POD_POOL} ) then accept;",
        "  reject;",
        "}",
        "",
        "filter calico_export_to_bgp_peers {",
        f"  if ( net ~ {POD_POOL} ) then accept;",
        "  reject;",
        "}",
        "",
        "template bgp bgp_template {",
        '  description "Connection to BGP peer";',
        f"  local as {AS_NUMBER};",
        "  multihop;",
        "  gateway recursive;",
        "  import filter calico_import_from_bgp_peers;",
        "  export filter calico_export_to_bgp_peers;",
        "  add paths on;",
        "  graceful restart;",
        "  connect delay time 1;",
        "  connect retry time 3;",
        "  error wait time 5,60;",
        "}",
    ]
    for peer in node.neighbours:
        lines += [
            "",
            f"protocol bgp {protocol_name(peer.address)} from bgp_template {{",
            f"  description {_quoted(peer.name)};",
            f"  neighbor {peer.address} port {port} as {AS_NUMBER};",
            f"  source address {node.address};",
        ]
        if ipaddress.IPv4Address(node.address) > ipaddress.IPv4Address(peer.address):
            lines.append("  connect delay time 2;")  # the lab's one timer change (docstring)
        if peer.rr_client:
            lines += ["  rr client;", f"  rr cluster id {node.cluster_id};"]
        lines.append("}")
    return "\n".join(lines) + "\n"


def restarted_sessions(old: Iterable[LabNode], new: Iterable[LabNode]) -> frozenset[frozenset[str]]:
    """The sessions (node pairs) kept from `old` to `new` whose BGP protocol changes at either
    end: the ones BIRD restarts when reconfigured (sessions added or removed are not counted).
    Between two renderings of one node a protocol differs only in `rr client` with this node's
    cluster ID."""

    def protocols(nodes: Iterable[LabNode]) -> dict[tuple[str, str], str | None]:
        return {
            (node.name, peer.name): node.cluster_id if peer.rr_client else None
            for node in nodes
            for peer in node.neighbours
        }

    before, after = protocols(old), protocols(new)
    return frozenset(
        frozenset(pair) for pair in before.keys() & after.keys() if before[pair] != after[pair]
    )


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
