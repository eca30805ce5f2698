"""quorum: RRs in clusters of k sharing a cluster ID, clusters joined by planes (planes.py); a
client peers with m RRs of one cluster, 2m - k > 1, so any two clients of a cluster still
share an RR after one fails.

RRs sharing a cluster ID never pass their clients' routes to each other (RFC 4456): a client's
route reaches another client of the same cluster only through an RR both peer with. Clusters are
cut from the RRs serving each zone: as many clusters of 3 as fit, the remainder spread over them
(k is 2 to 5), and m = (k + 1) // 2 + 1 (k=2,3 → m=k; k=4 → 3; k=5 → 4). A cluster keeps
its ID, its members and its group names across syncs; only the clusters an RR left or joined
change.

Clients of two clusters meet on the planes both clusters have (1..min(k_A, k_B)), and survive one
failure only if their groups share at least two of them (a failure costs one plane). An m-subset
of a k-cluster covers at least m - (k - t) of planes 1..t, so two groups share at least
m_A + m_B - k_B planes (A the smaller cluster): 2 or more for every pair of sizes but two, a
cluster of 2 (m = 2) or of 1 (a zone with one RR) facing a cluster of 4 or 5 (m = k - 1), where
a client could miss the only shared plane or hold just one. So with a smallest cluster of s <= 2
RRs, every group of a larger cluster holds its plane-1..s RRs (both found by the properties:
clients of 4-clusters cut off by one hub failing, and not reaching a 1-RR zone at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

from hooks.config import Settings
from hooks.model import (
    Group,
    NodeInfo,
    Plan,
    RouteReflector,
)
from hooks.previous import Previous
from hooks.selection import select_reflectors
from hooks.topologies.common import (
    assign_cluster_ids,
    plane_plan,
    reflector_sort,
    served_elsewhere,
    serving_zones,
)
from hooks.topologies.planes import (
    cluster_key_ids,
    group_name,
    partition,
    planes_of,
    zone_ordinals,
)
from hooks.topologies.rendezvous import rendezvous_top

CLUSTER_SIZE = 3


def members_per_client(k: int) -> int:
    """Smallest m with 2m - k > 1 (every RR of a cluster of one or two)."""
    return min(k, (k + 1) // 2 + 1)


def build(nodes: Sequence[NodeInfo], settings: Settings, previous: Previous) -> Plan:
    selection = select_reflectors(nodes, settings, previous.serving(nodes, settings))
    serving = serving_zones(selection)
    old_ids = {c.node: previous.cluster_of(c.node) for c in selection.choices}
    clusters: list[tuple[str, list[str]]] = []
    for zone in sorted(serving):
        clusters += [(zone, members) for members in partition(serving[zone], old_ids, CLUSTER_SIZE)]
    keys = [members[0] for _, members in clusters]
    key_ids = cluster_key_ids(
        [(key, members) for (_, members), key in zip(clusters, keys, strict=True)],
        old_ids,
        settings.cluster_id,
    )
    ids = assign_cluster_ids(keys, key_ids, settings.cluster_id, previous.held_ids())
    cluster_of = {
        m: ids[key] for (_, members), key in zip(clusters, keys, strict=True) for m in members
    }
    reflectors = reflector_sort(
        RouteReflector(c.node, c.zone, cluster_of[c.node], serves=served_elsewhere(c))
        for c in selection.choices
    )
    groups: list[Group] = []
    ordinals = zone_ordinals(clusters, previous, r"-q(\d+)-\d+")
    named: list[tuple[str, Sequence[str]]] = []
    smallest = min((len(members) for _, members in clusters), default=0)
    pin = smallest if smallest <= 2 else 0
    planes = planes_of([members for _, members in clusters], previous.planes())
    for (zone, members), ordinal in zip(clusters, ordinals, strict=True):
        named.append((f"{group_name(zone)}-q{ordinal}", members))
        size = members_per_client(len(members))
        pinned = [m for m in members if planes[m] <= pin] if size < len(members) else []
        free = [m for m in members if m not in pinned]
        for slot in range(1, comb(len(members), size) + 1):
            # Any two m-subsets of a k-cluster share 2m - k RRs, so a slot need not be a distinct
            # subset: filled by rendezvous hashing, a replaced member changes only its own slots.
            name = f"{group_name(zone)}-q{ordinal}-{slot}"
            chosen = pinned + rendezvous_top(name, free, size - len(pinned))
            groups.append(Group(name, zone, tuple(sorted(chosen))))
    return plane_plan("quorum", reflectors, named, groups, selection, nodes, settings, previous)
