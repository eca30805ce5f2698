"""hierarchy: two RRs per rack sharing the rack's cluster ID, spine RRs sharing the spine's;
a rack's RRs mesh, rack RR j (plane j, node-name order) peers with spine RR j only (the hub of
plane j, planes.py), spine RRs mesh, clients peer with both RRs of their rack.

A rack with fewer than two eligible nodes (or nodes without the rack label) is served by the
spine directly: its clients peer with every spine RR. The spine has max(2, min) RRs, spread over
zones, taken from nodes that are not rack RRs; with no node left for it, the rack RRs mesh.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

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
from hooks.topologies.planes import (
    ROLL_POLL_SECONDS,
    plane_peerings,
    planes_of,
    roll_cluster_ids,
)

RACK_REFLECTORS = 2
SPINE = "spine"


def rack_group(rack: str) -> str:
    return f"rack-{rack}"


def build(nodes: Sequence[NodeInfo], settings: Settings, previous: Previous) -> Plan:
    was = {name: (rr.role, rr.serves) for name, rr in previous.reflectors.items()}
    prefer = bool(settings.preferred_labels)
    # One pass over the nodes: zone counts, racks with a ready node, eligible nodes per rack.
    counts: dict[str, list[int]] = {}
    zone: dict[str, str] = {}
    racks: dict[str, list[NodeInfo]] = {}
    rackless: list[NodeInfo] = []
    ready_racks: set[str] = set()
    base: dict[str, tuple[bool, str, str]] = {}
    for node in nodes:
        home = zone[node.name] = zone_of(node, settings)
        rack = node.labels.get(settings.rack_label, "")
        row = counts.setdefault(home, [0, 0, 0, 0])
        row[0] += 1
        if node.ready and not node.deleting:
            row[1] += 1
            if rack:
                ready_racks.add(rack)
        if ineligibility(node, settings) is None:
            row[2] += 1
            base[node.name] = (prefer and not is_preferred(node, settings), node.created, node.name)
            if rack:
                racks.setdefault(rack, []).append(node)
            else:
                rackless.append(node)

    def rank(node: NodeInfo, role: str, serves: str | None) -> tuple[int, tuple[bool, str, str]]:
        """Same role before, then labelled as an RR now, then preferred, oldest, name."""
        before = was.get(node.name)
        tier = 0 if before == (role, serves) else 1 if node.name in previous.labelled else 2
        return tier, base[node.name]

    choices: list[Choice] = []
    roles: dict[str, tuple[str, str | None]] = {}
    spare: dict[str, list[NodeInfo]] = {}
    for node in rackless:
        spare.setdefault(zone[node.name], []).append(node)
    for rack in sorted(racks):
        chosen: list[NodeInfo] = []
        if rack in ready_racks and len(racks[rack]) >= RACK_REFLECTORS:
            chosen = heapq.nsmallest(
                RACK_REFLECTORS, racks[rack], key=lambda n: rank(n, "rack", rack)
            )
        for node in chosen:
            choices.append(Choice(node.name, zone[node.name], rack))
            roles[node.name] = ("rack", rack)
        for node in racks[rack]:
            if node.name not in roles:
                spare.setdefault(zone[node.name], []).append(node)

    # The spine: current spine RRs first, then round-robin over zones (the best of each zone,
    # then the second best...) so the spine survives a zone loss; only the top few of a zone
    # can be taken, so only those are ranked.
    spine_count = max(RACK_REFLECTORS, settings.min)
    ordered = sorted(
        (
            (rank(n, "spine", None)[0] > 0, i, home, n)
            for home, pool in spare.items()
            for i, n in enumerate(
                heapq.nsmallest(spine_count, pool, key=lambda n: rank(n, "spine", None))
            )
        ),
        key=lambda item: (item[0], item[1], item[2]),
    )
    for _, _, home, node in ordered[:spine_count]:
        choices.append(Choice(node.name, home, SPINE))
        roles[node.name] = ("spine", None)
    shortfall = max(0, spine_count - len(ordered))

    keys = sorted({f"rack:{serves}" for _, (role, serves) in roles.items() if role == "rack"})
    if any(role == "spine" for role, _ in roles.values()):
        keys.insert(0, SPINE)
    old: dict[str, str] = {}
    for name, (role, serves) in roles.items():
        key = f"rack:{serves}" if role == "rack" else SPINE
        carried = previous.cluster_id(name) or ""
        # Only an ID the template gives can be kept: a rolling change converges on the new one.
        if was.get(name) == (role, serves) and settings.cluster_id.index_of(carried) is not None:
            old.setdefault(key, carried)
    ids = assign_cluster_ids(keys, old, settings.cluster_id, previous.held_ids())
    reflectors = reflector_sort(
        RouteReflector(
            c.node,
            c.zone,
            ids[SPINE if c.serves == SPINE else f"rack:{c.serves}"],
            role="spine" if c.serves == SPINE else "rack",
            serves=None if c.serves == SPINE else c.serves,
        )
        for c in choices
    )
    reflectors, rolling = roll_cluster_ids(reflectors, previous)
    spine = tuple(rr.node for rr in reflectors if rr.role == "spine")
    rack_rrs = tuple(rr.node for rr in reflectors if rr.role == "rack")
    members: dict[str, list[str]] = {}
    rack_zone: dict[str, str] = {}
    for rr in reflectors:
        if rr.role == "rack" and rr.serves is not None:
            members.setdefault(rr.serves, []).append(rr.node)
            rack_zone.setdefault(rr.serves, rr.zone)
    groups = [Group(rack_group(r), rack_zone[r], tuple(members[r]), r) for r in sorted(members)]
    if spine:
        groups.insert(0, Group(SPINE, "", spine, None))
    peerings: list[Peering] = []
    if spine:
        peerings.append(Peering("spine-mesh", Reflectors(spine), Reflectors(spine)))
        if rack_rrs:
            # Planes (planes.py): a rack's RRs mesh (one cluster ID), rack RR j peers with spine
            # RR j only, so a client holds one path per rack RR, not rack RRs x spine RRs.
            racks_ = [(g.name, g.reflectors) for g in groups if g.rack is not None]
            planes = planes_of([m for _, m in racks_])
            hubs = {j: spine[(j - 1) % len(spine)] for j in set(planes.values())}
            peerings += plane_peerings(racks_, hubs, planes)
    elif rack_rrs:
        # No node left for a spine (every eligible node is a rack RR): the rack RRs mesh, as the
        # RRs of `multi` do, or the racks could not reach each other.
        peerings.append(Peering("racks-mesh", Reflectors(rack_rrs), Reflectors(rack_rrs)))
    peerings += client_peerings(groups)

    for choice in choices:
        counts[choice.zone][3] += 1
    selection = Selection(
        tuple(sorted(choices, key=lambda c: c.node)),
        tuple(ZoneSummary(z, r[0], r[1], r[2], r[3], r[3]) for z, r in sorted(counts.items())),
        shortfall,
    )
    return Plan(
        topology="hierarchy",
        reflectors=reflectors,
        groups=tuple(sorted(groups, key=lambda g: g.name)),
        zones=zone_summaries(selection, nodes, settings, previous),
        peerings=tuple(peerings),
        problems=selection_problems(selection) + ((rolling,) if rolling else ()),
        resync_after=ROLL_POLL_SECONDS if rolling else None,
    )
