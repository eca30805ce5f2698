"""Nodes for tests: one builder of Kubernetes Node objects, one of the simulator's SimNodes, and
who peers with whom among them for the reference models of BIRD."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from hooks.sessions import SimNode

Json = dict[str, Any]
ZONE = "topology.kubernetes.io/zone"


def kube_node(
    name: str,
    zone: str | None = None,
    *,
    created: str = "2026-01-01T00:00:00Z",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    ready: str = "True",
    unschedulable: bool = False,
    taints: Iterable[Json] = (),
    deleting: bool = False,
    uid: str | None = None,
    address: str | None = None,
    zone_label: str = ZONE,
) -> Json:
    """A Node as the API server lists it, with the fields the hooks read: labels (hostname, OS,
    `zone` under `zone_label`, then `labels`), annotations, creation and deletion times, the
    Ready condition ("True", "False" or "Unknown"), cordon and taints; `address`: its
    InternalIP, for what names a node's BGP peers by address (CalicoNodeStatus)."""
    meta: Json = {
        "name": name,
        "uid": uid or f"uid-{name}",
        "resourceVersion": "100",
        "creationTimestamp": created,
        "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        | ({zone_label: zone} if zone is not None else {})
        | dict(labels or {}),
        "annotations": dict(annotations or {}),
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-11-26T09:59:00Z"
        meta["finalizers"] = ["example.com/drain"]
    spec: Json = {}
    if unschedulable:
        spec["unschedulable"] = True
    if all_taints := list(taints):
        spec["taints"] = all_taints
    reason = {"True": "KubeletReady", "False": "KubeletNotReady"}.get(ready, "NodeStatusUnknown")
    status: Json = {"conditions": [{"type": "Ready", "status": ready, "reason": reason}]}
    if address is not None:
        status["addresses"] = [{"type": "InternalIP", "address": address}]
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec, "status": status}


def sim_node(name: str, cluster_id: str | None = None, **labels: str) -> SimNode:
    """A node as the simulator sees it, selectable by `name == '<name>'`."""
    return SimNode(name, {"name": name, **labels}, cluster_id)


def peers_of(
    cluster_ids: Mapping[str, str | None],
    edges: Iterable[tuple[str, str]],
    mesh: bool,
    down: frozenset[str] = frozenset(),
) -> dict[str, set[str]]:
    """Each node up → the nodes it has a BGP session with: `edges`, and with `mesh` the
    node-to-node mesh among the nodes that are not RRs (no cluster ID; Calico >= 3.21)."""
    alive = sorted(n for n in cluster_ids if n not in down)
    peers: dict[str, set[str]] = {n: set() for n in alive}
    for a, b in edges:
        if a in peers and b in peers and a != b:
            peers[a].add(b)
            peers[b].add(a)
    if mesh:
        for a, b in itertools.combinations(alive, 2):
            if cluster_ids[a] is None and cluster_ids[b] is None:
                peers[a].add(b)
                peers[b].add(a)
    return peers
