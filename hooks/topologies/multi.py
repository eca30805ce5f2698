"""multi: RRs in groups of `peersPerNode` sharing one cluster ID per group, spread over zones,
groups joined by planes (planes.py); each client peers with every RR of one group.

The RRs are interleaved over zones (the first of each zone, then the second...) before they are
cut into groups, so a group spans two or more zones when there are any. A group serves the zone
most of its members are in; a zone's clients peer with one of its groups (any group where it has
none). A client holds at most one path per RR of its group (peersPerNode to 2 * peersPerNode - 1)
for any remote prefix; with peersPerNode >= 3 any two RR failures leave it connected.
"""

from __future__ import annotations

from collections.abc import Sequence

from hooks.config import Settings
from hooks.model import Group, NodeInfo, Plan, RouteReflector
from hooks.previous import Previous
from hooks.selection import select_reflectors
from hooks.topologies.common import (
    assign_cluster_ids,
    plane_plan,
    reflector_sort,
    served_elsewhere,
    serving_zones,
)
from hooks.topologies.planes import cluster_key_ids, inherited_names, partition


def build(nodes: Sequence[NodeInfo], settings: Settings, previous: Previous) -> Plan:
    selection = select_reflectors(nodes, settings, previous.serving(nodes, settings))
    serving = serving_zones(selection)
    serves = {c.node: c.serves for c in selection.choices}
    interleaved = [
        rr
        for rank in range(max((len(m) for m in serving.values()), default=0))
        for zone in sorted(serving)
        for rr in serving[zone][rank : rank + 1]
    ]
    old_ids = {c.node: previous.cluster_of(c.node) for c in selection.choices}
    cut = partition(interleaved, old_ids, max(2, settings.peers_per_node)) if interleaved else []
    # Names outlive members: a cluster keeps the group name most of its RRs had, so its clients
    # keep their label when one RR is replaced.
    names = inherited_names(cut, previous.groups, lambda i: f"g-{cut[i][0]}")
    clusters = list(zip(names, cut, strict=True))
    ids = assign_cluster_ids(
        [name for name, _ in clusters],
        cluster_key_ids(clusters, old_ids, settings.cluster_id),
        settings.cluster_id,
        previous.held_ids(),
    )
    id_of = {m: ids[name] for name, members in clusters for m in members}
    reflectors = reflector_sort(
        RouteReflector(c.node, c.zone, id_of[c.node], serves=served_elsewhere(c))
        for c in selection.choices
    )
    # A group keeps the zone it served while one of its RRs still serves that zone: its home
    # moving with a replaced member would move that zone's clients to other groups (losing
    # every RR they had at once).
    served_before = {group.name: group.zone for group in previous.groups}
    groups = []
    for name, members in clusters:
        zones = sorted(serves[m] for m in members)
        home = min(zones, key=lambda z: (-zones.count(z), z))
        if name in served_before and served_before[name] in zones:
            home = served_before[name]
        groups.append(Group(name, home, tuple(members)))
    return plane_plan("multi", reflectors, clusters, groups, selection, nodes, settings, previous)
