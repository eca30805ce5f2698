"""multi: a unique cluster ID per RR, RRs meshed; clients in groups of `peersPerNode` RRs.

A zone gets one group per RR it demands. A group's first RR is from the zone it serves, the rest
from other zones when there are any; each slot is filled by rendezvous hashing on the group's
name, so losing an RR changes only the groups it was in (its slot goes to the next RR), and no
client label changes at all: clients keep their group.
"""

from __future__ import annotations

from collections.abc import Sequence

from hooks.config import Settings
from hooks.model import (
    Group,
    NodeInfo,
    Plan,
    RouteReflector,
)
from hooks.selection import select_reflectors
from hooks.topologies import (
    Previous,
    assign_cluster_ids,
    reflector_sort,
    rendezvous_top,
    served_elsewhere,
)
from hooks.topologies.common import meshed_plan, serving_zones
from hooks.topologies.simple import group_name


def build(nodes: Sequence[NodeInfo], settings: Settings, previous: Previous) -> Plan:
    selection = select_reflectors(nodes, settings, previous.serving(nodes, settings))
    names = [choice.node for choice in selection.choices]
    ids = assign_cluster_ids(
        names,
        {n: previous.cluster_id(n) or "" for n in names},
        settings.cluster_id,
        previous.held_ids(),
    )
    reflectors = reflector_sort(
        RouteReflector(c.node, c.zone, ids[c.node], serves=served_elsewhere(c))
        for c in selection.choices
    )
    serving = serving_zones(selection)
    demand = {zone.name: zone.demand for zone in selection.zones}
    groups: list[Group] = []
    size = settings.peers_per_node
    for zone in sorted(serving):
        own = serving[zone]
        others = [n for n in names if n not in set(own)]
        for index in range(1, max(demand.get(zone, 0), 1) + 1):
            name = f"{group_name(zone)}-{index}"
            first = rendezvous_top(name, own, 1)
            rest = rendezvous_top(name, others, size - 1)
            if len(rest) < size - 1:
                rest += rendezvous_top(
                    name, [n for n in own if n not in first], size - 1 - len(rest)
                )
            groups.append(Group(name, zone, tuple(sorted(first + rest))))
    return meshed_plan("multi", reflectors, groups, selection, nodes, settings, previous)
