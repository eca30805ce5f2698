"""The four hook functions: request model in, response model out, no I/O, the clock a parameter."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any

import msgspec

from hooks.calico import (
    GROUP_LABEL,
    OWNER_LABEL,
    PREVIOUS_GROUP_LABEL,
    REFLECTOR_LABEL,
    label_value,
    name_part,
    node_changes,
    reflector_token,
    render_bgp_peers,
)
from hooks.config import ENVIRONMENT, Settings, SpecError, load_settings
from hooks.legacy import LegacyPeer, carries_reflector_label, find_legacy_peers, is_legacy_value
from hooks.model import Condition, Group, NodeInfo, Plan, ReflectorState
from hooks.observed import previous_from
from hooks.selection import unmatched_labels, zone_of
from hooks.sessions import SimNode
from hooks.stamps import stamp
from hooks.topologies import PlanError, builder_for, group_for
from hooks.transitions import (
    Sessions,
    apply_transitions,
    guard_holds,
    guard_tripped,
    trusted_since,
)
from hooks.wire import (
    BGPPEER_API,
    BGPPEER_KEY,
    CLUSTER_ID_ANNOTATION,
    MANAGED_ANNOTATION,
    NODESTATUS_KEY,
    TOPOLOGY_API,
    BadRequest,
    ConditionStatusWire,
    CustomizeRequest,
    CustomizeResponse,
    NodeSyncRequest,
    NodeSyncResponse,
    TopologyFinalizeResponse,
    TopologyStatusWire,
    TopologySyncRequest,
    TopologySyncResponse,
    decode_bgp_peers,
    decode_nodes,
    decode_topologies,
    read_status,
    wire_path,
    without_path,
)

Environ = Mapping[str, str]
GUARD_RESYNC_SECONDS = 30.0
RELEASE_RESYNC_SECONDS = 10.0
# The finalize hook's answer in etcdv3 mode when it has just turned the mesh back on.
MESH_RESTORED = Condition(
    "Ready",
    "False",
    "RestoringMesh",
    "being deleted: the node-to-node mesh this topology switched off is back on; the route"
    " reflector keys are released on the next call, once its sessions are up",
)


def topology_customize(request: CustomizeRequest) -> CustomizeResponse:
    """The topology controller sees every Node, and its sibling topologies (to detect a second)."""
    return CustomizeResponse(
        relatedResources=[
            {"apiVersion": "v1", "resource": "nodes", "labelSelector": {}},
            {
                "apiVersion": TOPOLOGY_API,
                "resource": "routereflectortopologies",
                "labelSelector": {},
            },
            # BGPPeers that are not ours: the original operator's are taken over from these.
            {
                "apiVersion": BGPPEER_API,
                "resource": "bgppeers",
                "labelSelector": {
                    "matchExpressions": [{"key": OWNER_LABEL, "operator": "DoesNotExist"}]
                },
            },
        ]
    )


def node_customize(request: CustomizeRequest) -> CustomizeResponse:
    """A Node's decorator sees the topologies: the plan it applies is in their status."""
    return CustomizeResponse(
        relatedResources=[
            {
                "apiVersion": TOPOLOGY_API,
                "resource": "routereflectortopologies",
                "labelSelector": {},
            }
        ]
    )


# --- settings ----------------------------------------------------------------------------------


def _environment_key(environ: Environ) -> tuple[tuple[str, str], ...]:
    return tuple((name, environ[name]) for name in sorted(ENVIRONMENT.values()) if name in environ)


@lru_cache(maxsize=64)
def _cached_settings(spec: bytes, environment: tuple[tuple[str, str], ...]) -> Settings | SpecError:
    try:
        return load_settings(msgspec.json.decode(spec), dict(environment))
    except SpecError as error:
        return error


def settings_for(spec: Mapping[str, Any] | None, environ: Environ) -> Settings:
    """Validated settings, cached by spec and environment (the node hook runs once per Node)."""
    found = _cached_settings(msgspec.json.encode(spec or {}), _environment_key(environ))
    if isinstance(found, SpecError):
        raise found
    return found


def datastore_of(spec: Mapping[str, Any] | None, environ: Environ) -> str:
    """The topology's datastore; with an invalid spec, the environment's (or the default)."""
    try:
        return settings_for(spec, environ).datastore
    except SpecError:
        return environ.get("DATASTORE_TYPE", "")


# --- topology sync -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TopologyDecision:
    """What the topology sync decided, before anything is applied or rendered."""

    owner: str
    settings: Settings | None
    plan: Plan | None
    failure: Condition | None = None  # InvalidSpec, Superseded, ClusterIDsExhausted: change nothing
    echo: tuple[dict[str, Any], ...] = ()  # the observed BGPPeers, returned when nothing may change
    previous: TopologyStatusWire = field(default_factory=TopologyStatusWire)
    previous_raw: dict[str, Any] = field(default_factory=dict)
    now: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    generation: int = 0  # metadata.generation of the topology object decided on
    labelled: Mapping[str, str] = field(default_factory=dict)  # node → cluster ID it carries now
    session_children: bool = False  # the controller owns CalicoNodeStatus children
    sessions: Sessions = field(default_factory=lambda: Sessions(False, frozenset()))
    resync_after: float | None = None
    legacy_peers: tuple[LegacyPeer, ...] = ()  # the original operator's BGPPeers, still there
    legacy_valued: frozenset[str] = frozenset()  # RRs still carrying its label value
    guard_since: str | None = None  # when this service first saw the Node set the guard refuses
    owner_uid: str = ""  # the parent's metadata.uid
    # (name, uid) of the parent and every related topology: the ones Metacontroller shows as real
    live_topologies: tuple[tuple[str, str], ...] = ()

    @cached_property
    def bgp_peers(self) -> list[dict[str, Any]]:
        """The plan's BGPPeers, rendered once (children in KDD, etcd keys in etcd mode)."""
        if self.plan is None or self.settings is None:
            return []
        return render_bgp_peers(self.plan, self.settings, self.owner)

    @property
    def mesh_can_go(self) -> bool:
        """Every RR Active with Established sessions, every zone served: the node-to-node mesh
        may be switched off (only ever with session state to prove it)."""
        plan = self.plan
        if not self.applies or plan is None or not plan.reflectors or not self.sessions.observed:
            return False
        return all(
            rr.state == ReflectorState.ACTIVE and rr.node in self.sessions.established
            for rr in plan.reflectors
        ) and all(z.actual >= z.expected and (z.expected or not z.demand) for z in plan.zones)

    @property
    def ours_carry_sessions(self) -> bool:
        """Every RR Active with Established sessions and every planned RR labelled: the
        BGPPeers we render carry every session, whatever else exists."""
        if not self.mesh_can_go or self.plan is None:
            return False
        return _carried(self) == {rr.node: rr.cluster_id for rr in self.plan.reflectors}

    @property
    def keep_legacy_labels(self) -> bool:
        """The old operator's client BGPPeers select its RR label values: keep them until our
        BGPPeers carry every session."""
        return bool(self.legacy_peers) and not self.ours_carry_sessions

    @property
    def legacy_removable(self) -> bool:
        """Its BGPPeers may go: ours carry every session and no RR carries its values any more."""
        return bool(self.legacy_peers) and self.ours_carry_sessions and not self.legacy_valued

    @property
    def role_changes(self) -> int:
        """Nodes that gained or lost the RR role in this decision (against the last status, or
        the labels on a first sync): each gets or drops a cluster ID, which resets its BGP
        sessions for about 2 s."""
        if not self.applies or self.plan is None:
            return 0
        if self.previous.topology:
            before = {rr.node for rr in self.previous.routeReflectors}
        else:
            before = set(self.labelled)
        return len(before ^ {rr.node for rr in self.plan.reflectors})

    @property
    def applies(self) -> bool:
        return self.failure is None and self.plan is not None and not self.settings_paused

    @property
    def settings_paused(self) -> bool:
        return self.settings is not None and self.settings.paused


class _EchoMeta(msgspec.Struct):
    name: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class _EchoChild(msgspec.Struct):
    apiVersion: str | None = None
    kind: str | None = None
    metadata: _EchoMeta = msgspec.field(default_factory=_EchoMeta)
    spec: dict[str, Any] = msgspec.field(default_factory=dict)


def _echo_children(request: TopologySyncRequest) -> tuple[dict[str, Any], ...]:
    """Observed children reduced to the fields we own, so an answer that must change nothing
    can hand them back as they are. A child that is not an object of that shape is a bad
    request (400 naming it): echoing a mangled child would have Metacontroller rewrite it."""
    children = request.children or {}
    echoed = []
    for kind in (BGPPEER_KEY, NODESTATUS_KEY):
        for name, raw in sorted(children.get(kind, {}).items()):
            where = f"children.{kind}.{name}"
            try:
                child = msgspec.json.decode(raw, type=_EchoChild)
            except msgspec.ValidationError as error:
                found = wire_path(str(error))
                raise BadRequest(without_path(str(error)), where + found) from None
            kept_meta: dict[str, Any] = {"name": child.metadata.name or name}
            if child.metadata.labels:
                kept_meta["labels"] = child.metadata.labels
            if child.metadata.annotations:
                kept_meta["annotations"] = child.metadata.annotations
            echoed.append(
                {
                    "apiVersion": child.apiVersion,
                    "kind": child.kind,
                    "metadata": kept_meta,
                    "spec": child.spec,
                }
            )
    return tuple(echoed)


def _raw_status(status: msgspec.Raw) -> dict[str, Any]:
    """The parent's status as JSON, for the fields we carry over without reading them."""
    decoded = msgspec.json.decode(status) if bytes(status) != b"null" else None
    return decoded if isinstance(decoded, dict) else {}


def decide_topology(
    request: TopologySyncRequest, environ: Environ, now: datetime
) -> TopologyDecision:
    parent = request.parent
    owner = parent.metadata.name
    previous = parent.read_status()
    previous_raw = _raw_status(parent.status)
    related = decode_topologies(request.related)
    base = {
        "owner": owner,
        "previous": previous,
        "previous_raw": previous_raw,
        "now": now,
        "generation": parent.metadata.generation,
        "owner_uid": parent.metadata.uid,
        "live_topologies": tuple(
            sorted(
                {(owner, parent.metadata.uid)}
                | {(t.metadata.name, t.metadata.uid) for t in related}
            )
        ),
    }

    def refuse(reason: str, message: str, settings: Settings | None = None) -> TopologyDecision:
        return TopologyDecision(
            settings=settings,
            plan=None,
            failure=Condition("Ready", "False", reason, message),
            echo=_echo_children(request),
            **base,  # type: ignore[arg-type]
        )

    older = [t for t in related if t.metadata.name != owner]
    mine = (parent.metadata.creationTimestamp or "", owner)
    for other in older:
        if (other.metadata.creationTimestamp or "", other.metadata.name) < mine:
            return refuse(
                "Superseded",
                f"RouteReflectorTopology {other.metadata.name!r} is older and is the one applied;"
                " delete one of them",
            )
    try:
        settings = load_settings(parent.spec, environ)
    except SpecError as error:
        return refuse("InvalidSpec", f"{error.field}: {error.message}")
    nodes = [node.to_info() for node in decode_nodes(request.related)]
    prior = previous_from(previous, nodes, settings)
    tripped = guard_tripped(nodes, prior, settings)
    if tripped is not None:
        recorded = previous.guard.trippedSince if previous.guard is not None else ""
        since = trusted_since(recorded, parent.metadata.creationTimestamp or "", now)
        if guard_holds(nodes, since, settings, now):
            refused = refuse(
                "GuardTripped", f"{tripped}; keeping the last good route reflectors", settings
            )
            return replace(
                refused,
                resync_after=GUARD_RESYNC_SECONDS,
                guard_since=stamp(since),
            )
    try:
        target = builder_for(settings)(nodes, settings, prior)
    except PlanError as error:
        where = f"{error.field}: " if error.field else ""
        return refuse(error.reason, where + error.message, settings)
    session_children = settings.datastore != "etcdv3" and NODESTATUS_KEY in (request.children or {})
    sessions = read_sessions(request) if session_children else Sessions(False, frozenset())
    by_name = {node.name: node for node in nodes}
    plan = apply_transitions(target, prior, by_name, sessions, settings, now)
    unmatched = _unmatched_label_condition(nodes, settings)
    if unmatched is not None:
        plan = replace(plan, problems=(unmatched, *plan.problems))
    key, value = settings.reflector_label
    return TopologyDecision(
        settings=settings,
        plan=plan,
        echo=_echo_children(request) if settings.paused else (),
        labelled=prior.labelled,
        session_children=session_children,
        sessions=sessions,
        resync_after=plan.resync_after,
        legacy_peers=find_legacy_peers(decode_bgp_peers(request.related), key),
        legacy_valued=frozenset(
            name
            for name in prior.labelled
            if is_legacy_value(by_name[name].labels.get(key, ""), value)
        ),
        **base,  # type: ignore[arg-type]
    )


_UNMATCHED_EFFECT = {
    "zoneLabel": "every node is in one zone",
    "rackLabel": "no node is in a rack, the spine RRs serve every node",
}


LABELS_CONDITION = "LabelsMatched"


def _unmatched_label_condition(nodes: list[NodeInfo], settings: Settings) -> Condition | None:
    """A condition of its own (not Degraded, which shows one problem and must keep showing a
    fragile group): a configured label no node carries is most likely a typo."""
    unmatched = unmatched_labels(nodes, settings)
    if not unmatched:
        return None
    return Condition(
        LABELS_CONDITION,
        "False",
        "LabelMatchesNoNode",
        "; ".join(
            f"{name} {key!r} is on no node: {_UNMATCHED_EFFECT[name]} (a typo?)"
            for name, key in unmatched
        ),
    )


class _BGPStatus(msgspec.Struct):
    numberEstablishedV4: int = 0
    numberEstablishedV6: int = 0
    numberNotEstablishedV4: int = 0
    numberNotEstablishedV6: int = 0
    peersV4: list[dict[str, Any]] | None = None
    peersV6: list[dict[str, Any]] | None = None

    def established(self) -> bool:
        peers = (self.peersV4 or []) + (self.peersV6 or [])
        if peers:
            # Only sessions from BGPPeers count: the mesh comes and goes with RR changes.
            ours = [p for p in peers if p.get("type") != "NodeMesh"]
            return bool(ours) and all(p.get("state") == "Established" for p in ours)
        up = self.numberEstablishedV4 + self.numberEstablishedV6
        down = self.numberNotEstablishedV4 + self.numberNotEstablishedV6
        return up > 0 and down == 0


class _NodeStatusStatus(msgspec.Struct):
    bgp: _BGPStatus | None = None


class _NodeStatusSpec(msgspec.Struct):
    node: str = ""


class _NodeStatusChild(msgspec.Struct):
    spec: _NodeStatusSpec = msgspec.field(default_factory=_NodeStatusSpec)
    status: _NodeStatusStatus | None = None


def read_sessions(request: TopologySyncRequest) -> Sessions:
    """Which RRs have Established BGP sessions, from the CalicoNodeStatus children."""
    observed = False
    established: set[str] = set()
    for raw in (request.children or {}).get(NODESTATUS_KEY, {}).values():
        try:
            child = msgspec.json.decode(raw, type=_NodeStatusChild)
        except msgspec.ValidationError:
            continue
        if child.status is None or child.status.bgp is None:
            continue
        observed = True
        if child.status.bgp.established():
            established.add(child.spec.node)
    return Sessions(observed, frozenset(established))


def render_node_statuses(plan: Plan, owner: str) -> list[dict[str, Any]]:
    """A CalicoNodeStatus per RR (Calico >= 3.21 fills in its BGP sessions), sorted by name."""
    return [
        {
            "apiVersion": BGPPEER_API,
            "kind": "CalicoNodeStatus",
            "metadata": {"name": f"{name_part(owner)}-rr-{name_part(rr.node)}"},
            "spec": {"node": rr.node, "classes": ["BGP"], "updatePeriodSeconds": 10},
        }
        for rr in sorted(plan.reflectors, key=lambda r: name_part(r.node))
    ]


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


def _conditions(
    wanted: list[Condition], previous: list[ConditionStatusWire], now: datetime, generation: int
) -> list[dict[str, Any]]:
    """Conditions with lastTransitionTime kept unless the condition's status changed, each
    stamped with the generation of the spec it was computed from (GitOps tools compare it
    with metadata.generation to tell a fresh verdict from a stale one)."""
    before = {c.type: c for c in previous}
    now_stamp = stamp(now)
    rendered: list[dict[str, Any]] = []
    for condition in sorted(wanted + _progress(wanted), key=lambda c: c.type):
        old = before.get(condition.type)
        since = (
            old.lastTransitionTime
            if old and old.status == condition.status and old.lastTransitionTime
            else now_stamp
        )
        rendered.append(
            {
                "type": condition.type,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }
        )
    return rendered


def plan_status(plan: Plan) -> dict[str, Any]:
    return {
        "topology": plan.topology,
        "reflectors": len(plan.reflectors),
        "zoneCount": len(plan.zones),
        "routeReflectors": [
            {"node": rr.node, "zone": rr.zone, "clusterID": rr.cluster_id, "state": str(rr.state)}
            | ({"role": rr.role} if rr.role else {})
            | ({"serves": rr.serves} if rr.serves is not None else {})
            | ({"since": rr.since} if rr.since else {})
            for rr in plan.reflectors
        ],
        "zones": [
            {
                "name": z.name,
                "nodes": z.nodes,
                "ready": z.ready,
                "eligible": z.eligible,
                "demand": z.demand,
                "expected": z.expected,
                "actual": z.actual,
            }
            for z in plan.zones
        ],
        "groups": [
            {"name": g.name, "zone": g.zone, "reflectors": list(g.reflectors)}
            | ({"rack": g.rack} if g.rack is not None else {})
            | ({"retiringSince": g.retiring_since} if g.retiring_since else {})
            for g in plan.groups
        ],
    }


def _carried(decision: TopologyDecision) -> dict[str, str]:
    """RR label holders and the cluster ID each carries (in etcd mode the label alone counts)."""
    etcd = decision.settings is not None and decision.settings.datastore == "etcdv3"
    plan = decision.plan
    assert plan is not None
    ids = {rr.node: rr.cluster_id for rr in plan.reflectors}
    return {node: ids.get(node, "") if etcd else cid for node, cid in decision.labelled.items()}


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


def _plan_conditions(decision: TopologyDecision) -> list[Condition]:
    plan = decision.plan
    assert plan is not None
    degraded = degraded_conditions(plan)
    conditions = degraded[:1] or [Condition("Degraded", "False", "AsExpected", "no problem found")]
    conditions += [c for c in plan.problems if c.type == LABELS_CONDITION]
    if decision.settings_paused:
        conditions.append(
            Condition(
                "Ready",
                "False",
                "Paused",
                "spec.paused: the plan is computed and reported, nothing is applied",
            )
        )
        return conditions
    actual = sum(z.actual for z in plan.zones)
    transition = [c for c in plan.problems if c.reason == "TransitionPending"]
    carried = _carried(decision)
    wanted = {rr.node: rr.cluster_id for rr in plan.reflectors}
    carrying = sum(carried.get(node) == cid for node, cid in wanted.items())
    stale = carried.keys() - wanted.keys()
    pending = [rr.node for rr in plan.reflectors if rr.state == ReflectorState.PENDING]
    if transition:
        conditions.append(replace(transition[0], type="Ready", status="False"))
    elif pending:
        conditions.append(
            Condition(
                "Ready",
                "False",
                "TransitionPending",
                f"waiting for BGP sessions of {', '.join(pending)}",
            )
        )
    elif not plan.reflectors:
        conditions.append(
            Condition("Ready", "False", "NoReflectors", "no node is ready to be a route reflector")
        )
    elif carried == wanted and decision.legacy_valued:
        conditions.append(
            Condition(
                "Ready",
                "False",
                "LegacyLabelsPending",
                f"{len(decision.legacy_valued)} route reflector(s) still carry the original"
                " operator's label value (its BGPPeers select them) until ours carry every session",
            )
        )
    elif carried == wanted:
        conditions.append(
            Condition(
                "Ready",
                "True",
                "Converged",
                f"{actual} route reflector(s) in {len(plan.zones)} zone(s)"
                + (
                    " (hierarchy: 2 per rack and a spine of max(2, min); ratio and max do not"
                    " apply)"
                    if plan.topology == "hierarchy"
                    else ""
                ),
            )
        )
    else:
        conditions.append(
            Condition(
                "Ready",
                "False",
                "LabelsPending",
                f"{carrying} of {len(plan.reflectors)} planned route reflectors carry their labels"
                + (
                    f"; not planned but still labelled: {', '.join(sorted(stale))}" if stale else ""
                ),
            )
        )
    return conditions


@dataclass(frozen=True)
class Applied:
    """What a datastore applier reports back (etcd mode), shown in status."""

    datastore: str
    revision: int
    writes: int
    peers: int
    missing_nodes: tuple[str, ...] = ()
    foreign_peers: tuple[str, ...] = ()
    foreign_count: int = 0  # BGPPeers in the datastore that no topology of ours wrote
    # Other owners' objects no sync shows as a live topology, as status shows them.
    orphaned: tuple[Mapping[str, Any], ...] = ()

    def problems(self) -> list[Condition]:
        found = []
        if self.missing_nodes:
            found.append(
                Condition(
                    "Degraded",
                    "True",
                    "CalicoNodeMissing",
                    "no Calico Node in etcd for " + ", ".join(self.missing_nodes),
                )
            )
        if self.foreign_peers:
            found.append(
                Condition(
                    "Degraded",
                    "True",
                    "ForeignBGPPeer",
                    "BGPPeers not created by us hold our names: " + ", ".join(self.foreign_peers),
                )
            )
        return found


# Status lists the first orphaned owners only (a forged stream of parents cannot grow it).
ORPHANS_LISTED = 20
LEGACY_CONDITION = "LegacyBGPPeers"
# Its multi topology made one BGPPeer per client and RR (15,000 at 5,000 nodes): status names
# the first ones only, so the object stays far below the API server's size limit.
LEGACY_LISTED = 100


def legacy_condition(decision: TopologyDecision) -> Condition:
    """Where the take-over from the original operator stands (its BGPPeers still exist)."""
    names = ", ".join(p.name for p in decision.legacy_peers[:5]) + (
        f" and {len(decision.legacy_peers) - 5} more" if len(decision.legacy_peers) > 5 else ""
    )
    count = f"{len(decision.legacy_peers)} BGPPeer(s) of the original operator ({names})"
    if decision.keep_legacy_labels:
        return Condition(
            LEGACY_CONDITION,
            "True",
            "WaitingForReflectors",
            f"{count} kept, and its RR label values, until every RR is Active with Established"
            " sessions and labelled",
        )
    if decision.legacy_valued:
        return Condition(
            LEGACY_CONDITION,
            "True",
            "Relabelling",
            f"{count} kept while {len(decision.legacy_valued)} RR(s) get our label value",
        )
    return Condition(
        LEGACY_CONDITION,
        "True",
        "ReadyToRemove",
        f"{count} no longer carry any session: delete them (or set"
        " spec.legacyBGPPeers: RemoveWhenReady)",
    )


def render_topology(
    decision: TopologyDecision,
    applied: Applied | None = None,
    mesh: Condition | None = None,
    legacy: Condition | None = None,
) -> TopologySyncResponse:
    previous_conditions = decision.previous.conditions
    if decision.failure is not None or decision.plan is None:
        failure = decision.failure or Condition("Ready", "False", "Unknown", "no plan")
        status = {
            k: v
            for k, v in decision.previous_raw.items()
            if k not in ("conditions", "observedGeneration", "guard")
        }
        if decision.guard_since is not None:
            status["guard"] = {"trippedSince": decision.guard_since}
        wanted = [failure, Condition("Degraded", "True", failure.reason, failure.message)]
        status["conditions"] = _conditions(
            wanted, previous_conditions, decision.now, decision.generation
        )
        return TopologySyncResponse(
            status=status, children=list(decision.echo), resyncAfterSeconds=decision.resync_after
        )
    settings = decision.settings
    assert settings is not None
    plan = decision.plan
    peers = decision.bgp_peers
    status = plan_status(plan)
    if settings.datastore == "etcdv3" and not settings.paused:
        children: list[dict[str, Any]] = []
        if applied is not None:
            # With nothing written the revision stays as reported: status must not move.
            before = decision.previous_raw.get("datastore")
            revision = applied.revision
            if applied.writes == 0 and isinstance(before, dict) and "revision" in before:
                revision = before["revision"]
            status["datastore"] = {
                "type": applied.datastore,
                "revision": revision,
                "peers": applied.peers,
                "foreignBGPPeers": applied.foreign_count,
                "orphaned": [dict(o) for o in applied.orphaned[:ORPHANS_LISTED]],
            }
            decision = replace(
                decision, plan=replace(plan, problems=(*applied.problems(), *plan.problems))
            )
    elif settings.paused:
        children = list(decision.echo)
    else:
        children = list(peers)
        if decision.session_children:
            children += render_node_statuses(plan, decision.owner)
    status["bgpPeers"] = len(peers)
    wanted = _plan_conditions(decision) + ([mesh] if mesh is not None else [])
    if decision.legacy_peers and not settings.paused:
        status["legacyOperator"] = {
            "count": len(decision.legacy_peers),
            "bgpPeers": [p.name for p in decision.legacy_peers[:LEGACY_LISTED]],
            "keepLabels": decision.keep_legacy_labels,
        }
        wanted.append(legacy if legacy is not None else legacy_condition(decision))
    status["conditions"] = _conditions(
        wanted, previous_conditions, decision.now, decision.generation
    )
    return TopologySyncResponse(
        status=status, children=children, resyncAfterSeconds=plan.resync_after
    )


def routing_digest(decision: TopologyDecision) -> str:
    """What the routing tables depend on: the rendered BGPPeers and the RRs' cluster IDs."""
    plan = decision.plan
    rrs = sorted((rr.node, rr.cluster_id) for rr in plan.reflectors) if plan is not None else []
    peers = [(p["metadata"]["name"], p["spec"]) for p in decision.bgp_peers]
    text = json.dumps([peers, rrs], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def planned_nodes(decision: TopologyDecision, nodes: Iterable[NodeInfo]) -> list[SimNode]:
    """The nodes as the node hook will label them by this plan, for the route simulator: RRs with
    their cluster ID and RR labels, clients with their group (a retiring group is transient and
    left out)."""
    plan, settings = decision.plan, decision.settings
    if plan is None or settings is None:
        return []
    reflectors = {rr.node: rr.cluster_id for rr in plan.reflectors}
    groups = tuple(g for g in plan.groups if not g.retiring_since)
    managed = {settings.reflector_label[0], REFLECTOR_LABEL, GROUP_LABEL, PREVIOUS_GROUP_LABEL}
    result = []
    for node in nodes:
        labels = {k: v for k, v in node.labels.items() if k not in managed}
        cluster_id = reflectors.get(node.name)
        if cluster_id is not None:
            key, value = settings.reflector_label
            labels |= {key: value, REFLECTOR_LABEL: reflector_token(node.name)}
        else:
            group = _client_group(node, settings, groups)
            if group is not None:
                labels[GROUP_LABEL] = label_value(group.name)
        result.append(SimNode(node.name, labels, cluster_id))
    return result


def _client_group(node: NodeInfo, settings: Settings, groups: tuple[Group, ...]) -> Group | None:
    rack = node.labels.get(settings.rack_label, "") if settings.rack_label else ""
    return group_for(node.name, zone_of(node, settings), rack, groups)


def topology_sync(
    request: TopologySyncRequest, environ: Environ, now: datetime
) -> TopologySyncResponse:
    """The KDD topology sync: decide, then render BGPPeer children and status."""
    return render_topology(decide_topology(request, environ, now))


# --- node sync ---------------------------------------------------------------------------------

NO_CHANGE = NodeSyncResponse(labels={}, annotations={})


@dataclass(frozen=True)
class _PlanView:
    """What a node sync needs of the topology's status, parsed once per status: every Node is
    synced against the same one."""

    topology: str
    reflectors: Mapping[str, str]  # RR node → its cluster ID
    groups: tuple[Group, ...]  # the groups clients may join (retiring ones excluded)
    retiring: frozenset[str]  # label values of retiring groups
    keep_legacy_labels: bool  # RRs keep the original operator's label value for now
    complete: bool  # the status names a topology and lists its routeReflectors (maybe none)
    released: bool  # the topology is being deleted: every node gives its keys back


class _StatusShape(msgspec.Struct):
    """Which parts a status has at all: a missing `routeReflectors` is not an empty one."""

    topology: str | None = None
    routeReflectors: list[Any] | None = None
    released: bool = False


@lru_cache(maxsize=8)
def _plan_view(raw: bytes) -> _PlanView:
    status = read_status(raw)
    try:
        shape = msgspec.json.decode(raw, type=_StatusShape | None)
    except msgspec.ValidationError:
        shape = None
    return _PlanView(
        topology=status.topology,
        reflectors={rr.node: rr.clusterID for rr in status.routeReflectors},
        groups=tuple(
            Group(g.name, g.zone, tuple(g.reflectors), g.rack or None)
            for g in status.groups
            if not g.retiringSince
        ),
        retiring=frozenset(label_value(g.name) for g in status.groups if g.retiringSince),
        keep_legacy_labels=status.legacyOperator is not None and status.legacyOperator.keepLabels,
        complete=shape is not None
        and bool(shape.topology)
        and shape.routeReflectors is not None
        and status.topology == shape.topology,
        released=shape is not None and shape.released,
    )


@dataclass(frozen=True)
class NodeDecision:
    """A node sync's answer, and why it changes nothing when it must not (logged, counted)."""

    response: NodeSyncResponse
    skipped: str | None = None
    message: str = ""


# The keys this service sets under route-reflector.dev/; other keys there (a user's
# `route-reflector.dev/pool`, say) are not ours to remove.
OWNED_LABELS = frozenset({REFLECTOR_LABEL, GROUP_LABEL, PREVIOUS_GROUP_LABEL})
OWNED_ANNOTATIONS = frozenset({MANAGED_ANNOTATION, CLUSTER_ID_ANNOTATION})


def owned_keys(
    labels: Mapping[str, str], annotations: Mapping[str, str], node_label: tuple[str, str] | None
) -> tuple[set[str], set[str]]:
    """The keys this service may take back from a node: the route-reflector.dev/ labels and
    annotation it sets, the cluster-ID annotation, and the configured nodeLabel key only while
    it carries our value (or the original operator's form of it, `value-N`, which a migration
    takes over). Nothing else, whatever the managed-keys annotation lists."""
    owned_labels = set(OWNED_LABELS & labels.keys())
    if node_label is not None and carries_reflector_label(labels, *node_label):
        owned_labels.add(node_label[0])
    return owned_labels, set(OWNED_ANNOTATIONS & annotations.keys())


def _release(node: Any, node_label: tuple[str, str] | None) -> NodeSyncResponse:
    labels, annotations = owned_keys(node.labels, node.annotations, node_label)
    return NodeSyncResponse(
        labels=dict.fromkeys(sorted(labels)), annotations=dict.fromkeys(sorted(annotations))
    )


def decide_node(request: NodeSyncRequest, environ: Environ) -> NodeDecision:
    """The labels and annotations one Node should carry, by the plan in the topology's status.

    Missing information never takes a key back: with no topology, an unreadable or incomplete
    status, or an invalid spec the answer is empty (no change). Keys go back only when the
    topology's status says they are released (its finalizer is running)."""
    node = request.object.to_info()
    topologies = decode_topologies(request.related)
    if not topologies:
        return NodeDecision(NO_CHANGE, "no_topology", "no RouteReflectorTopology in the request")
    topology = topologies[0]
    view = _plan_view(bytes(topology.status))
    try:
        settings: Settings | None = settings_for(topology.spec, environ)
    except SpecError as error:
        settings = None
        invalid = f"{error.field}: {error.message}"
    if view.released:
        return NodeDecision(_release(node, settings.reflector_label if settings else None))
    if settings is None:
        return NodeDecision(NO_CHANGE, "invalid_spec", invalid)
    if settings.paused:
        return NodeDecision(NO_CHANGE, "paused", "spec.paused")
    if not view.complete:
        return NodeDecision(
            NO_CHANGE,
            "incomplete_status",
            f"RouteReflectorTopology {topology.metadata.name!r} has no plan in its status"
            " (absent, unreadable, or without routeReflectors)",
        )
    key, value = settings.reflector_label
    desired_labels: dict[str, str] = {}
    desired_annotations: dict[str, str] = {}
    cluster_id = view.reflectors.get(node.name)
    if cluster_id is not None:
        held = node.labels.get(key)
        keep = view.keep_legacy_labels and held is not None and is_legacy_value(held, value)
        desired_labels[key] = held if keep and held is not None else value
        desired_labels[REFLECTOR_LABEL] = reflector_token(node.name)
        if settings.datastore != "etcdv3":
            desired_annotations[CLUSTER_ID_ANNOTATION] = cluster_id
    else:
        group = _client_group(node, settings, view.groups)
        if group is not None:
            desired_labels[GROUP_LABEL] = label_value(group.name)
        # A client leaving a retiring group keeps it as its previous group until it retires.
        for held in (node.labels.get(GROUP_LABEL), node.labels.get(PREVIOUS_GROUP_LABEL)):
            if held in view.retiring and held != desired_labels.get(GROUP_LABEL):
                desired_labels[PREVIOUS_GROUP_LABEL] = held
                break
    known_labels, known_annotations = owned_keys(
        node.labels, node.annotations, settings.reflector_label
    )
    known_annotations.discard(MANAGED_ANNOTATION)
    labels, annotations = node_changes(
        desired_labels, desired_annotations, known_labels, known_annotations
    )
    return NodeDecision(NodeSyncResponse(labels=labels, annotations=annotations))


def topology_finalize(
    request: TopologySyncRequest, environ: Environ, now: datetime, hold: Condition | None = None
) -> TopologyFinalizeResponse:
    """The topology is being deleted: its status says the node keys are released (the node hook
    then takes them back), its children stay until no node carries a key, then it is finalized.

    A topology superseded by an older one owns no key and is finalized at once. With `hold` (the
    node-to-node mesh was just turned back on) nothing is released yet: the status shows `hold`
    and the hook is called again after RELEASE_RESYNC_SECONDS, the mesh's sessions up by then."""
    parent = request.parent
    owner = parent.metadata.name
    previous = parent.read_status()
    previous_raw = _raw_status(parent.status)
    status = {
        k: v for k, v in previous_raw.items() if k not in ("conditions", "observedGeneration")
    }
    generation = parent.metadata.generation
    if hold is not None:
        status["conditions"] = _conditions([hold], previous.conditions, now, generation)
        return TopologyFinalizeResponse(
            status=status,
            children=list(_echo_children(request)),
            finalized=False,
            resyncAfterSeconds=RELEASE_RESYNC_SECONDS,
        )
    mine = (parent.metadata.creationTimestamp or "", owner)
    superseded = any(
        (t.metadata.creationTimestamp or "", t.metadata.name) < mine
        for t in decode_topologies(request.related)
        if t.metadata.name != owner
    )
    try:
        node_label: tuple[str, str] | None = settings_for(parent.spec, environ).reflector_label
    except SpecError:
        node_label = None  # the node hook then takes back only route-reflector.dev/ keys
    holding = []
    if not superseded:
        for node in decode_nodes(request.related):
            info = node.to_info()
            labels, annotations = owned_keys(info.labels, info.annotations, node_label)
            if labels or annotations:
                holding.append(info.name)
    holding.sort()
    status["released"] = True
    if holding:
        shown = ", ".join(holding[:10]) + (
            f" and {len(holding) - 10} more" if len(holding) > 10 else ""
        )
        wanted = Condition(
            "Ready",
            "False",
            "Releasing",
            f"being deleted: {len(holding)} node(s) still carry route reflector keys: {shown}",
        )
    else:
        wanted = Condition("Ready", "False", "Released", "being deleted: no node carries a key")
    status["conditions"] = _conditions([wanted], previous.conditions, now, generation)
    return TopologyFinalizeResponse(
        status=status,
        children=list(_echo_children(request)) if holding else [],
        finalized=not holding,
        resyncAfterSeconds=RELEASE_RESYNC_SECONDS if holding else None,
    )


def node_sync(request: NodeSyncRequest, environ: Environ) -> NodeSyncResponse:
    """The node hook's answer (see decide_node)."""
    return decide_node(request, environ).response
