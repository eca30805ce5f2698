"""The topology hook in etcdv3 mode, over HTTP, against a real etcd: plan in etcd, no children."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from typing import Any

from etcd_server import EtcdServer
from starlette.exceptions import StarletteDeprecationWarning

from hooks.app import create_app
from hooks.calico import OWNER_LABEL
from hooks.datastores.etcd import NODES_PREFIX, PEERS_PREFIX

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
CLUSTER_ID = "projectcalico.org/RouteReflectorClusterID"


def node(name: str, zone: str, *, ready: bool = True, cordoned: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "creationTimestamp": f"2026-01-01T00:00:{name[-2:]}Z",
            "labels": {"topology.kubernetes.io/zone": zone},
        },
        "spec": {"unschedulable": cordoned},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def calico_node(name: str) -> dict[str, Any]:
    return {
        "kind": "Node",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}, "orchRefName": name},
    }


def request(nodes: list[dict[str, Any]], status: dict[str, Any] | None = None) -> dict[str, Any]:
    parent: dict[str, Any] = {
        "apiVersion": "route-reflector.dev/v1alpha1",
        "kind": "RouteReflectorTopology",
        "metadata": {"name": "default", "uid": "u", "generation": 1},
        "spec": {"datastore": "etcdv3", "zoneLabel": "topology.kubernetes.io/zone", "min": 2},
    }
    if status is not None:
        parent["status"] = status
    return {
        "controller": {},
        "parent": parent,
        "children": {"BGPPeer.crd.projectcalico.org/v1": {}},
        "related": {"Node.v1": {n["metadata"]["name"]: n for n in nodes}},
        "finalizing": False,
    }


def client_for(etcd: EtcdServer) -> TestClient:
    app = create_app(environ={"ETCD_ENDPOINTS": etcd.url}, clock=lambda: NOW)
    return TestClient(app)


def cluster_ids(etcd: EtcdServer) -> dict[str, str]:
    found = {}
    for key, value in etcd.get_prefix(NODES_PREFIX).items():
        cid = value.get("spec", {}).get("bgp", {}).get("routeReflectorClusterID")
        if cid:
            found[key.removeprefix(NODES_PREFIX)] = cid
    return found


NODES = [node(f"n{i:02d}", "ab"[i % 2]) for i in range(8)]


def seed(etcd: EtcdServer) -> None:
    etcd.put_many(
        {NODES_PREFIX + n["metadata"]["name"]: calico_node(n["metadata"]["name"]) for n in NODES}
    )


def test_topology_sync_writes_the_plan_to_etcd_and_returns_no_bgppeer_children(
    etcd: EtcdServer,
) -> None:
    seed(etcd)
    with client_for(etcd) as client:
        answer = client.post("/topology/sync", json=request(NODES))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["children"] == []
    planned = {rr["node"]: rr["clusterID"] for rr in body["status"]["routeReflectors"]}
    assert len(planned) == 4
    assert cluster_ids(etcd) == planned
    peers = etcd.get_prefix(PEERS_PREFIX)
    assert len(peers) == body["status"]["bgpPeers"] == body["status"]["datastore"]["peers"]
    assert all(p["metadata"]["labels"][OWNER_LABEL] == "default" for p in peers.values())
    assert body["status"]["datastore"]["revision"] > 0


def test_a_second_sync_writes_nothing_and_keeps_status_bytes(etcd: EtcdServer) -> None:
    seed(etcd)
    with client_for(etcd) as client:
        first = client.post("/topology/sync", json=request(NODES)).json()
        second = client.post("/topology/sync", json=request(NODES, first["status"]))
        third = client.post("/topology/sync", json=request(NODES, second.json()["status"]))
    assert second.json()["status"]["datastore"] == first["status"]["datastore"]
    assert json.dumps(third.json()["status"]) == json.dumps(second.json()["status"])


def test_a_peer_deleted_behind_our_back_is_restored_on_the_next_sync(etcd: EtcdServer) -> None:
    seed(etcd)
    with client_for(etcd) as client:
        first = client.post("/topology/sync", json=request(NODES)).json()
        victim = sorted(etcd.get_prefix(PEERS_PREFIX))[0]
        etcd.delete(victim)
        client.post("/topology/sync", json=request(NODES, first["status"]))
    assert victim in etcd.get_prefix(PEERS_PREFIX)


def test_node_hook_sets_labels_but_no_cluster_id_annotation_in_etcd_mode(etcd: EtcdServer) -> None:
    seed(etcd)
    with client_for(etcd) as client:
        status = client.post("/topology/sync", json=request(NODES)).json()["status"]
        rr = status["routeReflectors"][0]["node"]
        topology = request(NODES, status)["parent"]
        obj = next(n for n in NODES if n["metadata"]["name"] == rr)
        body = {
            "controller": {},
            "object": obj,
            "attachments": {},
            "related": {
                "RouteReflectorTopology.route-reflector.dev/v1alpha1": {"default": topology}
            },
            "finalizing": False,
        }
        answer = client.post("/node/sync", json=body).json()
    assert answer["labels"]["calico-route-reflector"] == ""
    assert answer["annotations"].get(CLUSTER_ID) is None
    assert answer["status"] is None


def test_missing_calico_node_is_a_condition_not_a_crash(etcd: EtcdServer) -> None:
    seed(etcd)
    etcd.delete(NODES_PREFIX + "n00")
    with client_for(etcd) as client:
        answer = client.post("/topology/sync", json=request(NODES))
    assert answer.status_code == 200
    degraded = next(c for c in answer.json()["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "n00" in degraded["message"]


def test_etcd_down_answers_503_and_nothing_is_lost(private_etcd: EtcdServer) -> None:
    seed(private_etcd)
    with client_for(private_etcd) as client:
        first = client.post("/topology/sync", json=request(NODES)).json()
        before = (private_etcd.get_prefix(PEERS_PREFIX), cluster_ids(private_etcd))
        private_etcd.stop()
        down = client.post("/topology/sync", json=request(NODES[:6], first["status"]))
        assert down.status_code == 503
        assert down.json() == {"error": "etcd unavailable, will retry", "field": None}
        assert private_etcd.url.split("//")[-1] not in down.text  # no endpoint to the caller
        private_etcd.start()
        assert (private_etcd.get_prefix(PEERS_PREFIX), cluster_ids(private_etcd)) == before
        again = client.post("/topology/sync", json=request(NODES, first["status"]))
    assert again.status_code == 200
    assert cluster_ids(private_etcd) == before[1]
