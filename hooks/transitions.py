"""Make-before-break: RRs leaving for a non-failure reason drain until their replacements' BGP
sessions are Established; failed RRs go at once; guards keep the last good plan on bad input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hooks.config import Settings
from hooks.model import (
    Clients,
    Condition,
    Group,
    NodeInfo,
    Peering,
    PeerSet,
    Plan,
    Reflectors,
    ReflectorState,
    RouteReflector,
)
from hooks.selection import is_failed
from hooks.wire import ReflectorWire, TopologyStatusWire

SESSION_POLL_SECONDS = 10.0


@dataclass(frozen=True)
class Sessions:
    """BGP session state from the CalicoNodeStatus children (Calico >= 3.21)."""

    observed: bool  # some CalicoNodeStatus reported: session state exists in this cluster
    established: frozenset[str]  # nodes whose BGP sessions are all Established (at least one)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def apply_transitions(
    target: Plan,
    previous: TopologyStatusWire,
    nodes: Mapping[str, NodeInfo],
    sessions: Sessions,
    settings: Settings,
    now: datetime,
) -> Plan:
    """The plan to apply now on the way to `target`.

    A new RR is Pending until its sessions are Established (or, with no session state at all,
    `waitSeconds` have passed). An RR that left the target without failing stays, Draining, in
    the groups it served until nothing is Pending; then at most one per zone is released per step,
    never two from one group, and never the last Active RR of a group.
    """
    before = {rr.node: rr for rr in previous.routeReflectors}
    wait = timedelta(seconds=settings.wait_seconds)
    resync: float | None = None

    def is_up(node: str, since: str) -> tuple[bool, float | None]:
        if sessions.observed:
            return node in sessions.established, SESSION_POLL_SECONDS
        started = parse_stamp(since) or now
        left = (started + wait - now).total_seconds()
        return left <= 0, max(left, 1.0) if left > 0 else None

    reflectors: list[RouteReflector] = []
    for rr in target.reflectors:
        old = before.get(rr.node)
        if old is not None and old.state in (ReflectorState.ACTIVE, ReflectorState.DRAINING):
            reflectors.append(replace(rr, state=ReflectorState.ACTIVE, since=""))
            continue
        since = (
            old.since
            if old is not None and old.state == ReflectorState.PENDING and old.since
            else stamp(now)
        )
        up, again = is_up(rr.node, since)
        if up:
            reflectors.append(replace(rr, state=ReflectorState.ACTIVE, since=""))
        else:
            reflectors.append(replace(rr, state=ReflectorState.PENDING, since=since))
            resync = min(resync or again or SESSION_POLL_SECONDS, again or SESSION_POLL_SECONDS)

    planned = {rr.node for rr in reflectors}
    leaving = [
        old
        for name, old in sorted(before.items())
        if name not in planned and not is_failed(nodes.get(name))
    ]
    pending = any(rr.state == ReflectorState.PENDING for rr in reflectors)
    groups = {g.name: g for g in target.groups}
    before_groups = {g.name: set(g.reflectors) for g in previous.groups}
    active = {rr.node for rr in reflectors if rr.state == ReflectorState.ACTIVE}
    released_zones: set[str] = set()
    touched_groups: set[str] = set()
    draining: list[ReflectorWire] = []
    for old in leaving:
        served = [
            name
            for name, members in before_groups.items()
            if old.node in members and name in groups
        ]
        zone = old.serves or old.zone
        can_go = (
            not pending
            and zone not in released_zones
            and not touched_groups.intersection(served)
            and all(active.intersection(groups[name].reflectors) for name in served)
        )
        if can_go:
            released_zones.add(zone)
            touched_groups.update(served)
        else:
            draining.append(old)

    for old in draining:
        since = old.since if old.state == ReflectorState.DRAINING and old.since else stamp(now)
        reflectors.append(
            RouteReflector(
                old.node,
                old.zone,
                old.clusterID,
                ReflectorState.DRAINING,
                old.role,
                old.serves,
                since,
            )
        )
        for name, members in before_groups.items():
            if old.node in members and name in groups and old.node not in groups[name].reflectors:
                group = groups[name]
                groups[name] = replace(
                    group, reflectors=tuple(sorted((*group.reflectors, old.node)))
                )
    if draining or pending:
        resync = resync or SESSION_POLL_SECONDS
    if not draining and not pending and not before.keys() - planned:
        return replace(
            target, reflectors=tuple(sorted(reflectors, key=lambda r: r.node)), resync_after=resync
        )

    roles = {rr.node: rr.role for rr in reflectors}
    peerings = []
    for peering in target.peerings:
        nodes_side, peers_side = peering.nodes, peering.peers
        if isinstance(nodes_side, Clients) and nodes_side.group in groups:
            peers_side = Reflectors(groups[nodes_side.group].reflectors)
        else:
            nodes_side = _with_draining(nodes_side, draining, roles)
            peers_side = _with_draining(peers_side, draining, roles)
        peerings.append(Peering(peering.name, nodes_side, peers_side))
    problems = list(target.problems)
    if draining:
        waiting = [rr.node for rr in reflectors if rr.state == ReflectorState.PENDING]
        problems.append(
            Condition(
                "Progressing",
                "True",
                "TransitionPending",
                f"{len(draining)} RR(s) draining ({', '.join(d.node for d in draining)})"
                + (f" until {', '.join(waiting)} establish BGP sessions" if waiting else ""),
            )
        )
    return replace(
        target,
        reflectors=tuple(sorted(reflectors, key=lambda r: r.node)),
        groups=tuple(sorted(groups.values(), key=lambda g: g.name)),
        peerings=tuple(peerings),
        problems=tuple(problems),
        resync_after=resync,
    )


def _with_draining(
    side: PeerSet, draining: list[ReflectorWire], roles: Mapping[str, str]
) -> PeerSet:
    """A draining RR stays in the RR-to-RR peerings that hold RRs of its role."""
    if not isinstance(side, Reflectors):
        return side
    present = {roles.get(name, "") for name in side.names}
    extra = [d.node for d in draining if d.role in present and d.node not in side.names]
    return Reflectors(tuple(sorted((*side.names, *extra)))) if extra else side


def guard_tripped(
    nodes: list[NodeInfo], previous: TopologyStatusWire, settings: Settings, now: datetime
) -> str | None:
    """Why this Node set looks broken (and must not strip RRs), or None.

    Empty, fewer than `guard.minNodes`, or more than `guard.maxMissingFraction` of the nodes
    that were Ready last time gone or NotReady at once. A trip older than `guard.holdSeconds`
    is accepted as the new truth.
    """
    if not previous.routeReflectors:
        return None
    for condition in previous.conditions:
        if condition.type == "Degraded" and condition.reason == "GuardTripped":
            since = parse_stamp(condition.lastTransitionTime)
            if since is not None and (now - since).total_seconds() >= settings.guard.holdSeconds:
                return None
    ready = sum(1 for n in nodes if n.ready and not n.deleting)
    was_ready = sum(zone.ready for zone in previous.zones)
    if not nodes:
        return "the request holds no Node at all"
    if len(nodes) < settings.guard.minNodes:
        return (
            f"the request holds {len(nodes)} Node(s),"
            f" fewer than guard.minNodes ({settings.guard.minNodes})"
        )
    if was_ready and ready < was_ready * (1 - settings.guard.maxMissingFraction):
        return (
            f"{ready} Node(s) Ready now against {was_ready} last time: more than"
            f" {settings.guard.maxMissingFraction:.0%} gone or NotReady at once"
        )
    return None


__all__ = ["Group", "Sessions", "apply_transitions", "guard_tripped"]
