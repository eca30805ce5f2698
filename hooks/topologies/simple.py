"""simple: per zone, RRs in groups of GROUP_SIZE (3 to 5) sharing one cluster ID per group,
groups joined by planes (planes.py); each client peers with every RR of one group of its zone.

A client then holds at most one path per RR of its group (<= 5) for any remote prefix, and two
clients of a zone's group share all its RRs, so any one (with three, any two) RR failure keeps
them connected; clients of different groups are joined on every plane both groups have (>= 2).
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
from hooks.topologies.planes import cluster_key_ids, group_name, partition, zone_ordinals

GROUP_SIZE = 3


def zone_group_name(zone: str, ordinal: int) -> str:
    """A zone's first group keeps the zone's name (the one group per zone of old); then -g2..."""
    return group_name(zone) if ordinal == 1 else f"{group_name(zone)}-g{ordinal}"


def build(nodes: Sequence[NodeInfo], settings: Settings, previous: Previous) -> Plan:
    selection = select_reflectors(nodes, settings, previous.serving(nodes, settings))
    serving = serving_zones(selection)
    old_ids = {c.node: previous.cluster_of(c.node) for c in selection.choices}
    cut: list[tuple[str, list[str]]] = []
    for zone in sorted(serving):
        cut += [(zone, members) for members in partition(serving[zone], old_ids, GROUP_SIZE)]
    clusters = [
        (zone_group_name(zone, ordinal), zone, members)
        for (zone, members), ordinal in zip(
            cut, zone_ordinals(cut, previous, r"(?:-g(\d+))?"), strict=True
        )
    ]
    names = [name for name, _, _ in clusters]
    ids = assign_cluster_ids(
        names,
        cluster_key_ids([(n, m) for n, _, m in clusters], old_ids, settings.cluster_id),
        settings.cluster_id,
        previous.held_ids(),
    )
    id_of = {m: ids[name] for name, _, members in clusters for m in members}
    reflectors = reflector_sort(
        RouteReflector(
            choice.node, choice.zone, id_of[choice.node], serves=served_elsewhere(choice)
        )
        for choice in selection.choices
    )
    groups = [Group(name, zone, tuple(members)) for name, zone, members in clusters]
    return plane_plan(
        "simple",
        reflectors,
        [(name, members) for name, _, members in clusters],
        groups,
        selection,
        nodes,
        settings,
        previous,
    )
