"""simple: one cluster ID per zone, all RRs meshed, each client peers with every RR of its zone."""

from __future__ import annotations

from collections.abc import Sequence

from hooks.config import Settings
from hooks.model import Group, NodeInfo, Plan, RouteReflector
from hooks.selection import select_reflectors
from hooks.topologies import Previous, assign_cluster_ids, reflector_sort, served_elsewhere
from hooks.topologies.common import meshed_plan, serving_zones


def group_name(zone: str) -> str:
    return zone or "unzoned"


def build(nodes: Sequence[NodeInfo], settings: Settings, previous: Previous) -> Plan:
    selection = select_reflectors(nodes, settings, previous.serving(nodes, settings))

    zones = sorted({choice.serves for choice in selection.choices})
    old_ids: dict[str, str] = {}
    for choice in selection.choices:
        old = previous.cluster_id(choice.node)
        if old and previous.served_zone(choice.node) == choice.serves:
            old_ids.setdefault(choice.serves, old)
    ids = assign_cluster_ids(zones, old_ids, settings.cluster_id, previous.held_ids())

    reflectors = reflector_sort(
        RouteReflector(
            choice.node, choice.zone, ids[choice.serves], serves=served_elsewhere(choice)
        )
        for choice in selection.choices
    )
    serving = serving_zones(selection)
    groups = [Group(group_name(zone), zone, tuple(serving[zone])) for zone in zones]
    return meshed_plan("simple", reflectors, groups, selection, nodes, settings, previous)
