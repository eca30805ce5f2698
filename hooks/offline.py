"""The offline Metacontroller loop, the engine of `plan` and `verify`: the topology sync (the
one `reconcile` the service runs) and the node sync for every node, labels applied, again until
nothing moves. What the service would write elsewhere is recorded, not written: in etcd mode the
BGPPeers and the Calico Nodes' cluster IDs (`EtcdRecorder`), and the mesh switch and the removal
of the original operator's BGPPeers. Pointed at etcd (`ETCD_ENDPOINTS`), the etcd-mode plan reads
the CalicoNodeStatus reports there as the service does, and nothing else."""

from __future__ import annotations

import copy
import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import msgspec

from hooks import controllers, wire
from hooks.controllers import Applied
from hooks.datastores.etcd_changes import desired_state
from hooks.decision import TopologyDecision
from hooks.model import Condition
from hooks.paths import PathReport, count_paths
from hooks.reconcile import ReportReader, reconcile
from hooks.sessions import SimNode, nodes_from_objects
from hooks.verify import VerifyReport, verify
from hooks.writers import Etcd

MAX_ROUNDS = 10
# What `kubectl apply -k metacontroller/` installs (metacontroller/base/default-topology.yaml; a
# test keeps the two equal), so a preview without --topology matches the deployment.
SHIPPED_TOPOLOGY: dict[str, Any] = {
    "apiVersion": wire.TOPOLOGY_API,
    "kind": "RouteReflectorTopology",
    "metadata": {"name": "default"},
    "spec": {
        "topology": "simple",
        "zoneLabel": "topology.kubernetes.io/zone",
        "nodeToNodeMesh": "Keep",
    },
}
TOPOLOGY_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


class PlanInputError(ValueError):
    """An input file that is not what `plan` reads; the message says what is wrong."""


@dataclass
class PlanResult:
    status: dict[str, Any]
    bgp_peers: list[dict[str, Any]]
    changes: dict[str, dict[str, dict[str, str | None]]]  # node → labels/annotations changed
    nodes: list[dict[str, Any]]  # the nodes after the labels were applied
    topology: dict[str, Any]
    rounds: int
    warnings: tuple[str, ...] = ()  # Degraded problems of the plan: it applies, but look
    extra: dict[str, Any] = field(default_factory=dict)
    # etcd mode: node → the cluster ID its Calico Node would carry in etcd (empty in KDD, where
    # the node's annotation carries it)
    cluster_ids: dict[str, str] = field(default_factory=dict)

    @property
    def typed_status(self) -> wire.TopologyStatusWire:
        """`status` as its readers read it: the one typed status (hooks/wire.py), read from
        `status` each time (a caller may edit `status`)."""
        return msgspec.convert(self.status, wire.TopologyStatusWire)

    def sim_nodes(self) -> list[SimNode]:
        """The planned nodes as the simulator sees them, with the cluster IDs etcd would hold."""
        nodes = nodes_from_objects(self.nodes)
        if not self.cluster_ids:
            return nodes
        return [replace(n, cluster_id=self.cluster_ids.get(n.name, n.cluster_id)) for n in nodes]

    def verify(
        self, *, failures: bool = True, pairs: bool = False, mesh: bool = False
    ) -> VerifyReport:
        """Simulate BGP route propagation over the planned nodes and BGPPeers."""
        return verify(
            self.sim_nodes(),
            self.bgp_peers,
            mesh=mesh,
            failures=failures,
            pairs=pairs,
        )

    def paths(self, *, mesh: bool = False) -> PathReport:
        """Count the add-path routes every node would hold with this plan."""
        return count_paths(self.sim_nodes(), self.bgp_peers, mesh=mesh)

    def as_json(self) -> dict[str, Any]:
        found = {"status": self.status, "bgpPeers": self.bgp_peers, "nodes": self.changes}
        return found | ({"etcd": {"clusterIDs": self.cluster_ids}} if self.cluster_ids else {})

    def as_objects(self) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = list(self.bgp_peers)
        for name, change in self.changes.items():
            meta: dict[str, Any] = {"name": name}
            if change["labels"]:
                meta["labels"] = change["labels"]
            if change["annotations"]:
                meta["annotations"] = change["annotations"]
            objects.append({"apiVersion": "v1", "kind": "Node", "metadata": meta})
        return objects


def _nodes_from(document: Any) -> list[dict[str, Any]]:
    items = document.get("items") if isinstance(document, dict) else document
    if isinstance(document, dict) and document.get("kind") == "Node":
        items = [document]
    if not isinstance(items, list):
        raise PlanInputError(
            "nodes: expected a NodeList (`kubectl get nodes -o json`) with `items`"
        )
    nodes = []
    for index, item in enumerate(items):
        meta = item.get("metadata") if isinstance(item, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(meta, dict) or not isinstance(name, str) or not name:
            raise PlanInputError(f"nodes: items[{index}] has no metadata.name")
        kind = item.get("kind", "Node")
        if kind != "Node":
            raise PlanInputError(
                f"nodes: items[{index}] ({name}) is a {kind}, not a Node"
                " (use `kubectl get nodes -o json`)"
            )
        # The plan changes only labels and annotations: copy those, share the rest (a deep
        # copy of 2,000 nodes took longer than planning them).
        copied = {**meta}
        for key in ("labels", "annotations"):
            value = meta.get(key) or {}
            if not isinstance(value, dict):
                raise PlanInputError(f"nodes: items[{index}].metadata.{key} is not a mapping")
            copied[key] = dict(value)
        nodes.append({**item, "metadata": copied})
    return nodes


def _topology_from(document: Any) -> dict[str, Any]:
    """A RouteReflectorTopology, or its bare spec (`topology: multi`, `zoneLabel: …`)."""
    if document is None:
        return copy.deepcopy(SHIPPED_TOPOLOGY)
    if not isinstance(document, dict):
        raise PlanInputError(
            "topology: expected a RouteReflectorTopology object or its spec (a mapping)"
        )
    if "kind" not in document and not (document.keys() & TOPOLOGY_FIELDS):
        document = {**SHIPPED_TOPOLOGY, "spec": document}
    if document.get("kind") != "RouteReflectorTopology":
        raise PlanInputError(
            f"topology: expected a RouteReflectorTopology object or its spec,"
            f" got kind {document.get('kind')!r}"
        )
    topology: dict[str, Any] = copy.deepcopy(document)
    topology.setdefault("metadata", {}).setdefault("name", "default")
    if not isinstance(topology.get("spec", {}), dict):
        raise PlanInputError("topology: spec must be an object")
    return topology


def merge_changes(target: dict[str, Any], changes: Mapping[str, str | None]) -> bool:
    """Apply label or annotation `changes` to `target` as Metacontroller does: None deletes the
    key. True when something changed."""
    changed = False
    for key, value in changes.items():
        if value is None:
            if key in target:
                del target[key]
                changed = True
        elif target.get(key) != value:
            target[key] = value
            changed = True
    return changed


class EtcdRecorder:
    """The etcd applier of `plan`: what the service would write to etcd (the BGPPeers, the Calico
    Nodes' cluster IDs), computed as the service computes it (`desired_state`) and kept here, as
    an etcd that held only this topology's objects would."""

    def __init__(self) -> None:
        self.peers: dict[str, dict[str, Any]] = {}
        self.cluster_ids: dict[str, str] = {}
        self.revision = 0

    def apply(self, decision: TopologyDecision) -> Applied:
        desired = desired_state(decision)
        peers = {peer["metadata"]["name"]: peer for peer in decision.bgp_peers}
        cluster_ids = dict(self.cluster_ids)
        for node, cluster_id in desired.cluster_ids.items():
            if cluster_id is None:
                cluster_ids.pop(node, None)
            else:
                cluster_ids[node] = cluster_id
        writes = sum(
            1
            for name in peers.keys() | self.peers.keys()
            if peers.get(name) != self.peers.get(name)
        )
        writes += sum(
            1
            for node in cluster_ids.keys() | self.cluster_ids.keys()
            if cluster_ids.get(node) != self.cluster_ids.get(node)
        )
        self.peers, self.cluster_ids = peers, cluster_ids
        self.revision += writes
        return Applied("etcdv3", self.revision, writes, len(peers))


def _offline_mesh_switch(decision: TopologyDecision) -> Condition:
    return Condition(
        "NodeToNodeMesh",
        "True",
        "WouldDisable",
        "plan: the service would turn the node-to-node mesh off now (nothing was switched)",
    )


def _offline_legacy_remover(decision: TopologyDecision) -> Condition:
    return Condition(
        controllers.LEGACY_CONDITION,
        "True",
        "WouldRemove",
        f"plan: the service would delete {len(decision.legacy_peers)} BGPPeer(s) of the"
        " original operator now (nothing was deleted)",
    )


def stored_reports(environ: Mapping[str, str]) -> ReportReader | None:
    """With `ETCD_ENDPOINTS` set, the session state of a topology in etcd mode from the
    CalicoNodeStatus documents there, read by the service's own reader (`Etcd.sessions`, one
    range read, its failures a `SessionState` condition) once per run, as nothing in a plan
    changes them; else None: no report, as in an etcd that holds none."""
    if not environ.get("ETCD_ENDPOINTS"):
        return None
    return functools.cache(Etcd(environ).sessions)


def run_plan(
    nodes_document: Any,
    topology_document: Any,
    environ: Mapping[str, str],
    now: datetime,
    max_rounds: int = MAX_ROUNDS,
) -> PlanResult:
    """Topology sync, node sync for every node with the labels applied, again until still."""
    nodes = _nodes_from(nodes_document)
    topology = _topology_from(topology_document)
    original = {
        n["metadata"]["name"]: {k: dict(n["metadata"][k]) for k in ("labels", "annotations")}
        for n in nodes
    }
    etcd = EtcdRecorder()
    reports = stored_reports(environ)
    children: dict[str, Any] = {}
    status: dict[str, Any] = {}
    rounds = 0
    warnings: tuple[str, ...] = ()
    while rounds < max_rounds:
        rounds += 1
        decoded = _sync_request(topology, children, nodes)
        done = reconcile(
            decoded,
            environ,
            lambda: now,
            etcd.apply,
            _offline_mesh_switch,
            _offline_legacy_remover,
            reports,
        )
        decision, response = done.decision, done.response
        if decision.failure is not None or decision.plan is None:
            failure = decision.failure
            reason = f"{failure.reason}: {failure.message}" if failure else "no plan"
            raise PlanInputError(f"topology {topology['metadata']['name']}: {reason}")
        warnings = tuple(c.message for c in controllers.plan_warnings(decision.plan))
        new_children = {c["metadata"]["name"]: c for c in response.children}
        moved = new_children != children or response.status != status
        moved |= done.applied is not None and done.applied.writes > 0
        children, status = new_children, response.status
        topology["status"] = status
        moved |= _node_syncs(topology, nodes, environ)
        if not moved:
            break
    peers = children if not etcd.peers else etcd.peers
    return PlanResult(
        status,
        [peers[name] for name in sorted(peers)],
        _changes(nodes, original),
        nodes,
        topology,
        rounds,
        warnings,
        cluster_ids=etcd.cluster_ids,
    )


def _sync_request(
    topology: dict[str, Any], children: dict[str, Any], nodes: list[dict[str, Any]]
) -> wire.TopologySyncRequest:
    """The topology sync request Metacontroller would send. A topology read from a file has no
    uid (etcd objects record it): it gets one derived from its name, the same every run."""
    name = topology["metadata"]["name"]
    metadata = topology["metadata"]
    uid = metadata.get("uid") or str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"routereflectortopology/{name}")
    )
    parent = {**topology, "metadata": {**metadata, "uid": uid}}
    request = {
        "parent": parent,
        "children": {wire.BGPPEER_KEY: children},
        "related": {
            wire.NODE_KEY: {n["metadata"]["name"]: n for n in nodes},
            wire.TOPOLOGY_KEY: {name: parent},
        },
    }
    try:
        return msgspec.convert(_wire_shaped(request), wire.TopologySyncRequest)
    except msgspec.ValidationError as error:
        raise PlanInputError(f"nodes: {error}") from None


def _node_syncs(
    topology: dict[str, Any], nodes: list[dict[str, Any]], environ: Mapping[str, str]
) -> bool:
    """The node sync of every node against the topology's status, its answer applied; True
    when a label or an annotation changed."""
    parent = dict(topology, status=msgspec.Raw(msgspec.json.encode(topology["status"])))
    related = wire.Related(
        topologies={topology["metadata"]["name"]: msgspec.convert(parent, wire.TopologyWire)}
    )
    moved = False
    for node in nodes:
        node_request = wire.NodeSyncRequest(
            object=msgspec.convert(node, wire.NodeWire), related=related
        )
        answer = controllers.node_sync(node_request, environ)
        meta = node["metadata"]
        moved |= merge_changes(meta.setdefault("labels", {}), answer.labels)
        moved |= merge_changes(meta.setdefault("annotations", {}), answer.annotations)
    return moved


def _changes(
    nodes: list[dict[str, Any]], original: Mapping[str, Mapping[str, Mapping[str, str]]]
) -> dict[str, dict[str, dict[str, str | None]]]:
    """node → the labels and annotations the plan changed on it (None: removed)."""
    changes: dict[str, dict[str, dict[str, str | None]]] = {}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        meta = node["metadata"]
        before = original[meta["name"]]
        diff = {
            kind: _diff(before.get(kind) or {}, meta.get(kind) or {})
            for kind in ("labels", "annotations")
        }
        if diff["labels"] or diff["annotations"]:
            changes[meta["name"]] = diff
    return changes


def _wire_shaped(request: dict[str, Any]) -> dict[str, Any]:
    """The request as the wire types expect: children and the parent's status stay raw JSON."""
    encode = msgspec.json.encode
    out = dict(request)
    out["children"] = {
        key: {n: msgspec.Raw(encode(v)) for n, v in value.items()}
        for key, value in request["children"].items()
    }
    parent = dict(request["parent"])
    parent["status"] = msgspec.Raw(encode(parent.get("status")))
    out["parent"] = parent
    related = dict(request["related"])
    related[wire.TOPOLOGY_KEY] = {
        name: dict(t, status=msgspec.Raw(encode(t.get("status"))))
        for name, t in related.get(wire.TOPOLOGY_KEY, {}).items()
    }
    out["related"] = related
    return out


def _diff(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str | None]:
    keys = sorted(set(before) | set(after))
    return {k: after.get(k) for k in keys if before.get(k) != after.get(k)}
