"""simple: one cluster ID per zone, all RRs meshed, each client peers with every RR of its zone."""

from __future__ import annotations

from collections.abc import Sequence

from hooks.config import Settings
from hooks.model import (
    AllReflectors,
    Clients,
    Group,
    NodeInfo,
    Peering,
    Plan,
    Reflectors,
    RouteReflector,
)
from hooks.selection import select_reflectors
from hooks.topologies import Previous, assign_cluster_ids, reflector_sort, served_elsewhere
from hooks.topologies.common import selection_problems, zone_summaries


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
    groups = tuple(
        Group(
            group_name(zone),
            zone,
            tuple(choice.node for choice in selection.choices if choice.serves == zone),
        )
        for zone in zones
    )
    peerings: list[Peering] = []
    if reflectors:
        peerings.append(Peering("mesh", AllReflectors(), AllReflectors()))
    peerings += [
        Peering(f"clients-{g.name}", Clients(g.name), Reflectors(g.reflectors)) for g in groups
    ]
    return Plan(
        topology="simple",
        reflectors=reflectors,
        groups=groups,
        zones=zone_summaries(selection, nodes, settings, previous),
        peerings=tuple(peerings),
        problems=selection_problems(selection),
    )
