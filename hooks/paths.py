"""Count the BGP routes each node holds with Calico's `add paths on` (BIRD 1.6 route reflection)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

from hooks.propagation import Core
from hooks.sessions import SimNode, build_graph, read_peers, session_stats

__all__ = [
    "DEFAULT_BUDGET",
    "PathReport",
    "count_paths",
    "figure_text",
    "format_paths",
    "mid_roll_bound",
]

# Transitions (one path offered over one RR-RR session) examined before a count is called
# exploding: about 2 s here.  At 5,000 nodes the largest exact count (hierarchy, 255 RRs) needs
# about a third of it; multi and quorum run out of it (their counts grow factorially).
DEFAULT_BUDGET: Final = 3_000_000

# With `add paths on` a path is a walk: origin, then the RRs that reflected it, each session
# once.  BIRD's checks (proto/bgp/attrs.c) look only at where a path sits, how it arrived there
# (originated, from an `rr client` session, from a non-client session) and the cluster IDs in its
# CLUSTER_LIST; "never back to the sender" and ORIGINATOR_ID are implied by those plus "never to
# the origin".  So the walks ending in the same (RR, mode, cluster set) are interchangeable and are
# counted together, level by level (each reflection adds one cluster ID), without listing them.
#
# Per origin, an RR holds every path it accepts (the RR's routes) and sends its non-RR clients the
# ones whose CLUSTER_LIST lacks its own ID (a client's routes: the sum over its RRs).  Non-RR nodes
# never re-advertise, so the walks run over the RRs alone, once per origin RR and once per class of
# non-RR nodes peering the same RRs (every member of a class spreads its prefix identically).

_FROM_NON_CLIENT: Final = 0
_FROM_CLIENT: Final = 1
_ORIGINATED: Final = 2


def mid_roll_bound(cluster: int) -> int:
    """Paths per remote prefix at a client while a cluster of p = `cluster` RRs changes its ID
    (transitions.set_aside). With m of p on the new ID the two classes are each other's `rr
    client` and each reflects the other's copy of a client's route: p + 2m(p - m) when both
    serve clients, so at most p + 2 * floor(p/2) * ceil(p/2) (3: 7, 4: 12, 5: 17). Where the
    new-ID RRs are set aside while two old ones remain (`simple`, `multi`, RRs that are no hub
    of a shared plane), a client holds one path per old-ID RR, then with one old RR left 3p - 2
    (5: 13); a cluster holding hubs keeps those serving, up to the first figure. A prefix of
    another cluster arrives with fewer."""
    return cluster + 2 * (cluster // 2) * ((cluster + 1) // 2)


@dataclass(frozen=True)
class _Spread:
    """One origin's paths, per core RR: held (accepted) and sendable to its non-RR clients."""

    held: dict[int, int]
    offered: dict[int, int]
    complete: bool
    work: int


def _spread(
    bits: tuple[int, ...], groups: _Groups, origin: int | None, entry: Iterable[int], allowance: int
) -> _Spread:
    """Count the paths of one prefix: originated by core RR `origin`, or by a non-RR node whose
    RR peers are `entry`; stop, incomplete, after `allowance` transitions."""
    held: dict[int, int] = {}
    offered: dict[int, int] = {}
    frontier: dict[tuple[int, int, int], int] = {}
    if origin is not None:
        frontier[(origin, _ORIGINATED, 0)] = 1
    else:
        for r in sorted(entry):
            frontier[(r, _FROM_CLIENT, 0)] = 1
    work = 0
    while frontier:
        following: dict[tuple[int, int, int], int] = {}
        for (r, mode, clusters), count in frontier.items():
            own = bits[r]
            if mode != _ORIGINATED:
                held[r] = held.get(r, 0) + count
            if clusters & own:
                continue  # arrived from a same-ID RR after reflection: kept, never passed on
            offered[r] = offered.get(r, 0) + count
            sent = clusters if mode == _ORIGINATED else clusters | own
            for bit, members in groups[r]:
                if work >= allowance:
                    return _Spread(held, offered, False, work)
                work += len(members)
                if bit == own:  # a same-ID RR: a non-client session, no CLUSTER_LIST check
                    if mode == _FROM_NON_CLIENT:
                        continue  # learned from a non-client: reflected to clients only
                    for q in members:
                        if q == origin:
                            continue  # ORIGINATOR_ID (or the sender itself)
                        if sent:  # holds our ID: q keeps it and passes it nowhere
                            held[q] = held.get(q, 0) + count
                        else:
                            key = (q, _FROM_NON_CLIENT, 0)
                            following[key] = following.get(key, 0) + count
                elif not sent & bit:  # a client session: q drops a path holding its own ID
                    for q in members:
                        if q != origin:
                            key = (q, _FROM_CLIENT, sent)
                            following[key] = following.get(key, 0) + count
        frontier = following
    return _Spread(held, offered, True, work)


_Groups = tuple[tuple[tuple[int, tuple[int, ...]], ...], ...]


def _peer_groups(core: Core) -> _Groups:
    """Per core RR, its RR peers grouped by cluster ID bit: BIRD's checks are per cluster ID."""
    result = []
    for peers in core.peers:
        by_bit: dict[int, list[int]] = {}
        for q in peers:
            by_bit.setdefault(core.bits[q], []).append(q)
        result.append(tuple((bit, tuple(qs)) for bit, qs in sorted(by_bit.items())))
    return tuple(result)


@dataclass(frozen=True)
class _Table:
    """Everything `paths(learner, origin)` needs, kept off the report's public fields."""

    core: Core
    index: dict[str, int]
    rr_spreads: tuple[_Spread, ...]  # per core RR
    class_spreads: tuple[_Spread, ...]  # per client class

    def paths(self, learner: int, origin: int) -> int:
        if learner == origin:
            return 0
        core = self.core
        spread = self._spread_of(origin)
        if learner in core.class_of:
            members = core.classes[core.class_of[learner]].reflectors
            total = sum(spread.offered.get(r, 0) for r in members)
            if origin in core.class_of and (
                core.graph.mesh or origin in core.direct.get(learner, ())
            ):
                total += 1
            return total
        return spread.held.get(core.nodes.index(learner), 0)

    def _spread_of(self, origin: int) -> _Spread:
        core = self.core
        if origin in core.class_of:
            return self.class_spreads[core.class_of[origin]]
        return self.rr_spreads[core.nodes.index(origin)]


@dataclass(frozen=True)
class PathReport:
    """Routes each node holds with add paths on; figures are lower bounds when `exploded`.

    A path count is per (node, remote prefix): every node originates one prefix, and a node's
    routes are its paths summed over every other node's prefix (BIRD's BGP-learned routes)."""

    exploded: bool
    nodes: int
    reflectors: int
    cluster_ids: int
    routes: Mapping[str, int] = field(repr=False)
    paths_client_max: int
    paths_client_mean: float
    paths_rr_max: int
    paths_rr_mean: float
    routes_per_node_max: int
    routes_per_node_mean: float
    sessions_per_client_max: int
    sessions_per_client_mean: float
    sessions_per_rr_max: int
    sessions_per_rr_mean: float
    work: int
    _table: _Table = field(repr=False, compare=False)

    def paths(self, learner: str, origin: str) -> int:
        """How many routes `learner` holds for `origin`'s prefix (0 for its own)."""
        index = self._table.index
        return self._table.paths(index[learner], index[origin])

    def to_dict(self, *, routes: bool = False) -> dict[str, Any]:
        """The figures as JSON; `routes=True` adds the per-node route counts."""
        result: dict[str, Any] = {}
        for item in fields(self):
            if item.name == "_table" or (item.name == "routes" and not routes):
                continue
            value = getattr(self, item.name)
            result[item.name] = dict(value) if isinstance(value, Mapping) else value
        return result


def count_paths(
    nodes: Iterable[SimNode],
    peers: Iterable[Mapping[str, Any]],
    *,
    mesh: bool = False,
    budget: int = DEFAULT_BUDGET,
) -> PathReport:
    """Count every node's add-path routes for these nodes and BGPPeers (`mesh`: the node-to-node
    mesh is on; RRs take no mesh sessions).  Past `budget` transitions the count stops and the
    report says `exploded`, every figure then a lower bound."""
    peerings, _skipped, _peer_count = read_peers(peers)
    graph = build_graph(nodes, peerings, mesh)
    return _report(Core(graph), budget)


def _report(core: Core, budget: int) -> PathReport:
    graph = core.graph
    stats = session_stats(graph)
    origins: list[tuple[int | None, tuple[int, ...]]] = [(k, ()) for k in range(len(core.nodes))]
    origins += [(None, tuple(sorted(c.reflectors))) for c in core.classes]
    groups = _peer_groups(core)
    # Every origin gets an equal share first; what the cheap ones leave is shared out again among
    # the unfinished, which start over with the larger allowance, until all finish or it is spent.
    spreads: list[_Spread] = []
    remaining = budget
    for position, (origin, entry) in enumerate(origins):
        spread = _spread(core.bits, groups, origin, entry, remaining // (len(origins) - position))
        spreads.append(spread)
        remaining -= spread.work
    work = budget - remaining
    while unfinished := [i for i, spread in enumerate(spreads) if not spread.complete]:
        allowance = remaining // len(unfinished)
        if allowance <= max(spreads[i].work for i in unfinished):
            break  # no origin would get further than it already did
        for i in unfinished:
            origin, entry = origins[i]
            spread = _spread(core.bits, groups, origin, entry, allowance)
            remaining -= spread.work
            work += spread.work
            spreads[i] = spread
    rr_spreads = tuple(spreads[: len(core.nodes)])
    class_spreads = tuple(spreads[len(core.nodes) :])
    table = _Table(core, {name: i for i, name in enumerate(graph.names)}, rr_spreads, class_spreads)

    total_nodes = len(graph.names)
    plain = total_nodes - len(core.nodes)
    routes = [0] * total_nodes
    rr_max = 0
    for k, r in enumerate(core.nodes):
        for o, spread in enumerate(rr_spreads):
            if o != k:
                value = spread.held.get(k, 0)
                routes[r] += value
                rr_max = max(rr_max, value)
        for client_class, spread in zip(core.classes, class_spreads, strict=True):
            value = spread.held.get(k, 0)
            routes[r] += value * len(client_class.members)
            rr_max = max(rr_max, value)
    client_max = 0
    for c, client_class in enumerate(core.classes):
        reflectors = sorted(client_class.reflectors)
        from_rrs = [sum(s.offered.get(r, 0) for r in reflectors) for s in rr_spreads]
        from_classes = [sum(s.offered.get(r, 0) for r in reflectors) for s in class_spreads]
        base = sum(from_rrs) + sum(
            n * len(d.members) for n, d in zip(from_classes, core.classes, strict=True)
        )
        base -= from_classes[c]  # a member holds no route for its own prefix
        top = max(from_rrs, default=0)
        for d, other in enumerate(core.classes):
            if len(other.members) > (1 if d == c else 0):
                top = max(top, from_classes[d] + (1 if graph.mesh else 0))
        for i in client_class.members:
            direct = core.direct.get(i, frozenset())
            routes[i] = base + (plain - 1 if graph.mesh else len(direct))
            mine = top
            for j in direct:
                mine = max(mine, from_classes[core.class_of[j]] + 1)
            client_max = max(client_max, mine)

    remote = total_nodes - 1
    rr_routes = [routes[r] for r in core.nodes]
    client_routes = [routes[i] for i in range(total_nodes) if i in core.class_of]
    return PathReport(
        exploded=not all(s.complete for s in spreads),
        nodes=total_nodes,
        reflectors=len(core.nodes),
        cluster_ids=len(set(core.bits)),
        routes={name: routes[i] for i, name in enumerate(graph.names)},
        paths_client_max=client_max,
        paths_client_mean=_ratio(sum(client_routes), plain * remote),
        paths_rr_max=rr_max,
        paths_rr_mean=_ratio(sum(rr_routes), len(rr_routes) * remote),
        routes_per_node_max=max(routes, default=0),
        routes_per_node_mean=_ratio(sum(routes), total_nodes),
        sessions_per_client_max=stats.per_client_max,
        sessions_per_client_mean=stats.per_client_mean,
        sessions_per_rr_max=stats.per_rr_max,
        sessions_per_rr_mean=stats.per_rr_mean,
        work=work,
        _table=table,
    )


def _ratio(total: int, count: int) -> float:
    return round(total / count, 2) if count else 0.0


def figure_text(value: float, exploded: bool) -> str:
    """A count for people: thousands separated, "at least" when the count exploded."""
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
    return f"at least {text}" if exploded else text


def format_paths(report: PathReport) -> list[str]:
    """Lines for people: paths per remote prefix, routes per node, sessions; EXPLODES if capped."""
    x = report.exploded
    lines = []
    if x:
        lines.append(
            f"add-path routes: EXPLODES (at least {report.routes_per_node_max:,} routes at a node;"
            f" counting stopped after {report.work:,} steps, every figure is a lower bound)"
        )
    lines += [
        f"paths per remote prefix: at clients max {figure_text(report.paths_client_max, x)},"
        f" mean {figure_text(report.paths_client_mean, x)};"
        f" at RRs max {figure_text(report.paths_rr_max, x)},"
        f" mean {figure_text(report.paths_rr_mean, x)}",
        f"routes per node: max {figure_text(report.routes_per_node_max, x)},"
        f" mean {figure_text(report.routes_per_node_mean, x)}",
        f"sessions per client: max {report.sessions_per_client_max},"
        f" mean {report.sessions_per_client_mean}; per RR: max {report.sessions_per_rr_max},"
        f" mean {report.sessions_per_rr_mean}",
    ]
    return lines
