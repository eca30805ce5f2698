"""The topologies behind one interface: nodes + settings + what was there before → a Plan."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hooks.config import ClusterIDTemplate, Settings
from hooks.legacy import carries_reflector_label
from hooks.model import Group, NodeInfo, Plan, RouteReflector
from hooks.selection import Choice, zone_of
from hooks.wire import CLUSTER_ID_ANNOTATION, GroupWire, ReflectorWire


class PlanError(Exception):
    """The settings cannot give a sound plan (e.g. too few cluster IDs): nothing is changed."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Previous:
    """What the last sync decided (from status) and what the nodes carry now (from labels)."""

    reflectors: Mapping[str, ReflectorWire] = field(default_factory=dict)
    groups: Sequence[GroupWire] = ()
    labelled: Mapping[str, str] = field(default_factory=dict)  # node → cluster ID it carries

    def served_zone(self, node: str) -> str | None:
        rr = self.reflectors.get(node)
        return rr.served() if rr else None

    def serving(self, nodes: Iterable[NodeInfo], settings: Settings) -> dict[str, str]:
        """Today's RRs → the zone each serves; labelled nodes not in status serve their own."""
        current = {node: rr.served() for node, rr in self.reflectors.items()}
        for node in nodes:
            if node.name in self.labelled and node.name not in current:
                current[node.name] = zone_of(node, settings)
        return current

    def held_ids(self) -> set[str]:
        return {rr.clusterID for rr in self.reflectors.values() if rr.clusterID}

    def cluster_id(self, node: str) -> str | None:
        rr = self.reflectors.get(node)
        return rr.clusterID if rr and rr.clusterID else self.labelled.get(node)


def served_elsewhere(choice: Choice) -> str | None:
    return choice.serves if choice.serves != choice.zone else None


def labelled_reflectors(nodes: Iterable[NodeInfo], settings: Settings) -> dict[str, str]:
    """Nodes carrying the RR label now (or the original operator's form of it), with the
    cluster ID annotation they carry ("" if none)."""
    key, value = settings.reflector_label
    return {
        node.name: node.annotations.get(CLUSTER_ID_ANNOTATION, "")
        for node in nodes
        if carries_reflector_label(node.labels, key, value)
    }


def assign_cluster_ids(
    keys: Sequence[str],
    previous: Mapping[str, str],
    template: ClusterIDTemplate,
    held: Iterable[str] = (),
) -> dict[str, str]:
    """One ID per key: the previous one when it still fits the template and is free, else the
    lowest free index not `held` by an RR that may still be draining (while the template has
    room). Raises PlanError when the template has too few IDs."""
    assigned: dict[str, str] = {}
    used: set[int] = set()
    for key in keys:
        old = previous.get(key)
        index = template.index_of(old) if old else None
        if index is not None and index not in used:
            assigned[key] = template.format(index)
            used.add(index)
    if len(keys) > template.capacity:
        raise PlanError(
            "ClusterIDsExhausted",
            f"the topology needs {len(keys)} cluster IDs but the template {template.template!r}"
            f" gives {template.capacity}; add a `%d` (e.g. 10.%d.%d.1)",
            "spec.clusterID",
        )
    avoid = {template.index_of(cid) for cid in held} - {None}
    if len(keys) + len(avoid - used) > template.capacity:
        avoid = set()
    free = (i for i in range(template.capacity) if i not in used and i not in avoid)
    for key in keys:
        if key not in assigned:
            assigned[key] = template.format(next(free))
    return assigned


def weight(key: str, item: str) -> int:
    """The rendezvous weight of `item` for `key`: every rendezvous choice ranks by this."""
    return int.from_bytes(hashlib.blake2b(f"{item}\0{key}".encode(), digest_size=8).digest(), "big")


def rendezvous_top(key: str, items: Iterable[str], count: int) -> list[str]:
    """The `count` items ranking highest for `key`: removing one item only changes the sets it
    was in (the next item moves up), so memberships built this way churn minimally."""
    return sorted(items, key=lambda item: (-weight(key, item), item))[:count]


def rendezvous(node: str, groups: Sequence[Group]) -> Group | None:
    """Highest-random-weight choice: adding a group moves only the nodes it wins."""
    return max(groups, key=lambda group: (weight(node, group.name), group.name), default=None)


def group_for(node: str, zone: str, rack: str, groups: Sequence[Group]) -> Group | None:
    """The group a client peers with: by rack where groups have racks (the rackless group, the
    spine, otherwise), else by zone, else any."""
    if any(g.rack is not None for g in groups):
        in_rack = [g for g in groups if g.rack == rack] if rack else []
        return rendezvous(node, in_rack or [g for g in groups if g.rack is None] or groups)
    in_zone = [g for g in groups if g.zone == zone]
    return rendezvous(node, in_zone or groups)


Builder = Callable[[Sequence[NodeInfo], Settings, Previous], Plan]


def builder_for(settings: Settings) -> Builder:
    from hooks.topologies import hierarchy, multi, quorum, simple

    builders: dict[str, Builder] = {
        "simple": simple.build,
        "multi": multi.build,
        "quorum": quorum.build,
        "hierarchy": hierarchy.build,
    }
    return builders[settings.topology]


def reflector_sort(reflectors: Iterable[RouteReflector]) -> tuple[RouteReflector, ...]:
    return tuple(sorted(reflectors, key=lambda rr: rr.node))
