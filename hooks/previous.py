"""What was there before a sync, in the problem's words: the last plan (read back from status
once, at the edge: hooks/observed.py) and what the nodes carry now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hooks.config import Settings
from hooks.model import Group, NodeInfo, ReflectorState, RouteReflector
from hooks.selection import zone_of


@dataclass(frozen=True)
class Previous:
    """What the last sync decided (from status) and what the nodes carry now (from labels)."""

    reflectors: Mapping[str, RouteReflector] = field(default_factory=dict)
    groups: tuple[Group, ...] = ()
    labelled: Mapping[str, str] = field(default_factory=dict)  # node → cluster ID it carries
    # The last plan's groups that no node is labelled with any more (their clients moved).
    unlabelled_groups: frozenset[str] = frozenset()
    ready: int = 0  # nodes Ready at the last sync (its zone figures), for the guard

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

    def planes(self) -> dict[str, int]:
        """RR → the plane it was on (hooks/topologies/planes.py)."""
        return {node: rr.plane for node, rr in self.reflectors.items() if rr.plane}

    def hubs(self) -> dict[int, str]:
        """Plane → its hub, for hubs that were Active or Pending (new, or restarting for a
        new cluster ID): a hub stays while it is one of those, not when it drains or fails."""
        return {
            rr.plane: node
            for node, rr in sorted(self.reflectors.items())
            if rr.hub and rr.plane and rr.state in (ReflectorState.ACTIVE, ReflectorState.PENDING)
        }

    def held_ids(self) -> set[str]:
        return {rr.cluster_id for rr in self.reflectors.values() if rr.cluster_id}

    def cluster_id(self, node: str) -> str | None:
        rr = self.reflectors.get(node)
        return rr.cluster_id if rr and rr.cluster_id else self.labelled.get(node)

    def cluster_of(self, node: str) -> str:
        """The cluster `node` was in: the ID it is changing to while a roll waits for its
        turn, else the one it carries ("" for none). Mid-roll a cluster's RRs carry two IDs;
        keyed by what they carry, the cluster would be cut in two and re-formed."""
        rr = self.reflectors.get(node)
        if rr is not None and rr.next_cluster_id:
            return rr.next_cluster_id
        return self.cluster_id(node) or ""
