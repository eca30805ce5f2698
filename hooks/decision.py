"""What the topology sync decides, before anything is applied or rendered: the request (parent,
Nodes, sibling topologies, children) and the clock in, a TopologyDecision out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import msgspec

from hooks.calico import render_bgp_peers
from hooks.config import Settings, SpecError, load_settings
from hooks.legacy import LegacyPeer, find_legacy_peers, is_legacy_value
from hooks.model import Condition, NodeInfo, Plan, ReflectorState
from hooks.node_status import read_sessions
from hooks.observed import previous_from
from hooks.previous import Previous
from hooks.selection import unmatched_labels
from hooks.settings_cache import Environ
from hooks.stamps import stamp
from hooks.status import LABELS_CONDITION
from hooks.topologies import PlanError, builder_for
from hooks.transitions import (
    Sessions,
    apply_transitions,
    guard_holds,
    guard_tripped,
    trusted_since,
)
from hooks.wire import (
    BGPPEER_KEY,
    NODESTATUS_KEY,
    BadRequest,
    GuardStatusWire,
    TopologyStatusWire,
    TopologySyncRequest,
    TopologyWire,
    decode_bgp_peers,
    decode_nodes,
    decode_topologies,
    wire_path,
    without_path,
)

GUARD_RESYNC_SECONDS = 30.0


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
        return carried(self) == {rr.node: rr.cluster_id for rr in self.plan.reflectors}

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


def echo_children(request: TopologySyncRequest) -> tuple[dict[str, Any], ...]:
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


def raw_status(status: msgspec.Raw) -> dict[str, Any]:
    """The parent's status as JSON, for the fields we carry over without reading them."""
    decoded = msgspec.json.decode(status) if bytes(status) != b"null" else None
    return decoded if isinstance(decoded, dict) else {}


def decide_topology(
    request: TopologySyncRequest,
    environ: Environ,
    now: datetime,
    stored: Sessions | None = None,
) -> TopologyDecision:
    """Refuse (Superseded, InvalidSpec, GuardTripped, a PlanError) or plan: the topology's
    target, then the transitions towards it. `stored`: in etcdv3 mode, the session state read
    from the CalicoNodeStatus documents in etcd (None: none was read)."""
    parent = request.parent
    owner = parent.metadata.name
    previous = parent.read_status()
    related = decode_topologies(request.related)
    base = _observed(request, previous, related, now)

    def refuse(reason: str, message: str, settings: Settings | None = None) -> TopologyDecision:
        return TopologyDecision(
            settings=settings,
            plan=None,
            failure=Condition("Ready", "False", reason, message),
            echo=echo_children(request),
            **base,
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
        recorded = (
            previous.guard.trippedSince if isinstance(previous.guard, GuardStatusWire) else ""
        )
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
    return _planned(request, settings, nodes, prior, target, now, base, stored)


def _observed(
    request: TopologySyncRequest,
    previous: TopologyStatusWire,
    related: Sequence[TopologyWire],
    now: datetime,
) -> dict[str, Any]:
    """What every decision carries, refused or not: the parent, its last status, the clock, and
    the topologies Metacontroller shows as real (name, uid)."""
    parent = request.parent
    owner = parent.metadata.name
    return {
        "owner": owner,
        "previous": previous,
        "previous_raw": raw_status(parent.status),
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


def _planned(
    request: TopologySyncRequest,
    settings: Settings,
    nodes: list[NodeInfo],
    prior: Previous,
    target: Plan,
    now: datetime,
    base: Mapping[str, Any],
    stored: Sessions | None = None,
) -> TopologyDecision:
    """The decision for `target`: the transitions towards it with the session state the
    CalicoNodeStatus reports show (the children in KDD mode, `stored` in etcdv3 mode), the label
    check, the original operator's leftovers."""
    children = request.children or {}
    session_children = settings.datastore != "etcdv3" and NODESTATUS_KEY in children
    if session_children:
        sessions = read_sessions(children[NODESTATUS_KEY])
    elif settings.datastore == "etcdv3" and stored is not None:
        sessions = stored
    else:
        sessions = Sessions(False, frozenset())
    by_name = {node.name: node for node in nodes}
    plan = apply_transitions(target, prior, by_name, sessions, settings, now)
    unmatched = _unmatched_label_condition(nodes, settings)
    if unmatched is not None:
        plan = replace(plan, problems=(unmatched, *plan.problems))
    key, value = settings.reflector_label
    return TopologyDecision(
        settings=settings,
        plan=plan,
        echo=echo_children(request) if settings.paused else (),
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
        **base,
    )


_UNMATCHED_EFFECT = {
    "zoneLabel": "every node is in one zone",
    "rackLabel": "no node is in a rack, the spine RRs serve every node",
}


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


def carried(decision: TopologyDecision) -> dict[str, str]:
    """RR label holders and the cluster ID each carries (in etcd mode the label alone counts)."""
    etcd = decision.settings is not None and decision.settings.datastore == "etcdv3"
    plan = decision.plan
    assert plan is not None
    ids = {rr.node: rr.cluster_id for rr in plan.reflectors}
    return {node: ids.get(node, "") if etcd else cid for node, cid in decision.labelled.items()}
