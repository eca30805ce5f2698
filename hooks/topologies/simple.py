"""simple: per zone, RRs in groups of GROUP_SIZE (3 to 5) sharing one cluster ID per group,
groups joined by planes (planes.py); each client peers with every RR of one group of its zone.

A client then holds at most one path per RR of its group (<= 5) for any remote prefix, and two
clients of a zone's group share all its RRs, so any one (with three, any two) RR failure keeps
them connected; clients of different groups are joined on every plane both groups have (>= 2).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hooks.config import Settings
from hooks.model import Group, NodeInfo, Plan, RouteReflector
from hooks.selection import select_reflectors
from hooks.topologies import Previous, assign_cluster_ids, reflector_sort, served_elsewhere
from hooks.topologies.common import plane_plan, serving_zones
from hooks.topologies.planes import cluster_key_ids, partition

GROUP_SIZE = 3


def group_name(zone: str) -> str:
    return zone or "unzoned"


def zone_group_name(zone: str, ordinal: int) -> str:
    """A zone's first group keeps the zone's name (the one group per zone of old); then -g2..."""
    return group_name(zone) if ordinal == 1 else f"{group_name(zone)}-g{ordinal}"


def ordinals(clusters: Sequence[tuple[str, list[str]]], previous: Previous) -> list[int]:
    """A number per cluster, unique in its zone and kept from the group its members were in."""
    before: dict[str, int] = {}
    for group in previous.groups:
        base = re.escape(group_name(group.zone))
        found = re.fullmatch(base + r"(?:-g(\d+))?", group.name)
        if found:
            for member in group.reflectors:
                before.setdefault(member, int(found.group(1) or 1))
    used: dict[str, set[int]] = {}
    chosen: list[int | None] = []
    for zone, members in clusters:
        taken = used.setdefault(zone, set())
        votes: dict[int, int] = {}
        for m in members:
            if m in before:
                votes[before[m]] = votes.get(before[m], 0) + 1
        mine = next(
            (o for o in sorted(votes, key=lambda o: (-votes[o], o)) if o not in taken), None
        )
        if mine is not None:
            taken.add(mine)
        chosen.append(mine)
    result: list[int] = []
    for (zone, _), mine in zip(clusters, chosen, strict=True):
        if mine is None:
            mine = next(
                o for o in range(1, len(clusters) + len(used[zone]) + 2) if o not in used[zone]
            )
            used[zone].add(mine)
        result.append(mine)
    return result


def build(nodes: Sequence[NodeInfo], settings: Settings, previous: Previous) -> Plan:
    selection = select_reflectors(nodes, settings, previous.serving(nodes, settings))
    serving = serving_zones(selection)
    old_ids = {c.node: previous.cluster_id(c.node) or "" for c in selection.choices}
    cut: list[tuple[str, list[str]]] = []
    for zone in sorted(serving):
        cut += [(zone, members) for members in partition(serving[zone], old_ids, GROUP_SIZE)]
    clusters = [
        (zone_group_name(zone, ordinal), zone, members)
        for (zone, members), ordinal in zip(cut, ordinals(cut, previous), strict=True)
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
