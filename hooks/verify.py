"""Simulate Calico BGP route propagation (BIRD route reflection) to prove a topology routes."""

from __future__ import annotations

import functools
import heapq
import itertools
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final

__all__ = [
    "CLUSTER_ID_ANNOTATION",
    "Selector",
    "SelectorError",
    "SimNode",
    "VerifyReport",
    "format_report",
    "nodes_from_objects",
    "pair_failure_promised",
    "parse_selector",
    "verify",
]

CLUSTER_ID_ANNOTATION: Final = "projectcalico.org/RouteReflectorClusterID"

# ---------------------------------------------------------------------------------------------
# Calico selectors


class SelectorError(ValueError):
    """A selector that Calico would reject; `position` is the 0-based offset of the problem."""

    def __init__(self, text: str, position: int, reason: str) -> None:
        super().__init__(f"{reason} at position {position} in selector {text!r}")
        self.text = text
        self.position = position
        self.reason = reason


class _Expr(ABC):
    """A parsed selector expression."""

    __slots__ = ()

    @abstractmethod
    def matches(self, labels: Mapping[str, str]) -> bool: ...


@dataclass(frozen=True, slots=True)
class _All(_Expr):
    def matches(self, labels: Mapping[str, str]) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class _Has(_Expr):
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels


@dataclass(frozen=True, slots=True)
class _Equals(_Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) == self.value


@dataclass(frozen=True, slots=True)
class _NotEquals(_Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) != self.value


@dataclass(frozen=True, slots=True)
class _In(_Expr):
    key: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is not None and value in self.values


@dataclass(frozen=True, slots=True)
class _NotIn(_Expr):
    key: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is None or value not in self.values


@dataclass(frozen=True, slots=True)
class _Contains(_Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is not None and self.value in value


@dataclass(frozen=True, slots=True)
class _StartsWith(_Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is not None and value.startswith(self.value)


@dataclass(frozen=True, slots=True)
class _EndsWith(_Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is not None and value.endswith(self.value)


@dataclass(frozen=True, slots=True)
class _Not(_Expr):
    operand: _Expr

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)


@dataclass(frozen=True, slots=True)
class _And(_Expr):
    operands: tuple[_Expr, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(operand.matches(labels) for operand in self.operands)


@dataclass(frozen=True, slots=True)
class _Or(_Expr):
    operands: tuple[_Expr, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(operand.matches(labels) for operand in self.operands)


@dataclass(frozen=True)
class Selector:
    """A parsed Calico selector; `matches` evaluates it against a node's labels."""

    text: str
    expr: _Expr

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.expr.matches(labels)

    def __str__(self) -> str:
        return self.text


_SPACE = re.compile(r"[ \t\r\n]*")
_KEY = re.compile(r"[A-Za-z0-9_./-]{1,512}")  # libcalico-go's label key matcher
_HAS = re.compile(r"has\(\s*([A-Za-z0-9_./-]{1,512})\s*\)")
_ALL = re.compile(r"all\(\s*\)")
_STRING = re.compile(r"\"([^\"]*)\"|'([^']*)'")
_NOT_IN = re.compile(r"not\s*in\b")
_IN = re.compile(r"in\b")
_CONTAINS = re.compile(r"contains\b")
_STARTS_WITH = re.compile(r"starts\s*with\b")
_ENDS_WITH = re.compile(r"ends\s*with\b")


class _Parser:
    """Recursive descent over Calico's grammar: `||` binds loosest, then `&&`, then `!`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, reason: str, position: int | None = None) -> SelectorError:
        return SelectorError(self.text, self.pos if position is None else position, reason)

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None  # `*` always matches
        self.pos = match.end()

    def take(self, literal: str) -> bool:
        self.skip_space()
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def take_re(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        self.skip_space()
        match = pattern.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()
        return match

    def parse(self) -> _Expr:
        self.skip_space()
        if self.pos == len(self.text):
            return _All()  # Calico treats an empty selector as all()
        expr = self.parse_or()
        self.skip_space()
        if self.pos != len(self.text):
            raise self.fail("expected '&&', '||' or the end of the selector")
        return expr

    def parse_or(self) -> _Expr:
        operands = [self.parse_and()]
        while self.take("||"):
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else _Or(tuple(operands))

    def parse_and(self) -> _Expr:
        operands = [self.parse_unary()]
        while self.take("&&"):
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else _And(tuple(operands))

    def parse_unary(self) -> _Expr:
        self.skip_space()
        if self.pos == len(self.text):
            raise self.fail("unexpected end of selector, expected an expression")
        if self.text.startswith("!=", self.pos):
            raise self.fail("expected an expression, found '!='")
        if self.take("!"):
            return _Not(self.parse_unary())
        if self.take("("):
            expr = self.parse_or()
            if not self.take(")"):
                raise self.fail("expected ')'")
            return expr
        if (match := self.take_re(_HAS)) is not None:
            return _Has(match.group(1))
        if self.take_re(_ALL) is not None:
            return _All()
        start = self.pos
        key_match = self.take_re(_KEY)
        if key_match is None:
            raise self.fail("expected a label key, 'has(', 'all()', '!' or '('")
        key = key_match.group(0)
        if key in ("has", "all") and self.text.startswith("(", self.pos):
            raise self.fail(f"malformed {key}(...)", start)
        return self.parse_comparison(key)

    def parse_comparison(self, key: str) -> _Expr:
        if self.take("=="):
            return _Equals(key, self.parse_string())
        if self.take("!="):
            return _NotEquals(key, self.parse_string())
        if self.take_re(_NOT_IN) is not None:
            return _NotIn(key, self.parse_set())
        if self.take_re(_IN) is not None:
            return _In(key, self.parse_set())
        if self.take_re(_CONTAINS) is not None:
            return _Contains(key, self.parse_string())
        if self.take_re(_STARTS_WITH) is not None:
            return _StartsWith(key, self.parse_string())
        if self.take_re(_ENDS_WITH) is not None:
            return _EndsWith(key, self.parse_string())
        raise self.fail(f"expected an operator after label {key!r}")

    def parse_string(self) -> str:
        match = self.take_re(_STRING)
        if match is None:
            raise self.fail("expected a quoted value")
        return match.group(1) if match.group(1) is not None else match.group(2)

    def parse_set(self) -> frozenset[str]:
        if not self.take("{"):
            raise self.fail("expected '{'")
        values: list[str] = []
        if self.take("}"):
            return frozenset()
        values.append(self.parse_string())
        while self.take(","):
            values.append(self.parse_string())
        if not self.take("}"):
            raise self.fail("expected ',' or '}'")
        return frozenset(values)


@functools.lru_cache(maxsize=4096)
def parse_selector(text: str) -> Selector:
    """Parse a Calico selector (cached); raise SelectorError naming the position of a mistake."""
    return Selector(text, _Parser(text).parse())


# ---------------------------------------------------------------------------------------------
# Input


@dataclass(frozen=True)
class SimNode:
    """A node as the simulator sees it: a name, labels, and a cluster ID when it is an RR."""

    name: str
    labels: Mapping[str, str]
    cluster_id: str | None = None

    @property
    def is_reflector(self) -> bool:
        return bool(self.cluster_id)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def nodes_from_objects(nodes: Iterable[Mapping[str, Any]]) -> list[SimNode]:
    """Kubernetes Nodes (or Calico v3 Nodes) → SimNodes sorted by name."""
    result: list[SimNode] = []
    for obj in nodes:
        metadata = _mapping(obj.get("metadata"))
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("node without metadata.name")
        labels = {str(k): str(v) for k, v in _mapping(metadata.get("labels")).items()}
        cluster_id = _mapping(metadata.get("annotations")).get(CLUSTER_ID_ANNOTATION)
        if not cluster_id:  # etcd datastore: Calico Node spec.bgp.routeReflectorClusterID
            bgp = _mapping(_mapping(obj.get("spec")).get("bgp"))
            cluster_id = bgp.get("routeReflectorClusterID")
        result.append(SimNode(name, labels, str(cluster_id) if cluster_id else None))
    return sorted(result, key=lambda node: node.name)


@dataclass(frozen=True)
class Peering:
    name: str
    node: str | None  # spec.node: one node by name
    node_selector: Selector | None  # None with node None: every node (a global peer)
    peer_selector: Selector


def read_peers(peers: Iterable[Mapping[str, Any]]) -> tuple[list[Peering], list[str], int]:
    peerings: list[Peering] = []
    skipped: list[str] = []
    count = 0
    for index, obj in enumerate(peers):
        count += 1
        name = str(_mapping(obj.get("metadata")).get("name") or f"<unnamed #{index}>")
        spec = _mapping(obj.get("spec"))
        kind = obj.get("kind", "BGPPeer")
        if kind != "BGPPeer":
            skipped.append(f"{name}: kind {kind} is not BGPPeer")
            continue
        if spec.get("peerIP"):
            skipped.append(f"{name}: peerIP {spec['peerIP']} is outside the simulation")
            continue
        peer_text = spec.get("peerSelector")
        if not isinstance(peer_text, str) or not peer_text.strip():
            skipped.append(f"{name}: neither peerSelector nor peerIP")
            continue
        node = spec.get("node") or None
        node_text = spec.get("nodeSelector") or ""
        if node is not None and node_text:
            skipped.append(f"{name}: both node and nodeSelector")
            continue
        try:
            peer_selector = parse_selector(peer_text)
            node_selector = parse_selector(node_text) if node_text else None
        except SelectorError as error:
            raise ValueError(f"BGPPeer {name}: {error}") from error
        peerings.append(
            Peering(name, None if node is None else str(node), node_selector, peer_selector)
        )
    return peerings, sorted(skipped), count


# ---------------------------------------------------------------------------------------------
# Sessions


@dataclass(frozen=True)
class Graph:
    """Nodes indexed in name order; explicit sessions; the mesh flag stays implicit (O(n²))."""

    names: tuple[str, ...]
    cluster_ids: tuple[str | None, ...]
    adjacency: tuple[frozenset[int], ...]
    mesh: bool

    def is_reflector(self, node: int) -> bool:
        return self.cluster_ids[node] is not None

    def is_client(self, reflector: int, peer: int) -> bool:
        """Calico marks `peer` an rr client of `reflector` when their cluster IDs differ."""
        return self.cluster_ids[peer] != self.cluster_ids[reflector]


def build_graph(nodes: Iterable[SimNode], peerings: list[Peering], mesh: bool) -> Graph:
    ordered = sorted(nodes, key=lambda node: node.name)
    index: dict[str, int] = {}
    for position, node in enumerate(ordered):
        if node.name in index:
            raise ValueError(f"duplicate node name {node.name!r}")
        index[node.name] = position
    adjacency: list[set[int]] = [set() for _ in ordered]
    matched: dict[Selector, list[int]] = {}
    by_key: dict[str, dict[str, list[int]]] = {}  # label key → value → nodes carrying it

    def carrying(key: str) -> dict[str, list[int]]:
        if key not in by_key:
            values: dict[str, list[int]] = {}
            for i, node in enumerate(ordered):
                value = node.labels.get(key)
                if value is not None:
                    values.setdefault(value, []).append(i)
            by_key[key] = values
        return by_key[key]

    def matching(selector: Selector) -> list[int]:
        if selector not in matched:
            expr = selector.expr
            # the selectors the hooks render (k == 'v', k in {...}) are looked up, not scanned
            if isinstance(expr, _Equals):
                found = carrying(expr.key).get(expr.value, [])
            elif isinstance(expr, _In):
                values = carrying(expr.key)
                found = sorted(i for value in expr.values for i in values.get(value, ()))
            else:
                found = [i for i, n in enumerate(ordered) if selector.matches(n.labels)]
            matched[selector] = found
        return matched[selector]

    for peering in peerings:
        if peering.node is not None:
            local = [index[peering.node]] if peering.node in index else []
        elif peering.node_selector is None:
            local = list(range(len(ordered)))
        else:
            local = matching(peering.node_selector)
        remote = matching(peering.peer_selector)
        for i in local:  # one BGPPeer makes the session from both ends
            adjacency[i].update(remote)
        for j in remote:
            adjacency[j].update(local)
    for i, neighbours in enumerate(adjacency):
        neighbours.discard(i)
    return Graph(
        names=tuple(node.name for node in ordered),
        cluster_ids=tuple(node.cluster_id or None for node in ordered),
        adjacency=tuple(frozenset(neighbours) for neighbours in adjacency),
        mesh=mesh,
    )


@dataclass(frozen=True)
class SessionStats:
    total: int
    per_node_max: int
    per_node_mean: float
    clients_per_rr_max: int
    clients_per_rr_mean: float
    per_rr_max: int
    per_rr_mean: float
    per_client_max: int  # a client: a node that is not an RR
    per_client_mean: float


def session_stats(graph: Graph) -> SessionStats:
    reflectors = [i for i in range(len(graph.names)) if graph.is_reflector(i)]
    plain = len(graph.names) - len(reflectors)
    degrees: list[int] = []
    for i, neighbours in enumerate(graph.adjacency):
        if graph.mesh and not graph.is_reflector(i):  # since Calico 3.21 RRs take no mesh sessions
            degrees.append(plain - 1 + sum(1 for j in neighbours if graph.is_reflector(j)))
        else:
            degrees.append(len(neighbours))
    clients = [sum(1 for j in graph.adjacency[r] if graph.is_client(r, j)) for r in reflectors]
    rr_degrees = [degrees[r] for r in reflectors]
    client_degrees = [d for i, d in enumerate(degrees) if not graph.is_reflector(i)]
    return SessionStats(
        total=sum(degrees) // 2,
        per_node_max=max(degrees, default=0),
        per_node_mean=round(sum(degrees) / len(degrees), 2) if degrees else 0.0,
        clients_per_rr_max=max(clients, default=0),
        clients_per_rr_mean=round(sum(clients) / len(clients), 2) if clients else 0.0,
        per_rr_max=max(rr_degrees, default=0),
        per_rr_mean=_mean(rr_degrees),
        per_client_max=max(client_degrees, default=0),
        per_client_mean=_mean(client_degrees),
    )


def _mean(values: list[int]) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0


# ---------------------------------------------------------------------------------------------
# Propagation
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
class _Outcome:
    unreachable: int
    examples: tuple[str, ...]


_Key = tuple[bool, int]  # (is an RR, core index or class index)


def _evaluate(core: Core, failed: frozenset[int], max_examples: int) -> _Outcome:
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
    return _Outcome(unreachable, examples)


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


# ---------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class VerifyReport:
    """What the simulation found; "a -> b" in examples means node a has no route to node b."""

    nodes: int
    reflectors: int
    bgp_peers: int
    mesh: bool
    sessions_total: int
    sessions_per_node_max: int
    sessions_per_node_mean: float
    clients_per_rr_max: int
    clients_per_rr_mean: float
    sessions_per_rr_max: int
    reachable: bool
    unreachable_pairs: int
    unreachable_examples: tuple[str, ...]
    single_failure_ok: bool | None
    single_failure_examples: tuple[str, ...]
    pair_failure_ok: bool | None
    pair_failure_examples: tuple[str, ...]
    skipped_peers: tuple[str, ...]
    # What the topology that made the plan promises (None: not known, every check counts).
    topology: str | None = None
    pair_failure_promised: bool | None = None

    @property
    def ok(self) -> bool:
        """Every check that was asked for holds, pair failures only where they are promised."""
        return (
            self.reachable
            and self.single_failure_ok is not False
            and (self.pair_failure_ok is not False or self.pair_failure_promised is False)
        )

    def with_promises(self, topology: str, groups: Iterable[Mapping[str, Any]]) -> VerifyReport:
        """This report judged by what `topology` promises for a plan with these status groups."""
        return replace(
            self, topology=topology, pair_failure_promised=pair_failure_promised(topology, groups)
        )

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"ok": self.ok}
        for field in fields(self):
            value = getattr(self, field.name)
            result[field.name] = list(value) if isinstance(value, tuple) else value
        return result


def pair_failure_promised(topology: str, groups: Iterable[Mapping[str, Any]]) -> bool:
    """Every topology promises reachability and any single RR failure; only multi, with at least
    three RRs in every group (peersPerNode >= 3), also promises any two RRs failing at once."""
    sizes = [len(group.get("reflectors", ())) for group in groups]
    return topology == "multi" and bool(sizes) and min(sizes) >= 3


def promises_line(report: VerifyReport) -> str | None:
    if report.topology is None:
        return None
    pairs = "any two RRs failing at once" if report.pair_failure_promised else None
    promised = ["every node reaches every other", "any single RR failure", *filter(None, [pairs])]
    line = f"{report.topology} promises: {'; '.join(promised)}"
    return line if pairs else line + " (not RR pairs)"


def _sweep(core: Core, group_size: int, max_examples: int) -> tuple[bool, tuple[str, ...]]:
    ok = True
    examples: list[str] = []
    for group in itertools.combinations(range(len(core.nodes)), group_size):
        outcome = _evaluate(core, frozenset(group), 1)
        if outcome.unreachable:
            ok = False
            if len(examples) < max_examples:
                down = "+".join(core.graph.names[core.nodes[k]] for k in group)
                examples.append(f"without {down}: {outcome.examples[0]}")
            if len(examples) >= max_examples:
                break  # the verdict is known and the examples are full
    return ok, tuple(examples)


def verify(
    nodes: Iterable[SimNode],
    peers: Iterable[Mapping[str, Any]],
    *,
    mesh: bool = False,
    failures: bool = True,
    pairs: bool = False,
    max_examples: int = 5,
) -> VerifyReport:
    """Simulate route propagation for these nodes and BGPPeers; optionally with RRs failing."""
    peerings, skipped, peer_count = read_peers(peers)
    graph = build_graph(nodes, peerings, mesh)
    stats = session_stats(graph)
    core = Core(graph)
    outcome = _evaluate(core, frozenset(), max_examples)
    single_ok: bool | None = None
    single_examples: tuple[str, ...] = ()
    if failures:
        single_ok, single_examples = _sweep(core, 1, max_examples)
    pair_ok: bool | None = None
    pair_examples: tuple[str, ...] = ()
    if pairs:
        pair_ok, pair_examples = _sweep(core, 2, max_examples)
    return VerifyReport(
        nodes=len(graph.names),
        reflectors=len(core.nodes),
        bgp_peers=peer_count,
        mesh=mesh,
        sessions_total=stats.total,
        sessions_per_node_max=stats.per_node_max,
        sessions_per_node_mean=stats.per_node_mean,
        clients_per_rr_max=stats.clients_per_rr_max,
        clients_per_rr_mean=stats.clients_per_rr_mean,
        sessions_per_rr_max=stats.per_rr_max,
        reachable=outcome.unreachable == 0,
        unreachable_pairs=outcome.unreachable,
        unreachable_examples=outcome.examples,
        single_failure_ok=single_ok,
        single_failure_examples=single_examples,
        pair_failure_ok=pair_ok,
        pair_failure_examples=pair_examples,
        skipped_peers=tuple(skipped),
    )


def _check_line(
    title: str, ok: bool | None, examples: tuple[str, ...], checked: int, unpromised: str = ""
) -> str:
    if ok is None:
        return f"{title}: not checked"
    if ok:
        return f"{title}: tolerated ({checked} checked)"
    if unpromised:
        return f"{title}: cuts nodes off (not promised by {unpromised}), e.g. " + "; ".join(
            examples
        )
    return f"{title}: BREAKS ROUTING, e.g. " + "; ".join(examples)


def format_report(report: VerifyReport) -> str:
    """A few lines for people: the verdict, the sessions, each check and its first failures."""
    r = report.reflectors
    lines = [
        f"verify: {'OK' if report.ok else 'FAILED'}",
        f"nodes {report.nodes} ({r} route reflectors), BGPPeers {report.bgp_peers}"
        f" ({len(report.skipped_peers)} skipped),"
        f" node-to-node mesh {'on' if report.mesh else 'off'}",
        f"sessions {report.sessions_total}; per node max {report.sessions_per_node_max},"
        f" mean {report.sessions_per_node_mean}; per RR max {report.sessions_per_rr_max},"
        f" clients per RR max {report.clients_per_rr_max}, mean {report.clients_per_rr_mean}",
        "reachability: every node learns every other node's route"
        if report.reachable
        else f"reachability: {report.unreachable_pairs} pairs without a route"
        f" (a -> b: a has no route to b), e.g. " + ", ".join(report.unreachable_examples),
        _check_line(
            "single RR failure", report.single_failure_ok, report.single_failure_examples, r
        ),
        _check_line(
            "RR pair failure",
            report.pair_failure_ok,
            report.pair_failure_examples,
            r * (r - 1) // 2,
            report.topology or "" if report.pair_failure_promised is False else "",
        ),
    ]
    promises = promises_line(report)
    if promises is not None:
        lines.insert(1, promises)
    lines.extend(f"skipped BGPPeer {line}" for line in report.skipped_peers)
    return "\n".join(lines)
