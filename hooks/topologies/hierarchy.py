"""hierarchy: two RRs per rack sharing the rack's cluster ID, spine RRs sharing the spine's;
a rack's RRs mesh, rack RR j (plane j, node-name order) peers with spine RR j only (the hub of
plane j, planes.py), spine RRs mesh, clients peer with both RRs of their rack.

A rack with fewer than two eligible nodes (or nodes without the rack label) is served by the
spine directly: its clients peer with every spine RR. The spine has max(2, min) RRs, spread over
zones, taken from nodes that are not rack RRs; with no node left for it, the rack RRs mesh.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from hooks.config import Settings
from hooks.model import Group, NodeInfo, Peering, Plan, Reflectors, RouteReflector, ZoneSummary
from hooks.previous import Previous
from hooks.selection import Choice, Selection, ineligibility, is_preferred, zone_of
from hooks.topologies.common import (
    assign_cluster_ids,
    client_peerings,
    reflector_sort,
    selection_problems,
    zone_summaries,
)
from hooks.topologies.planes import on_planes, plane_peerings, planes_of

RACK_REFLECTORS = 2
SPINE = "spine"


def rack_group(rack: str) -> str:
    return f"rack-{rack}"


def build(nodes: Sequence[NodeInfo], settings: Settings, previous: Previous) -> Plan:
    census = _Census(nodes, settings, previous)
    choices, roles, spare = _rack_reflectors(census)
    spine_count = max(RACK_REFLECTORS, settings.min)
    spine_choices = _spine_reflectors(census, spare, spine_count)
    for choice in spine_choices:
        roles[choice.node] = ("spine", None)
    choices += spine_choices
    ids = _cluster_ids(roles, census.was, settings, previous)
    reflectors = reflector_sort(
        RouteReflector(
            c.node,
            c.zone,
            ids[_cluster_key("spine" if c.serves == SPINE else "rack", c.serves)],
            role="spine" if c.serves == SPINE else "rack",
            serves=None if c.serves == SPINE else c.serves,
        )
        for c in choices
    )
    groups = _groups(reflectors)
    planes, hubs = _planes(reflectors, groups, previous)
    for choice in choices:
        census.counts[choice.zone][3] += 1
    selection = Selection(
        tuple(sorted(choices, key=lambda c: c.node)),
        tuple(
            ZoneSummary(z, r[0], r[1], r[2], r[3], r[3]) for z, r in sorted(census.counts.items())
        ),
        max(0, spine_count - len(spine_choices)),
    )
    return Plan(
        topology="hierarchy",
        reflectors=on_planes(reflectors, planes, hubs),
        groups=tuple(sorted(groups, key=lambda g: g.name)),
        zones=zone_summaries(selection, nodes, settings, previous),
        peerings=tuple(_peerings(reflectors, groups, planes, hubs)),
        problems=selection_problems(selection),
    )


class _Census:
    """One pass over the nodes: zone counts (nodes, ready, eligible, placed), racks with a ready
    node, eligible nodes per rack and without one; and how a candidate ranks for a role."""

    def __init__(self, nodes: Sequence[NodeInfo], settings: Settings, previous: Previous) -> None:
        self.was = {name: (rr.role, rr.serves) for name, rr in previous.reflectors.items()}
        self.labelled = previous.labelled
        prefer = bool(settings.preferred_labels)
        self.counts: dict[str, list[int]] = {}
        self.zone: dict[str, str] = {}
        self.racks: dict[str, list[NodeInfo]] = {}
        self.rackless: list[NodeInfo] = []
        self.ready_racks: set[str] = set()
        self.base: dict[str, tuple[bool, str, str]] = {}
        for node in nodes:
            home = self.zone[node.name] = zone_of(node, settings)
            rack = node.labels.get(settings.rack_label, "")
            row = self.counts.setdefault(home, [0, 0, 0, 0])
            row[0] += 1
            if node.ready and not node.deleting:
                row[1] += 1
                if rack:
                    self.ready_racks.add(rack)
            if ineligibility(node, settings) is None:
                row[2] += 1
                preferred = prefer and not is_preferred(node, settings)
                self.base[node.name] = (preferred, node.created, node.name)
                if rack:
                    self.racks.setdefault(rack, []).append(node)
                else:
                    self.rackless.append(node)

    def rank(
        self, node: NodeInfo, role: str, serves: str | None
    ) -> tuple[int, tuple[bool, str, str]]:
        """Same role before, then labelled as an RR now, then preferred, oldest, name."""
        before = self.was.get(node.name)
        tier = 0 if before == (role, serves) else 1 if node.name in self.labelled else 2
        return tier, self.base[node.name]


Roles = dict[str, tuple[str, str | None]]  # RR → (role, the rack it serves; None for the spine)


def _rack_reflectors(
    census: _Census,
) -> tuple[list[Choice], Roles, dict[str, list[NodeInfo]]]:
    """Two RRs per rack with a ready node and two eligible ones; the rest (and the rackless
    nodes) are spare for the spine, by zone."""
    choices: list[Choice] = []
    roles: Roles = {}
    spare: dict[str, list[NodeInfo]] = {}
    for node in census.rackless:
        spare.setdefault(census.zone[node.name], []).append(node)
    for rack in sorted(census.racks):
        pool = census.racks[rack]
        chosen: list[NodeInfo] = []
        if rack in census.ready_racks and len(pool) >= RACK_REFLECTORS:
            chosen = heapq.nsmallest(
                RACK_REFLECTORS, pool, key=lambda n: census.rank(n, "rack", rack)
            )
        for node in chosen:
            choices.append(Choice(node.name, census.zone[node.name], rack))
            roles[node.name] = ("rack", rack)
        for node in pool:
            if node.name not in roles:
                spare.setdefault(census.zone[node.name], []).append(node)
    return choices, roles, spare


def _spine_reflectors(
    census: _Census, spare: dict[str, list[NodeInfo]], count: int
) -> list[Choice]:
    """The spine: current spine RRs first, then round-robin over zones (the best of each zone,
    then the second best...) so the spine survives a zone loss; only the top few of a zone
    can be taken, so only those are ranked."""
    ordered = sorted(
        (
            (census.rank(n, "spine", None)[0] > 0, i, home, n)
            for home, pool in spare.items()
            for i, n in enumerate(
                heapq.nsmallest(count, pool, key=lambda n: census.rank(n, "spine", None))
            )
        ),
        key=lambda item: (item[0], item[1], item[2]),
    )
    return [Choice(node.name, home, SPINE) for _, _, home, node in ordered[:count]]


def _cluster_key(role: str, serves: str | None) -> str:
    return f"rack:{serves}" if role == "rack" else SPINE


def _cluster_ids(
    roles: Roles,
    was: dict[str, tuple[str, str | None]],
    settings: Settings,
    previous: Previous,
) -> dict[str, str]:
    """One cluster ID per rack and one for the spine, kept from RRs in the same role."""
    keys = sorted({_cluster_key(role, serves) for role, serves in roles.values() if role == "rack"})
    if any(role == "spine" for role, _ in roles.values()):
        keys.insert(0, SPINE)
    old: dict[str, str] = {}
    for name, (role, serves) in roles.items():
        carried = previous.cluster_of(name)
        # Only an ID the template gives can be kept: a rolling change converges on the new one.
        if was.get(name) == (role, serves) and settings.cluster_id.index_of(carried) is not None:
            old.setdefault(_cluster_key(role, serves), carried)
    return assign_cluster_ids(keys, old, settings.cluster_id, previous.held_ids())


def _groups(reflectors: Sequence[RouteReflector]) -> list[Group]:
    """The spine (when it has RRs) first, then one group per rack with RRs."""
    spine = tuple(rr.node for rr in reflectors if rr.role == "spine")
    members: dict[str, list[str]] = {}
    rack_zone: dict[str, str] = {}
    for rr in reflectors:
        if rr.role == "rack" and rr.serves is not None:
            members.setdefault(rr.serves, []).append(rr.node)
            rack_zone.setdefault(rr.serves, rr.zone)
    groups = [Group(rack_group(r), rack_zone[r], tuple(members[r]), r) for r in sorted(members)]
    if spine:
        groups.insert(0, Group(SPINE, "", spine, None))
    return groups


def _planes(
    reflectors: Sequence[RouteReflector], groups: Sequence[Group], previous: Previous
) -> tuple[dict[str, int], dict[int, str]]:
    """Planes (kept from the last status while they fit): rack RR j is on plane j, spine RR j
    too, and spine RR j is the hub of plane j (of plane j mod the spine's size when racks have
    more planes than the spine has RRs)."""
    spine = [rr.node for rr in reflectors if rr.role == "spine"]
    racks = [g.reflectors for g in groups if g.rack is not None]
    rack_planes = planes_of(racks, previous.planes())
    spine_planes = planes_of([spine], previous.planes()) if spine else {}
    by_plane = {j: rr for rr, j in spine_planes.items()}
    hubs = {j: by_plane[(j - 1) % len(spine) + 1] for j in set(rack_planes.values()) if spine}
    return rack_planes | spine_planes, hubs


def _peerings(
    reflectors: Sequence[RouteReflector],
    groups: Sequence[Group],
    planes: Mapping[str, int],
    hubs: Mapping[int, str],
) -> list[Peering]:
    spine = tuple(rr.node for rr in reflectors if rr.role == "spine")
    rack_rrs = tuple(rr.node for rr in reflectors if rr.role == "rack")
    peerings: list[Peering] = []
    if spine:
        peerings.append(Peering("spine-mesh", Reflectors(spine), Reflectors(spine)))
        if rack_rrs:
            # Planes (planes.py): a rack's RRs mesh (one cluster ID), rack RR j peers with spine
            # RR j only, so a client holds one path per rack RR, not rack RRs x spine RRs.
            racks = [(g.name, g.reflectors) for g in groups if g.rack is not None]
            rack_planes = {rr: planes[rr] for _, members in racks for rr in members}
            peerings += plane_peerings(racks, hubs, rack_planes)
    elif rack_rrs:
        # No node left for a spine (every eligible node is a rack RR): the rack RRs mesh, as the
        # RRs of `multi` do, or the racks could not reach each other.
        peerings.append(Peering("racks-mesh", Reflectors(rack_rrs), Reflectors(rack_rrs)))
    return peerings + client_peerings(groups)
