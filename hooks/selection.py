"""Which nodes may be route reflectors, how many each zone needs, and which are chosen (stably)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from hooks.config import Settings
from hooks.model import NodeInfo, ZoneSummary

# Taints that mean the node is not fit to carry BGP sessions for others, tolerated or not.
UNFIT_TAINTS = frozenset(
    {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/network-unavailable",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/unschedulable",
        "node.cloudprovider.kubernetes.io/uninitialized",
    }
)


def ineligibility(node: NodeInfo, settings: Settings) -> str | None:
    """Why `node` may not be an RR, or None when it may."""
    if node.deleting:
        return "being deleted"
    if not node.ready:
        return "not Ready"
    if node.unschedulable:
        return "cordoned"
    for taint in node.taints:
        if taint.key in UNFIT_TAINTS:
            return f"tainted {taint.key}"
        if taint.effect in ("NoSchedule", "NoExecute") and not any(
            t.tolerates(taint.key, taint.value, taint.effect) for t in settings.tolerations
        ):
            return f"untolerated taint {taint.key}:{taint.effect}"
    for match in settings.incompatible_labels:
        if match.matches(node.labels):
            return f"incompatible label {match}"
    if settings.node_selector is not None and not settings.node_selector.matches(node.labels):
        return "outside nodeSelector"
    return None


def unmatched_labels(nodes: Sequence[NodeInfo], settings: Settings) -> tuple[tuple[str, str], ...]:
    """(setting, label key) for each configured label the plan reads that no node carries: a typo
    that would otherwise pass silently (every node in one zone, no rack RRs)."""
    keys = [("zoneLabel", settings.zone_label)]
    if settings.topology == "hierarchy":
        keys.append(("rackLabel", settings.rack_label))
    return tuple(
        (name, key)
        for name, key in keys
        if key and nodes and not any(key in node.labels for node in nodes)
    )


def is_failed(node: NodeInfo | None) -> bool:
    """A failure (replace at once), as opposed to a node that merely stopped being eligible."""
    return node is None or node.deleting or not node.ready


def zone_of(node: NodeInfo, settings: Settings) -> str:
    return node.labels.get(settings.zone_label, "") if settings.zone_label else ""


def demand(ready: int, settings: Settings) -> int:
    """RRs a zone with `ready` ready nodes needs: f(ready) clamped to [min, max], 0 when none."""
    if ready <= 0:
        return 0
    if settings.steps:
        wanted = settings.min
        for step in settings.steps:
            if step.nodes <= ready:
                wanted = step.reflectors
        return max(settings.min, min(settings.max, wanted))
    return max(settings.min, min(settings.max, math.ceil(ready * settings.ratio - 1e-9)))


@dataclass(frozen=True, slots=True)
class Choice:
    node: str
    zone: str  # where the node is
    serves: str  # the zone whose clients it serves (differs after spill-over)


@dataclass(frozen=True, slots=True)
class Selection:
    choices: tuple[Choice, ...]  # sorted by node name
    zones: tuple[ZoneSummary, ...]  # sorted by zone name; `actual` not yet known (0)
    shortfall: int  # RRs demanded that no eligible node anywhere could take


def is_preferred(node: NodeInfo, settings: Settings) -> bool:
    return any(match.matches(node.labels) for match in settings.preferred_labels)


def select_reflectors(
    nodes: Sequence[NodeInfo],
    settings: Settings,
    current: Mapping[str, str],
) -> Selection:
    """Choose RRs per zone. `current` maps today's RRs to the zone each serves.

    Current RRs that are still eligible are kept (serving the same zone), then the best-ranked
    candidates are added: preferred labels, oldest, name; an RR serving another zone only as a
    last resort. Same input, same output.
    """
    census = _Census.of(nodes, settings)
    names = sorted(census.by_zone)
    wanted = {zone: demand(census.ready.get(zone, 0), settings) for zone in names}
    picker = _Picker(census.candidates, settings, current)
    short: dict[str, int] = {}
    for zone in names:
        got = picker.take(zone, zone, wanted[zone])
        if got < wanted[zone]:
            short[zone] = wanted[zone] - got
    shortfall = _spill(short, names, census.candidates, picker)
    zones = tuple(
        ZoneSummary(
            name=zone,
            nodes=len(census.by_zone[zone]),
            ready=census.ready.get(zone, 0),
            eligible=len(census.candidates.get(zone, [])),
            demand=wanted[zone],
            expected=picker.placed.get(zone, 0),
        )
        for zone in names
    )
    taken = picker.taken
    return Selection(tuple(taken[name] for name in sorted(taken)), zones, shortfall)


@dataclass
class _Census:
    """One pass over the nodes: each zone's nodes, its Ready count and its eligible nodes."""

    by_zone: dict[str, list[NodeInfo]]
    ready: dict[str, int]
    candidates: dict[str, list[NodeInfo]]

    @classmethod
    def of(cls, nodes: Sequence[NodeInfo], settings: Settings) -> _Census:
        census = cls({}, {}, {})
        for node in nodes:
            zone = zone_of(node, settings)
            census.by_zone.setdefault(zone, []).append(node)
            if node.ready and not node.deleting:
                census.ready[zone] = census.ready.get(zone, 0) + 1
            if ineligibility(node, settings) is None:
                census.candidates.setdefault(zone, []).append(node)
        return census


class _Picker:
    """Takes the best-ranked candidates of a zone, remembering what is taken and placed where."""

    def __init__(
        self,
        candidates: Mapping[str, list[NodeInfo]],
        settings: Settings,
        current: Mapping[str, str],
    ) -> None:
        prefer = settings.preferred_labels
        # One sort per zone by the base rank; today's RRs are few and go first (serving the
        # same zone first), so ranking never has to look at every candidate again.
        self.order = {
            zone: sorted(
                pool,
                key=lambda n: (bool(prefer) and not is_preferred(n, settings), n.created, n.name),
            )
            for zone, pool in candidates.items()
        }
        self.kept = {
            zone: [n for n in pool if n.name in current] for zone, pool in self.order.items()
        }
        self.current = current
        self.taken: dict[str, Choice] = {}
        self.placed: dict[str, int] = {}

    def ranked(self, zone: str, serves: str) -> Iterator[NodeInfo]:
        mine = self.kept.get(zone, [])
        current = self.current
        # An RR serving another zone comes last: taking it over would change its cluster ID
        # (a session reset) and leave the zone it served short in the same step.
        yield from (n for n in mine if current[n.name] == serves)
        yield from (n for n in self.order.get(zone, []) if n.name not in current)
        yield from (n for n in mine if current[n.name] != serves)

    def keep_helpers(self, serves: str, count: int) -> int:
        """Up to `count` of today's RRs in other zones that serve `serves` and are still
        eligible and free, kept serving it (zones by name, each in rank order); how many."""
        got = 0
        for zone in sorted(self.kept):
            for node in self.kept[zone]:
                if got == count:
                    return got
                if zone != serves and self.current[node.name] == serves:
                    got += self._place(node, zone, serves)
        return got

    def _place(self, node: NodeInfo, zone: str, serves: str) -> int:
        """Take `node` for the clients of `serves`: 1, or 0 when it is already taken."""
        if node.name in self.taken:
            return 0
        self.taken[node.name] = Choice(node.name, zone, serves)
        self.placed[zone] = self.placed.get(zone, 0) + 1
        return 1

    def take(self, zone: str, serves: str, count: int) -> int:
        """Up to `count` more RRs from `zone` for the clients of `serves`; how many it took."""
        got = 0
        for node in self.ranked(zone, serves):
            if got == count:
                break
            got += self._place(node, zone, serves)
        return got


def _spill(
    short: Mapping[str, int],
    names: Sequence[str],
    candidates: Mapping[str, list[NodeInfo]],
    picker: _Picker,
) -> int:
    """Each RR a zone is short of: first today's spill-over RRs serving it, still eligible
    (a node joining elsewhere must not move them: that would change two cluster IDs and
    relabel their clients); the rest taken from the zone with the most spare eligible nodes
    (then by name). Returns how many no zone could give."""
    shortfall = 0
    placed = picker.placed
    missing = {zone: short[zone] - picker.keep_helpers(zone, short[zone]) for zone in sorted(short)}
    for zone in sorted(missing):
        for _ in range(missing[zone]):
            spare = [
                (len(candidates.get(other, [])) - placed.get(other, 0), other)
                for other in names
                if other != zone and len(candidates.get(other, [])) > placed.get(other, 0)
            ]
            if not spare:
                shortfall += 1
                continue
            _, recipient = min(spare, key=lambda item: (-item[0], item[1]))
            picker.take(recipient, zone, 1)
    return shortfall
