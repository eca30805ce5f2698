"""Pieces every topology shares: per-zone figures and the problems a selection reports."""

from __future__ import annotations

from collections.abc import Sequence

from hooks.config import Settings
from hooks.model import Condition, NodeInfo, ZoneSummary
from hooks.selection import Selection, zone_of
from hooks.topologies import Previous


def zone_summaries(
    selection: Selection, nodes: Sequence[NodeInfo], settings: Settings, previous: Previous
) -> tuple[ZoneSummary, ...]:
    need_annotation = settings.datastore != "etcdv3"
    actual: dict[str, int] = {}
    for node in nodes:
        carried = previous.labelled.get(node.name)
        if carried is not None and (carried or not need_annotation):
            zone = zone_of(node, settings)
            actual[zone] = actual.get(zone, 0) + 1
    return tuple(
        ZoneSummary(
            name=zone.name,
            nodes=zone.nodes,
            ready=zone.ready,
            eligible=zone.eligible,
            demand=zone.demand,
            expected=zone.placed,
            actual=actual.get(zone.name, 0),
        )
        for zone in selection.zones
    )


def selection_problems(selection: Selection) -> tuple[Condition, ...]:
    if not selection.shortfall:
        return ()
    short = [z.name or '""' for z in selection.zones if z.demand > z.placed]
    return (
        Condition(
            "Degraded",
            "True",
            "InsufficientEligibleNodes",
            f"{selection.shortfall} route reflector(s) demanded but no eligible node is left"
            f" in any zone (zones short of their own: {', '.join(short)})",
        ),
    )
