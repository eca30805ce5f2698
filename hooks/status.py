"""The topology's status: the plan as status shows it, and its conditions (Ready, Degraded,
LabelsMatched, Flux's Reconciling/Stalled), each kept since its last change. Every reader (the
next sync, the node hook, plan's table and picture) reads it back as one typed struct,
`wire.TopologyStatusWire`."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import replace
from datetime import datetime
from typing import Any

import msgspec

from hooks.model import Condition, Plan, ReflectorState, RouteReflector
from hooks.stamps import stamp
from hooks.wire import (
    ConditionStatusWire,
    DatastoreStatusWire,
    GroupWire,
    LegacyOperatorWire,
    ReflectorWire,
    TopologyStatusWire,
    ZoneStatusWire,
)

LABELS_CONDITION = "LabelsMatched"


# Failures a person must fix (the spec, a second topology, a too-small cluster-ID template):
# Flux's and kstatus' `Stalled`. Everything else that is not yet Ready is still moving.
STALLED_REASONS = frozenset({"InvalidSpec", "Superseded", "ClusterIDsExhausted"})
RECONCILING_REASONS = frozenset(
    {"TransitionPending", "LabelsPending", "LegacyLabelsPending", "GuardTripped", "Releasing"}
)


def _progress(wanted: list[Condition]) -> list[Condition]:
    """Flux-style `Reconciling`/`Stalled`, present only while True (kstatus' abnormal-true
    conditions), derived from Ready so the two can never disagree."""
    ready = next((c for c in wanted if c.type == "Ready"), None)
    if ready is None or ready.status == "True":
        return []
    if ready.reason in STALLED_REASONS:
        return [Condition("Stalled", "True", ready.reason, ready.message)]
    if ready.reason in RECONCILING_REASONS:
        return [Condition("Reconciling", "True", ready.reason, ready.message)]
    return []


def render_conditions(
    wanted: list[Condition], previous: list[ConditionStatusWire], now: datetime, generation: int
) -> list[ConditionStatusWire]:
    """Conditions with lastTransitionTime kept unless the condition's status changed, each
    stamped with the generation of the spec it was computed from (GitOps tools compare it
    with metadata.generation to tell a fresh verdict from a stale one)."""
    before = {c.type: c for c in previous}
    now_stamp = stamp(now)
    rendered: list[ConditionStatusWire] = []
    for condition in sorted(wanted + _progress(wanted), key=lambda c: c.type):
        old = before.get(condition.type)
        since = (
            old.lastTransitionTime
            if old and old.status == condition.status and old.lastTransitionTime
            else now_stamp
        )
        rendered.append(
            ConditionStatusWire(
                condition.type,
                condition.status,
                condition.reason,
                condition.message,
                since,
                generation,
            )
        )
    return rendered


def _reflector(rr: RouteReflector) -> ReflectorWire:
    """One RR as status lists it (what is default there is left out)."""
    identity = (rr.node, rr.zone, rr.cluster_id, str(rr.state))
    return ReflectorWire(
        *identity, rr.role, rr.serves, rr.since, rr.plane, rr.hub, rr.next_cluster_id
    )


def plan_status(
    plan: Plan,
    conditions: list[ConditionStatusWire],
    bgp_peers: int,
    datastore: DatastoreStatusWire | msgspec.UnsetType = msgspec.UNSET,
    legacy: LegacyOperatorWire | msgspec.UnsetType = msgspec.UNSET,
) -> TopologyStatusWire:
    """The status of a plan, with its conditions, its BGPPeer count, and what the etcd applier
    and the original operator's leftovers add (only when there is something to add)."""
    return TopologyStatusWire(
        topology=plan.topology,
        reflectors=len(plan.reflectors),
        zoneCount=len(plan.zones),
        routeReflectors=[_reflector(rr) for rr in plan.reflectors],
        zones=[
            ZoneStatusWire(z.name, z.nodes, z.ready, z.eligible, z.demand, z.expected, z.actual)
            for z in plan.zones
        ],
        groups=[
            GroupWire(g.name, g.zone, list(g.reflectors), g.rack or "", g.retiring_since)
            for g in plan.groups
        ],
        datastore=datastore,
        bgpPeers=bgp_peers,
        legacyOperator=legacy,
        conditions=conditions,
    )


def status_document(status: TopologyStatusWire | list[ConditionStatusWire]) -> Any:
    """A status (or its conditions) as the response carries it: plain JSON values, the fields
    in declaration order, what is UNSET or (in reflectors and groups) default left out."""
    return msgspec.to_builtins(status)


def _fragile_groups(plan: Plan) -> list[Condition]:
    """A group with one RR cuts its clients off when that RR fails: the topology cannot be
    verified failure tolerant (too few eligible nodes, or min below 2)."""
    single = [g.name for g in plan.groups if len(g.reflectors) < 2 and not g.retiring_since]
    if not single:
        return []
    return [
        Condition(
            "Degraded",
            "True",
            "TopologyUnverified",
            f"group(s) {', '.join(single)} have a single route reflector: its failure would cut"
            " their clients off (raise min, or make more nodes eligible)",
        )
    ]


def degraded_conditions(plan: Plan) -> list[Condition]:
    """Every Degraded problem of a plan, the most telling first (status shows that one)."""
    return [c for c in plan.problems if c.type == "Degraded"] + _fragile_groups(plan)


def plan_warnings(plan: Plan) -> list[Condition]:
    """What `plan` warns about: labels that match no node, then every Degraded problem."""
    return [c for c in plan.problems if c.type == LABELS_CONDITION] + degraded_conditions(plan)


PAUSED = Condition(
    "Ready", "False", "Paused", "spec.paused: the plan is computed and reported, nothing is applied"
)


def plan_conditions(
    plan: Plan, paused: bool, carried: Mapping[str, str], legacy_valued: Set[str]
) -> list[Condition]:
    """Degraded (the most telling problem), LabelsMatched, and Ready: Paused, or where the plan
    stands against the RR labels the nodes carry (`carried`: node → cluster ID) and the RRs
    still carrying the original operator's label value (`legacy_valued`)."""
    degraded = degraded_conditions(plan)
    conditions = degraded[:1] or [Condition("Degraded", "False", "AsExpected", "no problem found")]
    conditions += [c for c in plan.problems if c.type == LABELS_CONDITION]
    return [*conditions, PAUSED if paused else _readiness(plan, carried, legacy_valued)]


def _readiness(plan: Plan, carried: Mapping[str, str], legacy_valued: Set[str]) -> Condition:
    transition = [c for c in plan.problems if c.reason == "TransitionPending"]
    wanted = {rr.node: rr.cluster_id for rr in plan.reflectors}
    pending = [rr.node for rr in plan.reflectors if rr.state == ReflectorState.PENDING]
    if transition:
        return replace(transition[0], type="Ready", status="False")
    if pending:
        waiting = f"waiting for BGP sessions of {', '.join(pending)}"
        return Condition("Ready", "False", "TransitionPending", waiting)
    if not plan.reflectors:
        return Condition(
            "Ready", "False", "NoReflectors", "no node is ready to be a route reflector"
        )
    if carried == wanted and legacy_valued:
        return Condition(
            "Ready",
            "False",
            "LegacyLabelsPending",
            f"{len(legacy_valued)} route reflector(s) still carry the original"
            " operator's label value (its BGPPeers select them) until ours carry every session",
        )
    if carried == wanted:
        actual = sum(z.actual for z in plan.zones)
        hierarchy = (
            " (hierarchy: 2 per rack and a spine of max(2, min); ratio and max do not apply)"
            if plan.topology == "hierarchy"
            else ""
        )
        converged = f"{actual} route reflector(s) in {len(plan.zones)} zone(s){hierarchy}"
        return Condition("Ready", "True", "Converged", converged)
    carrying = sum(carried.get(node) == cid for node, cid in wanted.items())
    stale = carried.keys() - wanted.keys()
    return Condition(
        "Ready",
        "False",
        "LabelsPending",
        f"{carrying} of {len(plan.reflectors)} planned route reflectors carry their labels"
        + (f"; not planned but still labelled: {', '.join(sorted(stale))}" if stale else ""),
    )
