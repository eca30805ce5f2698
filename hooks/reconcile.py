"""One topology sync from request to response: decide, apply to etcd, switch the mesh, remove
the original operator's BGPPeers, render. The HTTP route (hooks/app.py) and the offline loop of
`plan` (hooks/offline.py) both call `reconcile`; what touches the world comes in as parameters,
so `plan` passes recorders and shows what the service would write."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from hooks import controllers
from hooks.controllers import Applied
from hooks.decision import TopologyDecision
from hooks.model import Condition
from hooks.transitions import Sessions
from hooks.wire import TopologySyncRequest, TopologySyncResponse

Clock = Callable[[], datetime]
Applier = Callable[[TopologyDecision], Applied]  # writes the decision to etcd
MeshSwitcher = Callable[[TopologyDecision], Condition]  # turns the node-to-node mesh off
LegacyRemover = Callable[[TopologyDecision], Condition]  # deletes the old operator's BGPPeers
# etcdv3 mode: the session state of a topology (by name) from its CalicoNodeStatus documents
ReportReader = Callable[[str], Sessions]


@dataclass(frozen=True)
class Reconciled:
    """The response, and what it was made from (for metrics and logs)."""

    decision: TopologyDecision
    applied: Applied | None
    response: TopologySyncResponse
    now: datetime


def reconcile(
    request: TopologySyncRequest,
    environ: Mapping[str, str],
    clock: Clock,
    applier: Applier,
    mesh_switch: MeshSwitcher,
    legacy_remover: LegacyRemover,
    reports: ReportReader | None = None,
) -> Reconciled:
    """In etcd mode read the session state with `reports` (KDD: the children carry it); decide;
    in etcd mode apply the decision with `applier`; with DisableWhenReady, once the RRs carry
    every session, `mesh_switch`; with RemoveWhenReady, once ours carry every session,
    `legacy_remover`; then render the response with what they reported."""
    now = clock()
    stored = None
    if reports is not None and controllers.datastore_of(request.parent.spec, environ) == "etcdv3":
        stored = reports(request.parent.metadata.name)
    decision = controllers.decide_topology(request, environ, now, stored)
    settings = decision.settings
    if not decision.applies or settings is None:
        return Reconciled(decision, None, controllers.render_topology(decision), now)
    applied = applier(decision) if settings.datastore == "etcdv3" else None
    mesh = None
    if settings.node_to_node_mesh == "DisableWhenReady":
        mesh = mesh_switch(decision) if decision.mesh_can_go else mesh_waiting(decision)
    legacy = None
    if settings.legacy_bgp_peers == "RemoveWhenReady" and decision.legacy_removable:
        legacy = legacy_remover(decision)
    response = controllers.render_topology(decision, applied, mesh, legacy)
    return Reconciled(decision, applied, response, now)


def mesh_waiting(decision: TopologyDecision) -> Condition:
    """The mesh stays on: the decision does not prove the RRs carry every session."""
    settings = decision.settings
    in_etcd = settings is not None and settings.datastore == "etcdv3"
    return Condition(
        "NodeToNodeMesh",
        "True",
        "WaitingForReflectors",
        "the mesh stays on until every RR is Active with Established BGP sessions"
        + (
            "; no CalicoNodeStatus report in etcd yet (calico-node >= 3.21 fills in the ones"
            " this service writes per RR), so without one switch it off yourself once the"
            " topology is Ready"
            if in_etcd and not decision.sessions.observed
            else ""
        ),
    )
