"""Pieces every topology shares: the refusal, cluster-ID assignment, per-zone figures, the
problems a selection reports and the plan of RRs joined by planes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from hooks.config import ClusterIDTemplate, Settings
from hooks.model import (
    Clients,
    Condition,
    Group,
    NodeInfo,
    Peering,
    Plan,
    Reflectors,
    RouteReflector,
    Topology,
    ZoneSummary,
)
from hooks.previous import Previous
from hooks.selection import Choice, Selection, zone_of
from hooks.topologies.planes import choose_hubs, on_planes, plane_peerings, planes_of


class PlanError(Exception):
    """The settings cannot give a sound plan (e.g. too few cluster IDs): nothing is changed."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field


def served_elsewhere(choice: Choice) -> str | None:
    return choice.serves if choice.serves != choice.zone else None


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


def reflector_sort(reflectors: Iterable[RouteReflector]) -> tuple[RouteReflector, ...]:
    return tuple(sorted(reflectors, key=lambda rr: rr.node))


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
    return tuple(replace(zone, actual=actual.get(zone.name, 0)) for zone in selection.zones)


def selection_problems(selection: Selection) -> tuple[Condition, ...]:
    if not selection.shortfall:
        return ()
    short = [z.name or '""' for z in selection.zones if z.demand > z.expected]
    return (
        Condition(
            "Degraded",
            "True",
            "InsufficientEligibleNodes",
            f"{selection.shortfall} route reflector(s) demanded but no eligible node is left"
            f" in any zone (zones short of their own: {', '.join(short)})",
        ),
    )


def client_peerings(groups: Sequence[Group]) -> list[Peering]:
    """One BGPPeer per group: its clients (by label) with its RRs."""
    return [Peering(f"clients-{g.name}", Clients(g.name), Reflectors(g.reflectors)) for g in groups]


def serving_zones(selection: Selection) -> dict[str, list[str]]:
    """The zone each chosen RR serves → those RRs, in node-name order."""
    serving: dict[str, list[str]] = {}
    for choice in selection.choices:
        serving.setdefault(choice.serves, []).append(choice.node)
    return serving


def plane_plan(
    topology: Topology,
    reflectors: tuple[RouteReflector, ...],
    clusters: Sequence[tuple[str, Sequence[str]]],
    groups: Sequence[Group],
    selection: Selection,
    nodes: Sequence[NodeInfo],
    settings: Settings,
    previous: Previous,
) -> Plan:
    """A plan whose RRs form `clusters` (one cluster ID each, meshed inside) joined by planes
    (hooks/topologies/planes.py), and whose clients peer by group."""
    planes = planes_of([members for _, members in clusters], previous.planes())
    hubs = choose_hubs(planes, {rr.node: rr.zone for rr in reflectors}, previous.hubs())
    return Plan(
        topology=topology,
        reflectors=on_planes(reflectors, planes, hubs),
        groups=tuple(sorted(groups, key=lambda g: g.name)),
        zones=zone_summaries(selection, nodes, settings, previous),
        peerings=tuple(plane_peerings(clusters, hubs, planes) + client_peerings(groups)),
        problems=selection_problems(selection),
    )
