"""Make-before-break: RRs leaving for a non-failure reason drain until their replacements' BGP
sessions are Established; failed RRs go at once; guards keep the last good plan on bad input."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

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
from hooks.previous import Previous
from hooks.selection import is_failed
from hooks.stamps import parse_stamp, stamp
from hooks.topologies.planes import set_apart

SESSION_POLL_SECONDS = 10.0
UPDATE_PERIOD_SECONDS = 10  # how often the CalicoNodeStatus children ask Calico for a report
SHOWN_NAMES = 5  # RRs named in a roll's condition message (the rest are counted)


@dataclass(frozen=True)
class Sessions:
    """BGP session state from the CalicoNodeStatus reports (Calico >= 3.21): the children in KDD
    mode, the documents in etcd in etcdv3 mode."""

    observed: bool  # some CalicoNodeStatus reported: session state exists in this cluster
    established: frozenset[str]  # nodes whose BGP sessions are all Established (at least one)
    # established node → its report's lastUpdated ("" when the report carries none)
    updated: Mapping[str, str] = field(default_factory=dict)
    # Why nothing is trusted beyond `established`: reports that could not be read (by name), or
    # the read itself failing (a datastore error). Either counts as session state observed.
    unreadable: tuple[str, ...] = ()
    failure: str = ""


def apply_transitions(
    target: Plan,
    previous: Previous,
    nodes: Mapping[str, NodeInfo],
    sessions: Sessions,
    settings: Settings,
    now: datetime,
) -> Plan:
    """The plan to apply now on the way to `target`.

    A new RR is Pending until its sessions are up (`_Clock.settling`). A cluster-ID change rolls
    (`_roll`): one RR at a time, each change Pending like a new RR. An RR that left the
    target without failing stays, Draining, in the groups it served until nothing is Pending;
    then at most one per zone is released per step, never two from one group, and never the
    last Active RR of a group. A group that left the plan retires: its clients move to their new
    group while keeping the old one's sessions (the previous-group label) until the new sessions
    are up.
    """
    before = previous.reflectors
    carried = None if settings.datastore == "etcdv3" else previous.labelled
    clock = _Clock(now, sessions, settings, carried)
    planned = {rr.node for rr in target.reflectors}
    leaving = [
        old
        for name, old in sorted(before.items())
        if name not in planned and not is_failed(nodes.get(name))
    ]
    groups = {g.name: g for g in target.groups}
    moving = bool(leaving) or any(g.name not in groups for g in previous.groups)
    reflectors, rolling = _roll(target.reflectors, before, previous.labelled, clock, moving)
    rolled = (rolling,) if rolling is not None else ()
    retiring, shrinking = _retiring_groups(
        previous, groups, planned | {old.node for old in leaving}, clock
    )
    before_groups = {g.name: set(g.reflectors) for g in previous.groups}
    hold_all = shrinking or any(rr.state == ReflectorState.PENDING for rr in reflectors)
    held = {node for g in retiring.values() for node in g.reflectors}
    active = {rr.node for rr in reflectors if rr.state == ReflectorState.ACTIVE}
    draining = _still_draining(leaving, before_groups, groups, active, held, hold_all)
    _keep_draining(draining, reflectors, groups, before_groups, now)
    if (draining or retiring) and clock.resync is None:
        clock.again(SESSION_POLL_SECONDS)
    reflectors.sort(key=lambda r: r.node)
    off = set_aside(reflectors, target.groups)
    if not draining and not retiring and not before.keys() - planned:
        return replace(
            target,
            reflectors=tuple(reflectors),
            peerings=set_apart(target.peerings, off),
            problems=(*target.problems, *rolled),
            resync_after=clock.resync,
        )
    progress = (*_progress(draining, retiring, reflectors), *rolled)
    peerings = _peerings_during(target, groups, retiring, draining, reflectors)
    return replace(
        target,
        reflectors=tuple(reflectors),
        groups=tuple(sorted([*groups.values(), *retiring.values()], key=lambda g: g.name)),
        peerings=set_apart(peerings, off),
        problems=(*target.problems, *progress),
        resync_after=clock.resync,
    )


def _still_draining(
    leaving: Sequence[RouteReflector],
    before_groups: Mapping[str, set[str]],
    groups: Mapping[str, Group],
    active: set[str],
    held: set[str],
    hold_all: bool,
) -> list[RouteReflector]:
    """The leaving RRs that stay, Draining, this step: all while `hold_all` (something is
    Pending, or a retiring group shrank); else those in a retiring group (`held`), and all
    but one per zone, never two from one group, never the last Active RR of a group."""
    released_zones: set[str] = set()
    touched_groups: set[str] = set()
    draining: list[RouteReflector] = []
    for old in leaving:
        served = [
            name
            for name, members in before_groups.items()
            if old.node in members and name in groups
        ]
        zone = old.served()
        can_go = (
            not hold_all
            and old.node not in held
            and zone not in released_zones
            and not touched_groups.intersection(served)
            and all(active.intersection(groups[name].reflectors) for name in served)
        )
        if can_go:
            released_zones.add(zone)
            touched_groups.update(served)
        else:
            draining.append(old)
    return draining


def _keep_draining(
    draining: Sequence[RouteReflector],
    reflectors: list[RouteReflector],
    groups: dict[str, Group],
    before_groups: Mapping[str, set[str]],
    now: datetime,
) -> None:
    """Add the draining RRs to `reflectors` (Draining since when they started) and back into
    the groups of `groups` they served."""
    for old in draining:
        since = old.since if old.state == ReflectorState.DRAINING and old.since else stamp(now)
        reflectors.append(
            RouteReflector(
                old.node,
                old.zone,
                old.cluster_id,
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


def _peerings_during(
    target: Plan,
    groups: Mapping[str, Group],
    retiring: Mapping[str, Group],
    draining: Sequence[RouteReflector],
    reflectors: Sequence[RouteReflector],
) -> tuple[Peering, ...]:
    """The target's peerings with the draining RRs kept in: a group's clients peer with all
    its RRs (draining ones too), RR-to-RR peerings keep the draining RRs of their roles, and
    each retiring group keeps its clients, those that just left it too."""
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
    for name, group in sorted(retiring.items()):
        peerings.append(
            Peering(f"clients-{name}", Clients(name, retiring=True), Reflectors(group.reflectors))
        )
    return tuple(peerings)


def _progress(
    draining: Sequence[RouteReflector],
    retiring: Mapping[str, Group],
    reflectors: Sequence[RouteReflector],
) -> tuple[Condition, ...]:
    """Progressing/TransitionPending while RRs drain or groups retire, naming what it waits on."""
    if not draining and not retiring:
        return ()
    waiting = [rr.node for rr in reflectors if rr.state == ReflectorState.PENDING]
    parts = []
    if draining:
        parts.append(f"{len(draining)} RR(s) draining ({', '.join(d.node for d in draining)})")
    if retiring:
        parts.append(f"group(s) {', '.join(sorted(retiring))} retiring while their clients move")
    message = "; ".join(parts) + (
        f" until {', '.join(waiting)} establish BGP sessions" if waiting else ""
    )
    return (Condition("Progressing", "True", "TransitionPending", message),)


RETIRE_SECONDS = 30.0


class _Clock:
    """Time and session state for one sync; collects the earliest resync that is needed."""

    def __init__(
        self,
        now: datetime,
        sessions: Sessions,
        settings: Settings,
        carried: Mapping[str, str] | None = None,
    ) -> None:
        self.now = now
        self.sessions = sessions
        self.carried = carried  # node → cluster ID its annotation carries (None: etcd mode)
        self.wait = timedelta(seconds=settings.wait_seconds)
        self.undated = max(self.wait, timedelta(seconds=UPDATE_PERIOD_SECONDS))
        self.retire = timedelta(seconds=max(settings.wait_seconds, RETIRE_SECONDS))
        self.resync: float | None = None

    def again(self, seconds: float) -> None:
        self.resync = seconds if self.resync is None else min(self.resync, seconds)

    def left(self, since: str, span: timedelta) -> float:
        """Seconds of `span` left from `since`; a stamp in the future (never ours: we write
        `now`) counts as now, so a year-9999 stamp restarts the wait instead of overflowing."""
        started = parse_stamp(since) or self.now
        started = min(started, self.now)
        return (started + span - self.now).total_seconds()

    def entering(self, rr: RouteReflector, old: RouteReflector | None) -> RouteReflector:
        """Active when it was already an RR or its sessions are up, else Pending since when."""
        if old is not None and old.state in (ReflectorState.ACTIVE, ReflectorState.DRAINING):
            return replace(rr, state=ReflectorState.ACTIVE, since="")
        pending_before = old is not None and old.state == ReflectorState.PENDING and old.since
        since = old.since if old is not None and pending_before else stamp(self.now)
        wait = self.settling(rr, since)
        if wait is None:
            return replace(rr, state=ReflectorState.ACTIVE, since="")
        self.again(wait)
        return replace(rr, state=ReflectorState.PENDING, since=since)

    def settling(self, rr: RouteReflector, since: str) -> float | None:
        """None once the sessions of `rr`, Pending since `since`, are up under its planned
        cluster ID; else the seconds until it is worth looking again.

        With session state: the node carries that ID (KDD: its annotation; in etcd the sync
        wrote it) and its CalicoNodeStatus shows every session Established in a report dated
        after `since` (an older report shows the sessions from before the change). An undated
        report (or one dated in the future) counts once max(updatePeriodSeconds, waitSeconds)
        have passed since `since`. With no session state at all: once waitSeconds have."""
        if not self.sessions.observed:
            left = self.left(since, self.wait)
            return None if left <= 0 else max(left, 1.0)
        if self.carried is not None and self.carried.get(rr.node) != rr.cluster_id:
            return SESSION_POLL_SECONDS
        if rr.node not in self.sessions.established:
            return SESSION_POLL_SECONDS
        reported = parse_stamp(self.sessions.updated.get(rr.node, ""))
        if reported is None or reported > self.now:
            left = self.left(since, self.undated)
            return None if left <= 0 else max(left, 1.0)
        started = min(parse_stamp(since) or self.now, self.now)
        return None if reported > started else SESSION_POLL_SECONDS

    def retired(self, since: str, planned: set[str], clients_left: bool) -> bool:
        """A retiring group shrinks once no node is labelled with it any more (its clients moved)
        and every RR's sessions (those to the moved clients too) are Established; with no session
        state, once its clients had `max(waitSeconds, 30 s)` to move."""
        if not clients_left:
            self.again(SESSION_POLL_SECONDS)
            return False
        if self.sessions.observed:
            if planned <= self.sessions.established:
                return True
            self.again(SESSION_POLL_SECONDS)
            return False
        left = self.left(since, self.retire)
        if left > 0:
            self.again(max(left, 1.0))
            return False
        return True


def _retiring_groups(
    previous: Previous,
    groups: Mapping[str, Group],
    alive: set[str],
    clock: _Clock,
) -> tuple[dict[str, Group], bool]:
    """Groups of the last plan that this one dropped, kept (with their RRs still alive) while
    their clients move, then shrunk one RR a step; True when one shrank this step."""
    planned = {node for g in groups.values() for node in g.reflectors}
    kept: dict[str, Group] = {}
    shrunk = False
    for old in previous.groups:
        if old.name in groups:
            continue
        members = tuple(m for m in old.reflectors if m in alive)
        since = old.retiring_since or stamp(clock.now)
        if members and clock.retired(since, planned, old.name in previous.unlabelled_groups):
            # One RR a step, so a moved client never loses two at once; RRs leaving first.
            gone = min(members, key=lambda m: (m in planned, m))
            members = tuple(m for m in members if m != gone)
            shrunk = True
        if members:
            kept[old.name] = Group(old.name, old.zone, members, old.rack, since)
    return kept, shrunk


def _roll(
    target: Sequence[RouteReflector],
    before: Mapping[str, RouteReflector],
    labelled: Mapping[str, str],
    clock: _Clock,
    moving: bool,
) -> tuple[list[RouteReflector], Condition | None]:
    """The target RRs with their state, cluster-ID changes rolled.

    A new cluster ID makes BIRD restart every session of that RR, so an RR whose ID (in the
    last status, else on its node) is one the plan gives no RR any more keeps it, showing the
    next one, until its turn: when nothing is Pending (the last change's sessions are
    Established again, `_Clock.settling`) and no RR or group is leaving, one RR changes
    (`_next_to_change`), so a client has one restarting RR at a time, and two clusters stay
    joined through every other plane."""
    carried: dict[str, str] = {}
    wanting: set[str] = set()
    planned_ids = {rr.cluster_id for rr in target}
    for rr in target:
        old = before.get(rr.node)
        carried[rr.node] = old.cluster_id if old is not None and old.cluster_id else ""
        carried[rr.node] = carried[rr.node] or labelled.get(rr.node, "")
        # An ID the plan gives other RRs is another group's: an RR that moved group (or role)
        # takes its new group's ID at once, like any member joining (keeping the old one would
        # make it a sibling of the group it left).
        if carried[rr.node] not in planned_ids | {""}:
            wanting.add(rr.node)
    reflectors = [
        clock.entering(
            replace(rr, cluster_id=carried[rr.node], next_cluster_id=rr.cluster_id)
            if rr.node in wanting
            else rr,
            before.get(rr.node),
        )
        for rr in target
    ]
    settling = [rr.node for rr in reflectors if rr.state == ReflectorState.PENDING]
    if not wanting:
        return reflectors, None
    changing: list[RouteReflector] = []
    if not settling and not moving:
        changing.append(_next_to_change(target, wanting, carried))
        now = {rr.node for rr in changing}
        reflectors = [
            clock.entering(rr, None) if rr.node in now else mine
            for rr, mine in zip(target, reflectors, strict=True)
        ]
    waiting = len(wanting) - len(changing)
    if waiting:
        clock.again(SESSION_POLL_SECONDS)
    if changing:
        message = "cluster ID changing on " + _some(
            f"{rr.node} ({carried[rr.node]} -> {rr.cluster_id})" for rr in changing
        )
    elif settling:
        message = "cluster-ID changes wait for BGP sessions of " + _some(settling)
    else:
        message = "cluster-ID changes wait until the RRs and groups leaving are gone"
    if waiting:
        message += (
            f"; {waiting} RR(s) change theirs later (status: nextClusterID), one at a time,"
            " each once the last change's BGP sessions are Established again"
        )
    return reflectors, Condition("Progressing", "True", "TransitionPending", message)


def _next_to_change(
    target: Sequence[RouteReflector], wanting: set[str], carried: Mapping[str, str]
) -> RouteReflector:
    """The one RR to change now: in the cluster already rolling (some RR carries its new ID,
    some still the old one), else in the cluster whose new ID comes first; in it, hubs last,
    else the RR on the highest plane: the low planes are the ones every cluster shares (a
    cluster of s RRs is on planes 1..s only), and `set_aside` takes the changed RRs off theirs
    while two old ones are left. One cluster at a time: the RRs of a cluster carrying two
    IDs are each other's `rr client`, so paths cross planes through them, and through two such
    clusters they would multiply (see `set_aside`)."""
    rolling = sorted(
        {
            rr.cluster_id
            for rr in target
            if rr.node not in wanting and carried[rr.node] == rr.cluster_id
        }
        & {rr.cluster_id for rr in target if rr.node in wanting}
    )
    cluster = rolling[0] if rolling else min(rr.cluster_id for rr in target if rr.node in wanting)
    return min(
        (rr for rr in target if rr.node in wanting and rr.cluster_id == cluster),
        key=lambda rr: (rr.hub, -rr.plane, rr.node),
    )


def set_aside(reflectors: Sequence[RouteReflector], groups: Iterable[Group]) -> frozenset[str]:
    """RRs set aside while their cluster rolls (off their plane, no client sessions; meshed
    with their cluster only): those already on the new ID (a hub only when no other RR is on
    its plane: the others would lose their plane), as long as two or more of the cluster
    still carry the old one, in a cluster whose clients peer with all of it (`simple`,
    `multi`; a `quorum` client peers with m of k, so some clients would keep only new-ID RRs,
    and lose the other clusters).

    The RRs of a rolling cluster are each other's `rr client` (two IDs), so each class
    re-advertises what the other learnt: on a plane, the other class's plane paths to every
    cluster on it; to clients, the other class's copy of every client route (p + 2m(p - m)
    paths at a client for a prefix of its own cluster, m of p changed). Set aside, each client
    holds one path per old-ID RR. The two old-ID RRs left keep the cluster on two planes and
    every client on two RRs (one may fail); when one is left, the new-ID RRs are back, serving
    and on their planes, before it changes: then 3p - 2 at most; hubs that stay serving raise
    it, up to `hooks.paths.mid_roll_bound`."""
    by_cluster: dict[str, list[RouteReflector]] = {}
    for rr in reflectors:
        by_cluster.setdefault(rr.next_cluster_id or rr.cluster_id, []).append(rr)
    whole = {frozenset(g.reflectors) for g in groups}
    on_plane = Counter(rr.plane for rr in reflectors if rr.plane)
    off: set[str] = set()
    for members in by_cluster.values():
        old = [rr for rr in members if rr.next_cluster_id]
        names = frozenset(rr.node for rr in members)
        served_whole = all(frozenset(g) == names for g in whole if g & names)
        if len(old) >= 2 and served_whole:
            # A hub stays while its plane has other RRs: they would lose their plane.
            off.update(
                rr.node
                for rr in members
                if not rr.next_cluster_id and not (rr.hub and on_plane[rr.plane] > 1)
            )
    return frozenset(off)


def _some(items: Iterable[str]) -> str:
    listed = list(items)
    shown = ", ".join(listed[:SHOWN_NAMES])
    return shown + (f" and {len(listed) - SHOWN_NAMES} more" if len(listed) > SHOWN_NAMES else "")


def _with_draining(
    side: PeerSet, draining: Sequence[RouteReflector], roles: Mapping[str, str]
) -> PeerSet:
    """A draining RR stays in the RR-to-RR peerings that hold RRs of its role."""
    if not isinstance(side, Reflectors):
        return side
    present = {roles.get(name, "") for name in side.names}
    extra = [d.node for d in draining if d.role in present and d.node not in side.names]
    return Reflectors(tuple(sorted((*side.names, *extra)))) if extra else side


def guard_tripped(nodes: list[NodeInfo], previous: Previous, settings: Settings) -> str | None:
    """Why this Node set looks broken (and must not strip RRs), or None.

    Empty, fewer than `guard.minNodes`, or more than `guard.maxMissingFraction` of the nodes
    that were Ready last time gone or NotReady at once. An empty set trips even with no plan
    yet (the hook runs on a node: a request without one is never the truth)."""
    if not nodes:
        return "the request holds no Node at all"
    if not previous.reflectors:
        return None
    ready = sum(1 for n in nodes if n.ready and not n.deleting)
    was_ready = previous.ready
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


def trusted_since(recorded: str, created: str, now: datetime) -> datetime:
    """When a trip started, by the stamp this service wrote in status: a missing, unreadable,
    future or pre-creation stamp is not ours to trust and counts as now."""
    since = parse_stamp(recorded)
    born = parse_stamp(created)
    if since is None or since > now or (born is not None and since < born):
        return now
    return since


def guard_holds(nodes: list[NodeInfo], since: datetime, settings: Settings, now: datetime) -> bool:
    """A trip is held for guard.holdSeconds from when we first saw it; an empty set for good."""
    return not nodes or (now - since).total_seconds() < settings.guard.holdSeconds
