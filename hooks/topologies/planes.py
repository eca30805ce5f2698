"""Planes: how RRs of different cluster IDs are connected so paths per prefix stay bounded.

With Calico's `add paths on`, every chain of RRs with distinct cluster IDs multiplies the paths a
node holds (issue 10). So RRs come in LEAF GROUPS sharing one cluster ID (meshed with each other:
same ID, non-client sessions), and the RRs of a group are numbered planes 1..p. Plane j is a
star: one plane-j RR is its hub and every other plane-j RR peers with the hub only. A route of a
client of group A reaches a client of group B through each plane j it shares with both groups as
C -> A_j -> hub_j -> B_j -> D; a path that went through a sibling carries the group's own ID and
is never sent to clients. So a client holds at most one path per plane (p), an RR about p plus
its siblings, whatever the node and zone counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from hooks.config import ClusterIDTemplate
from hooks.model import Clients, Group, Peering, Reflectors, RouteReflector
from hooks.previous import Previous
from hooks.topologies.rendezvous import weight

PLANE_PREFIX = "plane-"  # a plane's star: Peering(f"plane-{j}", its members, its hub)


def group_name(zone: str) -> str:
    return zone or "unzoned"


def zone_ordinals(
    clusters: Sequence[tuple[str, Sequence[str]]], previous: Previous, suffix: str
) -> list[int]:
    """A number per cluster, unique in its zone and kept from the groups its members were in:
    a previous group named `group_name(zone) + suffix` gives the ordinal of `suffix`'s first
    regex group (1 where that group did not match), and a cluster takes the one most of its
    members had, so a cluster whose ID changes keeps its group names."""
    before: dict[str, int] = {}
    for group in previous.groups:
        found = re.fullmatch(re.escape(group_name(group.zone)) + suffix, group.name)
        if found:
            for member in group.reflectors:
                before.setdefault(member, int(found.group(1) or 1))
    used: dict[str, set[int]] = {}
    chosen: list[int | None] = []
    for zone, members in clusters:
        taken = used.setdefault(zone, set())
        votes: dict[int, int] = {}
        for member in members:
            if member in before:
                votes[before[member]] = votes.get(before[member], 0) + 1
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


def planes_of(
    clusters: Sequence[Sequence[str]], previous: Mapping[str, int] = {}
) -> dict[str, int]:
    """Plane 1..len(cluster) per RR: the one it had (`previous`) while that still fits its
    cluster, else the lowest free one, in node-name order. Planes stay contiguous, so two
    clusters of two or more RRs always share planes 1 and 2."""
    planes: dict[str, int] = {}
    for members in clusters:
        taken: set[int] = set()
        for rr in sorted(members):
            kept = previous.get(rr, 0)
            if 1 <= kept <= len(members) and kept not in taken:
                planes[rr] = kept
                taken.add(kept)
        free = (j for j in range(1, len(members) + 1) if j not in taken)
        for rr in sorted(members):
            if rr not in planes:
                planes[rr] = next(free)
    return planes


def choose_hubs(
    planes: Mapping[str, int], zone_of_rr: Mapping[str, str], kept: Mapping[int, str] = {}
) -> dict[int, str]:
    """One hub per plane: the one it had (`kept`) while that RR is still on the plane; else by
    rendezvous hashing over the plane's RRs, preferring a zone that hosts no other plane's hub
    (a zone outage then takes one plane's hub, not several)."""
    by_plane: dict[int, list[str]] = {}
    for rr, plane in planes.items():
        by_plane.setdefault(plane, []).append(rr)
    hubs = {j: rr for j, rr in kept.items() if planes.get(rr) == j}
    for plane in sorted(by_plane):
        if plane in hubs:
            continue
        taken = {zone_of_rr[h] for h in hubs.values()}
        hubs[plane] = min(
            by_plane[plane],
            key=lambda rr: (zone_of_rr[rr] in taken, -weight(f"plane-{plane}", rr), rr),
        )
    return dict(sorted(hubs.items()))


def plane_peerings(
    clusters: Sequence[tuple[str, Sequence[str]]],
    hubs: Mapping[int, str],
    planes: Mapping[str, int],
) -> list[Peering]:
    """Each cluster's RRs meshed (one BGPPeer per cluster of two or more), then one BGPPeer per
    plane: its RRs with its hub. No other RR-RR session."""
    peerings = [
        Peering(f"group-{name}", Reflectors(tuple(sorted(m))), Reflectors(tuple(sorted(m))))
        for name, m in clusters
        if len(m) > 1
    ]
    members: dict[int, list[str]] = {}
    for rr, plane in planes.items():
        if rr != hubs.get(plane):
            members.setdefault(plane, []).append(rr)
    for plane in sorted(members):
        if plane in hubs:
            peerings.append(
                Peering(
                    f"{PLANE_PREFIX}{plane}",
                    Reflectors(tuple(sorted(members[plane]))),
                    Reflectors((hubs[plane],)),
                )
            )
    return peerings


def partition(members: Sequence[str], previous: Mapping[str, str], size: int) -> list[list[str]]:
    """Cut `members` into max(1, n // size) clusters (of size to 2 * size - 1), keeping previous
    clusters together where they fit: a cluster is keyed by the ID its members had; the largest
    old clusters survive. New members fill clusters in the order given."""
    count = max(1, len(members) // size)
    old: dict[str, list[str]] = {}
    for member in sorted(members):
        if previous.get(member):
            old.setdefault(previous[member], []).append(member)
    kept = sorted(old.values(), key=lambda c: (-len(c), c[0]))[:count]
    sizes = [len(members) // count + (1 if i < len(members) % count else 0) for i in range(count)]
    clusters: list[list[str]] = [list(c) for c in kept] + [[] for _ in range(count - len(kept))]
    # Sizes are fixed by the count; trim kept clusters that are too big, then fill the rest.
    order = sorted(range(count), key=lambda i: -len(clusters[i]))
    loose: list[str] = []
    for slot, index in enumerate(order):
        while len(clusters[index]) > sizes[slot]:
            loose.append(clusters[index].pop())
    placed = {m for c in clusters for m in c}
    loose += [m for m in members if m not in placed and m not in loose]
    for slot, index in enumerate(order):
        while len(clusters[index]) < sizes[slot]:
            clusters[index].append(loose.pop(0))
    return [sorted(c) for c in clusters if c]


def cluster_key_ids(
    clusters: Sequence[tuple[str, Sequence[str]]],
    old_ids: Mapping[str, str],
    template: ClusterIDTemplate,
) -> dict[str, str]:
    """The ID each cluster would keep: the one most of its members carry (ties: the lowest)
    among those the template gives, so a rolling change converges on the first new ID."""
    kept: dict[str, str] = {}
    for key, members in clusters:
        counts: dict[str, int] = {}
        for member in members:
            if old_ids.get(member) and template.index_of(old_ids[member]) is not None:
                counts[old_ids[member]] = counts.get(old_ids[member], 0) + 1
        if counts:
            kept[key] = min(counts, key=lambda i: (-counts[i], i))
    return kept


def inherited_names(
    clusters: Sequence[Sequence[str]], previous: Sequence[Group], fresh: Callable[[int], str]
) -> list[str]:
    """A name per cluster: the previous group most of its members were in (so its clients keep
    their label), else `fresh(i)`, else a numbered variant; names are unique."""
    before: dict[str, str] = {}
    for group in previous:
        for member in group.reflectors:
            before.setdefault(member, group.name)
    taken: set[str] = set()
    chosen: list[str | None] = []
    for members in clusters:
        votes: dict[str, int] = {}
        for member in members:
            if member in before:
                votes[before[member]] = votes.get(before[member], 0) + 1
        name = next(
            (n for n in sorted(votes, key=lambda n: (-votes[n], n)) if n not in taken), None
        )
        if name is not None:
            taken.add(name)
        chosen.append(name)
    names: list[str] = []
    for index, name in enumerate(chosen):
        if name is None:
            name = fresh(index)
            suffix = 2
            while name in taken:
                name, suffix = f"{fresh(index)}-{suffix}", suffix + 1
            taken.add(name)
        names.append(name)
    return names


def on_planes(
    reflectors: tuple[RouteReflector, ...], planes: Mapping[str, int], hubs: Mapping[int, str]
) -> tuple[RouteReflector, ...]:
    """The RRs with their plane and hub role set: both are kept from sync to sync (status), and
    transitions.py rolls cluster-ID changes plane by plane."""
    hub_of = {rr: j for j, rr in hubs.items()}
    return tuple(
        replace(rr, plane=planes.get(rr.node, 0), hub=rr.node in hub_of) for rr in reflectors
    )


def set_apart(peerings: Sequence[Peering], off: frozenset[str]) -> tuple[Peering, ...]:
    """`peerings` with the RRs of `off` out of their plane's star (the hub side is never taken
    out; a plane left with no member goes) and out of their groups' client peerings: they keep
    only their sessions with their own cluster."""
    if not off:
        return tuple(peerings)
    kept: list[Peering] = []
    for peering in peerings:
        members, peers = peering.nodes, peering.peers
        if peering.name.startswith(PLANE_PREFIX) and isinstance(members, Reflectors):
            members = Reflectors(tuple(n for n in members.names if n not in off))
            if not members.names:
                continue
        elif isinstance(members, Clients) and isinstance(peers, Reflectors):
            peers = Reflectors(tuple(n for n in peers.names if n not in off))
        kept.append(Peering(peering.name, members, peers))
    return tuple(kept)
