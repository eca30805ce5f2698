"""The hook functions: request model in, response model out, no I/O, the clock a parameter."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import msgspec

from hooks.calico import (
    GROUP_LABEL,
    OWNER_LABEL,
    PREVIOUS_GROUP_LABEL,
    REFLECTOR_LABEL,
    label_value,
    reflector_token,
)
from hooks.decision import TopologyDecision, carried, decide_topology
from hooks.finalize import MESH_RESTORED, mesh_switch_asked, topology_finalize
from hooks.model import Condition, NodeInfo
from hooks.node_hook import client_group, decide_node, node_sync
from hooks.node_status import render_node_statuses, session_problem
from hooks.sessions import SimNode
from hooks.settings_cache import Environ, datastore_of
from hooks.status import (
    plan_conditions,
    plan_status,
    plan_warnings,
    render_conditions,
    status_document,
)
from hooks.wire import (
    BGPPEER_API,
    TOPOLOGY_API,
    CustomizeRequest,
    CustomizeResponse,
    DatastoreStatusWire,
    LegacyOperatorWire,
    TopologySyncRequest,
    TopologySyncResponse,
)

# The hook layer's face: the hook functions and what their callers (handlers, reconcile, offline)
# use; the decision, node hook, finalize hook, status and settings cache live in their own modules.
__all__ = [
    "LEGACY_CONDITION",
    "MESH_RESTORED",
    "Applied",
    "TopologyDecision",
    "datastore_of",
    "decide_node",
    "decide_topology",
    "legacy_condition",
    "mesh_switch_asked",
    "node_customize",
    "node_sync",
    "plan_warnings",
    "planned_nodes",
    "render_topology",
    "routing_digest",
    "topology_customize",
    "topology_finalize",
    "topology_sync",
]


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
    """The response: BGPPeer children (KDD) and status, with what the datastore, the mesh switch
    and the legacy remover reported; a refused decision changes nothing (`_refused`)."""
    if decision.failure is not None or decision.plan is None:
        return _refused(decision)
    settings = decision.settings
    assert settings is not None
    plan = decision.plan
    peers = decision.bgp_peers
    datastore: DatastoreStatusWire | msgspec.UnsetType = msgspec.UNSET
    if settings.datastore == "etcdv3" and not settings.paused:
        children: list[dict[str, Any]] = []
        if applied is not None:
            datastore = _datastore_status(decision, applied)
            # what the datastore reported is a problem of the plan, shown in its conditions
            plan = replace(plan, problems=(*applied.problems(), *plan.problems))
    elif settings.paused:
        children = list(decision.echo)
    else:
        children = list(peers)
        if decision.session_children:
            children += render_node_statuses(plan, decision.owner)
    where = "etcd" if settings.datastore == "etcdv3" else "the CalicoNodeStatus children"
    problem = session_problem(decision.sessions, where)
    wanted = plan_conditions(
        plan, decision.settings_paused, carried(decision), decision.legacy_valued
    ) + [c for c in (mesh, problem) if c is not None]
    legacy_status: LegacyOperatorWire | msgspec.UnsetType = msgspec.UNSET
    if decision.legacy_peers and not settings.paused:
        legacy_status = LegacyOperatorWire(
            len(decision.legacy_peers),
            [p.name for p in decision.legacy_peers[:LEGACY_LISTED]],
            decision.keep_legacy_labels,
        )
        wanted.append(legacy if legacy is not None else legacy_condition(decision))
    conditions = render_conditions(
        wanted, decision.previous.conditions, decision.now, decision.generation
    )
    status = plan_status(plan, conditions, len(peers), datastore, legacy_status)
    return TopologySyncResponse(
        status=status_document(status), children=children, resyncAfterSeconds=plan.resync_after
    )


def _datastore_status(decision: TopologyDecision, applied: Applied) -> DatastoreStatusWire:
    """What the etcd applier reported; with nothing written the revision stays as reported
    last time, so status does not move."""
    before = decision.previous_raw.get("datastore")
    revision = applied.revision
    if applied.writes == 0 and isinstance(before, dict) and "revision" in before:
        revision = before["revision"]
    return DatastoreStatusWire(
        applied.datastore,
        revision,
        applied.peers,
        applied.foreign_count,
        [dict(o) for o in applied.orphaned[:ORPHANS_LISTED]],
    )


def _refused(decision: TopologyDecision) -> TopologySyncResponse:
    """The last status kept (its conditions replaced), the observed children echoed."""
    failure = decision.failure or Condition("Ready", "False", "Unknown", "no plan")
    status = {
        k: v
        for k, v in decision.previous_raw.items()
        if k not in ("conditions", "observedGeneration", "guard")
    }
    if decision.guard_since is not None:
        status["guard"] = {"trippedSince": decision.guard_since}
    wanted = [failure, Condition("Degraded", "True", failure.reason, failure.message)]
    status["conditions"] = status_document(
        render_conditions(wanted, decision.previous.conditions, decision.now, decision.generation)
    )
    return TopologySyncResponse(
        status=status, children=list(decision.echo), resyncAfterSeconds=decision.resync_after
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
            group = client_group(node, settings, groups)
            if group is not None:
                labels[GROUP_LABEL] = label_value(group.name)
        result.append(SimNode(node.name, labels, cluster_id))
    return result


def topology_sync(
    request: TopologySyncRequest, environ: Environ, now: datetime
) -> TopologySyncResponse:
    """The KDD topology sync: decide, then render BGPPeer children and status."""
    return render_topology(decide_topology(request, environ, now))
