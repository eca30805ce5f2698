"""What the plan table and the picture both show of a plan: the summary, the zone rows, each
zone's RRs; each renders them in its own medium (text, HTML)."""

from __future__ import annotations

import re
from typing import Final

from hooks.wire import ConditionStatusWire, TopologyStatusWire, ZoneStatusWire

__all__ = [
    "ZONE_COUNTS",
    "ZONE_HEADER",
    "natural",
    "not_ready_message",
    "reflector_entries",
    "summary_facts",
    "zone_cells",
    "zone_label",
]

ZONE_HEADER: Final = ("ZONE", "NODES", "READY", "ELIGIBLE", "DEMAND", "RRS")
ZONE_COUNTS: Final = ("nodes", "ready", "eligible", "demand", "expected")


def natural(text: str) -> tuple[tuple[int, int, str], ...]:
    """A sort key that puts g-2 before g-10; ties fall back to the text itself."""
    parts = re.split(r"(\d+)", text)
    return (*((1, int(p), "") if p.isdigit() else (0, 0, p) for p in parts), (2, 0, text))


def zone_label(name: str) -> str:
    """A zone's name as shown: the zone of nodes without the label is `""`."""
    return name or '""'


def _ready(status: TopologyStatusWire) -> ConditionStatusWire | None:
    return next((c for c in status.conditions if c.type == "Ready"), None)


def summary_facts(status: TopologyStatusWire, bgp_peers: int) -> list[str]:
    """`N route reflectors`, `M BGPPeers`, `Ready=<status> (<reason>)`."""
    ready = _ready(status)
    return [
        f"{status.reflectors} route reflectors",
        f"{bgp_peers} BGPPeers",
        f"Ready={ready.status if ready else '?'} ({ready.reason if ready else ''})",
    ]


def not_ready_message(status: TopologyStatusWire) -> str | None:
    """Why the plan is not Ready, when it is not and says why."""
    ready = _ready(status)
    return ready.message if ready and ready.status != "True" and ready.message else None


def zone_cells(zone: ZoneStatusWire) -> tuple[str, ...]:
    """One zone's row under ZONE_HEADER."""
    return (zone_label(zone.name), *(str(getattr(zone, k)) for k in ZONE_COUNTS))


def reflector_entries(status: TopologyStatusWire, zone: str) -> list[tuple[str, list[str]]]:
    """A zone's RRs as (what they are, their names): RRs sharing a cluster ID and role together
    (`spine 224.0.0.1`, `rack r7 224.0.0.9`, `224.0.0.1` in simple); RRs of a cluster ID of
    their own (multi) in one entry of `name (ID)`. Not Active: `name [Pending]`."""
    grouped: dict[tuple[int, str, str], list[str]] = {}
    for rr in status.routeReflectors:
        if rr.zone != zone:
            continue
        role, serves, cid = rr.role, rr.serves, rr.clusterID
        if role == "spine":
            key = (0, "spine", cid)
        elif role == "rack":
            key = (1, f"rack {serves}", cid)
        elif serves is not None:
            key = (2, f"serving {serves or chr(34) * 2}", cid)
        else:
            key = (2, "", cid)
        state = rr.state
        grouped.setdefault(key, []).append(rr.node + ("" if state == "Active" else f" [{state}]"))
    entries: list[tuple[str, list[str]]] = []
    alone: list[str] = []
    for (_, what, cid), names in sorted(
        grouped.items(), key=lambda item: (item[0][0], natural(item[0][1]), natural(item[0][2]))
    ):
        if len(names) == 1 and not what:
            alone.append(f"{names[0]} ({cid})")
        else:
            entries.append((f"{what} {cid}".strip(), names))
    return entries + ([("", alone)] if alone else [])
