"""Rendezvous (highest-random-weight) choices: which group a client peers with, which RRs a
set takes; removing an item only moves what it had won."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from hooks.model import Group


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
