"""Route propagation through BIRD route reflectors over a session graph, with RRs failing."""

from __future__ import annotations

import functools
import heapq
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from hooks.sessions import Graph

__all__ = ["ClientClass", "Core", "Outcome", "evaluate", "sweep"]

#
# Only RRs pass on learned routes, so whether node y learns node o's route depends only on the RR
# core plus o and y themselves; non-RR nodes with the same set of RR peers are interchangeable.
# The simulation therefore runs once per origin RR and once per class of non-RR nodes (keyed by
# its RR peers) over the RR core alone, and per-node answers are read off the classes.
#
# A path's future depends on where it sits, how it arrived (originated, from a client, from a
# non-client) and the set of cluster IDs in its CLUSTER_LIST; BIRD's "not back to the sender" is
# already implied by ORIGINATOR_ID and CLUSTER_LIST checks.  A path that arrived at least as
# favourably (originated > from a client > from a non-client) with a subset of the cluster IDs can
# do everything the other can, so each RR keeps only the undominated (mode, cluster set) pairs:
# exact for reachability, and small.

_FROM_NON_CLIENT: Final = 0
_FROM_CLIENT: Final = 1
_ORIGINATED: Final = 2


@dataclass(frozen=True)
class _Spread:
    learned: frozenset[int]  # core RRs that accept at least one path
    delivers: frozenset[int]  # core RRs that pass a path on to their non-RR clients
    relays: frozenset[int]  # core RRs whose offers were accepted by another RR


@dataclass(frozen=True)
class ClientClass:
    reflectors: frozenset[int]  # core indices of the RRs its members peer with
    members: tuple[int, ...]  # node indices, in name order


class Core:
    """The RR core and the classes of non-RR nodes around it."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: tuple[int, ...] = tuple(
            i for i in range(len(graph.names)) if graph.is_reflector(i)
        )
        core_of = {node: k for k, node in enumerate(self.nodes)}
        cluster_bits: dict[str, int] = {}
        for node in self.nodes:
            cluster_bits.setdefault(str(graph.cluster_ids[node]), 1 << len(cluster_bits))
        self.bits = tuple(cluster_bits[str(graph.cluster_ids[node])] for node in self.nodes)
        self.peers = tuple(
            tuple(sorted(core_of[j] for j in graph.adjacency[node] if j in core_of))
            for node in self.nodes
        )
        members: dict[frozenset[int], list[int]] = {}
        self.class_of: dict[int, int] = {}
        for i in range(len(graph.names)):
            if i not in core_of:
                key = frozenset(core_of[j] for j in graph.adjacency[i] if j in core_of)
                members.setdefault(key, []).append(i)
        ordered = sorted(members.items(), key=lambda item: item[1][0])
        self.classes = tuple(ClientClass(key, tuple(nodes)) for key, nodes in ordered)
        for c, client_class in enumerate(self.classes):
            for i in client_class.members:
                self.class_of[i] = c
        # a session between two non-RR nodes carries only their own two routes
        self.direct: dict[int, frozenset[int]] = {}
        self.direct_pairs: dict[tuple[int, int], int] = {}
        if not graph.mesh:
            for i in self.class_of:
                plain = frozenset(j for j in graph.adjacency[i] if j not in core_of)
                if plain:
                    self.direct[i] = plain
                    for j in plain:
                        pair = (self.class_of[i], self.class_of[j])
                        self.direct_pairs[pair] = self.direct_pairs.get(pair, 0) + 1

    def spread(self, alive: frozenset[int], origin: int | None, entry: frozenset[int]) -> _Spread:
        """Propagate one route: from core RR `origin`, or from a non-RR node peering `entry`."""
        bits, peers = self.bits, self.peers
        states: dict[int, list[tuple[int, int]]] = {}
        floor: dict[int, int] = {}  # the best mode held with an empty cluster set: a quick veto
        relays: set[int] = set()
        queue: deque[tuple[int, int, int]] = deque()
        if origin is not None:
            states[origin] = [(_ORIGINATED, 0)]
            queue.append((origin, _ORIGINATED, 0))
        else:
            for r in sorted(entry & alive):
                states[r] = [(_FROM_CLIENT, 0)]
                floor[r] = _FROM_CLIENT
                queue.append((r, _FROM_CLIENT, 0))
        while queue:
            r, mode, clusters = queue.popleft()
            if (mode, clusters) not in states[r]:
                continue  # superseded by a dominating path
            own = bits[r]
            sent = clusters if mode == _ORIGINATED else clusters | own
            for q in peers[r]:
                if q == origin or q not in alive:
                    continue
                client = bits[q] != own  # symmetric between RRs: cluster IDs differ
                if not client and mode == _FROM_NON_CLIENT:
                    continue  # learned from a non-client: reflect to clients only
                if client and clusters & own:
                    continue  # BIRD: never send on a client session a path holding our ID
                if client and sent & bits[q]:
                    continue  # BIRD: drop on a client session a path holding our ID
                new_mode = _FROM_CLIENT if client else _FROM_NON_CLIENT
                if floor.get(q, -1) >= new_mode:
                    continue
                held = states.get(q)
                if held is None:
                    held = states[q] = []
                elif any(m >= new_mode and s | sent == sent for m, s in held):
                    continue
                else:
                    held[:] = [(m, s) for m, s in held if not (new_mode >= m and s | sent == s)]
                held.append((new_mode, sent))
                relays.add(r)
                if not sent:
                    floor[q] = new_mode
                queue.append((q, new_mode, sent))
        delivers = frozenset(
            r
            for r, held in states.items()
            if any(m == _ORIGINATED or not s & bits[r] for m, s in held)
        )
        # every RR that ever accepted a path still holds one: only dominated paths are dropped
        return _Spread(frozenset(states.keys() - {origin}), delivers, frozenset(relays))

    @functools.cached_property
    def origins(self) -> tuple[_Key, ...]:
        """Every origin, one bit each: the RRs by core index, then the client classes."""
        reflectors = [(True, k) for k in range(len(self.nodes))]
        return (*reflectors, *((False, c) for c in range(len(self.classes))))

    @functools.cached_property
    def intact(self) -> tuple[tuple[_Spread, ...], list[int], list[int]]:
        """With every RR up: the spread per origin, and per RR the origins it learns, delivers."""
        alive = frozenset(range(len(self.nodes)))
        spreads = tuple(
            self.spread(alive, index, frozenset())
            if reflector
            else self.spread(alive, None, self.classes[index].reflectors)
            for reflector, index in self.origins
        )
        learns, delivers = [0] * len(self.nodes), [0] * len(self.nodes)
        for bit, spread in enumerate(spreads):
            for r in spread.learned:
                learns[r] |= 1 << bit
            for r in spread.delivers:
                delivers[r] |= 1 << bit
        return spreads, learns, delivers


@dataclass(frozen=True)
class Outcome:
    unreachable: int
    examples: tuple[str, ...]


_Key = tuple[bool, int]  # (is an RR, core index or class index)


def evaluate(core: Core, failed: frozenset[int], max_examples: int) -> Outcome:
    """Count the ordered pairs (a, b) of surviving nodes where a has no route to b."""
    # Losing RRs that relayed nothing for an origin changes nothing else for it (removing a node
    # never adds a path), so only the spreads that the failed RRs relayed are run again; they
    # can only shrink.  Per RR, a bit per origin it learns and per origin it delivers to clients.
    alive = frozenset(k for k in range(len(core.nodes)) if k not in failed)
    intact, intact_learns, intact_delivers = core.intact
    learns, delivers = list(intact_learns), list(intact_delivers)
    rerun: dict[frozenset[int], _Spread] = {}
    for bit, (reflector, index) in enumerate(core.origins):
        before = intact[bit]
        if not before.relays & failed or (reflector and index in failed):
            continue
        if reflector:
            after = core.spread(alive, index, frozenset())
        else:
            entry = core.classes[index].reflectors - failed
            if entry not in rerun:
                rerun[entry] = core.spread(alive, None, entry)
            after = rerun[entry]
        for r in before.learned - after.learned:
            learns[r] &= ~(1 << bit)
        for r in before.delivers - after.delivers:
            delivers[r] &= ~(1 << bit)
    everyone = (1 << len(core.origins)) - 1
    for k in failed:
        everyone &= ~(1 << k)
    origins = core.origins

    failing: dict[_Key, list[_Key]] = {}  # learner → the origins it has no route to
    unreachable = 0
    for learner in sorted(alive):
        for origin in _bits(everyone & ~learns[learner] & ~(1 << learner), origins):
            failing.setdefault((True, learner), []).append(origin)
            unreachable += len(_members(core, origin))
    for c, client_class in enumerate(core.classes):
        size = len(client_class.members)
        got = 0
        for r in client_class.reflectors - failed:
            got |= delivers[r]
        for origin in _bits(everyone & ~got, origins):
            if origin[0]:
                missing = size
            elif core.graph.mesh:
                continue  # every pair of non-RR nodes has a direct mesh session
            else:
                d = origin[1]
                missing = size * len(core.classes[d].members) - core.direct_pairs.get((c, d), 0)
                missing -= size if c == d else 0
            if missing:
                failing.setdefault((False, c), []).append(origin)
                unreachable += missing
    examples = (
        tuple(itertools.islice(_failing_pairs(core, failing), max_examples)) if unreachable else ()
    )
    return Outcome(unreachable, examples)


def _bits(mask: int, keys: tuple[_Key, ...]) -> Iterator[_Key]:
    while mask:
        low = mask & -mask
        yield keys[low.bit_length() - 1]
        mask ^= low


def _members(core: Core, key: _Key) -> tuple[int, ...]:
    reflector, index = key
    return (core.nodes[index],) if reflector else core.classes[index].members


def _failing_pairs(core: Core, failing: dict[_Key, list[_Key]]) -> Iterator[str]:
    names = core.graph.names
    learners = heapq.merge(*([(i, key) for i in _members(core, key)] for key in sorted(failing)))
    for learner, key in learners:
        direct = core.direct.get(learner, frozenset())
        origins = heapq.merge(*(_members(core, origin) for origin in failing[key]))
        for origin in origins:
            if origin == learner or (not key[0] and origin in direct):
                continue
            yield f"{names[learner]} -> {names[origin]}"


def sweep(core: Core, group_size: int, max_examples: int) -> tuple[bool, tuple[str, ...]]:
    ok = True
    examples: list[str] = []
    for group in itertools.combinations(range(len(core.nodes)), group_size):
        outcome = evaluate(core, frozenset(group), 1)
        if outcome.unreachable:
            ok = False
            if len(examples) < max_examples:
                down = "+".join(core.graph.names[core.nodes[k]] for k in group)
                examples.append(f"without {down}: {outcome.examples[0]}")
            if len(examples) >= max_examples:
                break  # the verdict is known and the examples are full
    return ok, tuple(examples)
