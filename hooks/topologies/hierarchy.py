"""hierarchy: two RRs per rack sharing the rack's cluster ID, spine RRs sharing the spine's;
rack RRs peer with every spine RR, spine RRs mesh, clients peer with both RRs of their rack.

A rack with fewer than two eligible nodes (or nodes without the rack label) is served by the
spine directly: its clients peer with every spine RR. The spine has max(2, min) RRs, spread over
zones, taken from nodes that are not rack RRs.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from hooks.config import Settings
from hooks.model import Group, NodeInfo, Peering, Plan, Reflectors, RouteReflector
from hooks.selection import Choice, Selection, ZoneCount, ineligibility, is_preferred, zone_of
from hooks.topologies import Previous, assign_cluster_ids, reflector_sort
from hooks.topologies.common import client_peerings, selection_problems, zone_summaries

RACK_REFLECTORS = 2
SPINE = "spine"


def rack_group(rack: str) -> str:
    return f"rack-{rack}"


def build(nodes: Sequence[NodeInfo], settings: Settings, previous: Previous) -> Plan:
    eligible = [n for n in nodes if ineligibility(n, settings) is None]
    was = {name: (rr.role, rr.serves) for name, rr in previous.reflectors.items()}

    prefer = bool(settings.preferred_labels)
    base = {n.name: (prefer and not is_preferred(n, settings), n.created, n.name) for n in eligible}

    def rank(node: NodeInfo, role: str, serves: str | None) -> tuple[int, tuple[bool, str, str]]:
        """Same role before, then labelled as an RR now, then preferred, oldest, name."""
        before = was.get(node.name)
        tier = 0 if before == (role, serves) else 1 if node.name in previous.labelled else 2
        return tier, base[node.name]

    racks: dict[str, list[NodeInfo]] = {}
    ready_racks: set[str] = set()
    for node in nodes:
        rack = node.labels.get(settings.rack_label, "")
        if rack and node.ready and not node.deleting:
            ready_racks.add(rack)
    for node in eligible:
        rack = node.labels.get(settings.rack_label, "")
        if rack:
            racks.setdefault(rack, []).append(node)
    choices: list[Choice] = []
    roles: dict[str, tuple[str, str | None]] = {}
    for rack in sorted(racks):
        if rack not in ready_racks or len(racks[rack]) < RACK_REFLECTORS:
            continue
        for node in heapq.nsmallest(
            RACK_REFLECTORS, racks[rack], key=lambda n: rank(n, "rack", rack)
        ):
            choices.append(Choice(node.name, zone_of(node, settings), rack))
            roles[node.name] = ("rack", rack)

    spine_count = max(RACK_REFLECTORS, settings.min)
    spare = [n for n in eligible if n.name not in roles]
    spine_rank = {n.name: rank(n, "spine", None) for n in spare}
    by_zone: dict[str, list[NodeInfo]] = {}
    for node in sorted(spare, key=lambda n: spine_rank[n.name]):
        by_zone.setdefault(zone_of(node, settings), []).append(node)
    # Current spine RRs first, then round-robin over zones so the spine survives a zone loss.
    ordered = sorted(
        (
            (spine_rank[n.name][0] > 0, i, zone, n)
            for zone, ns in by_zone.items()
            for i, n in enumerate(ns)
        ),
        key=lambda item: (item[0], item[1], item[2]),
    )
    for _, _, zone, node in ordered[:spine_count]:
        choices.append(Choice(node.name, zone, SPINE))
        roles[node.name] = ("spine", None)
    shortfall = max(0, spine_count - len(ordered))

    keys = sorted({f"rack:{serves}" for _, (role, serves) in roles.items() if role == "rack"})
    if any(role == "spine" for role, _ in roles.values()):
        keys.insert(0, SPINE)
    old: dict[str, str] = {}
    for name, (role, serves) in roles.items():
        key = f"rack:{serves}" if role == "rack" else SPINE
        if was.get(name) == (role, serves) and previous.cluster_id(name):
            old.setdefault(key, previous.cluster_id(name) or "")
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
    spine = tuple(rr.node for rr in reflectors if rr.role == "spine")
    rack_rrs = tuple(rr.node for rr in reflectors if rr.role == "rack")
    members: dict[str, list[str]] = {}
    home: dict[str, str] = {}
    for rr in reflectors:
        if rr.role == "rack" and rr.serves is not None:
            members.setdefault(rr.serves, []).append(rr.node)
            home.setdefault(rr.serves, rr.zone)
    groups = [Group(rack_group(r), home[r], tuple(members[r]), r) for r in sorted(members)]
    if spine:
        groups.insert(0, Group(SPINE, "", spine, None))
    peerings: list[Peering] = []
    if spine:
        peerings.append(Peering("spine-mesh", Reflectors(spine), Reflectors(spine)))
        if rack_rrs:
            peerings.append(Peering("racks-to-spine", Reflectors(rack_rrs), Reflectors(spine)))
    peerings += client_peerings(groups)

    counts: dict[str, list[int]] = {}
    eligible_names = {n.name for n in eligible}
    for node in nodes:
        zone = zone_of(node, settings)
        row = counts.setdefault(zone, [0, 0, 0, 0])
        row[0] += 1
        row[1] += node.ready and not node.deleting
        row[2] += node.name in eligible_names
    for choice in choices:
        counts[choice.zone][3] += 1
    selection = Selection(
        tuple(sorted(choices, key=lambda c: c.node)),
        tuple(ZoneCount(z, r[0], r[1], r[2], r[3], r[3]) for z, r in sorted(counts.items())),
        shortfall,
    )
    return Plan(
        topology="hierarchy",
        reflectors=reflectors,
        groups=tuple(sorted(groups, key=lambda g: g.name)),
        zones=zone_summaries(selection, nodes, settings, previous),
        peerings=tuple(peerings),
        problems=selection_problems(selection),
    )
