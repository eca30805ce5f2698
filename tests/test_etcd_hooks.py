"""The topology hook in etcdv3 mode, over HTTP, against a real etcd: plan in etcd, no children."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from etcd_server import EtcdServer, foreign_bgp_peer
from nodes import kube_node
from starlette.exceptions import StarletteDeprecationWarning
from test_schemas import status_validator

from hooks import wire
from hooks.app import create_app
from hooks.calico import OWNER_LABEL
from hooks.datastores.etcd import NODES_PREFIX, OWNED_PREFIX, OWNERS_PREFIX, PEERS_PREFIX
from hooks.datastores.etcd_documents import OWNER_UID_ANNOTATION
from hooks.status import status_document

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
CLUSTER_ID = "projectcalico.org/RouteReflectorClusterID"


def node(name: str, zone: str, *, ready: bool = True, cordoned: bool = False) -> dict[str, Any]:
    return kube_node(
        name,
        zone,
        created=f"2026-01-01T00:00:{name[-2:]}Z",
        ready="True" if ready else "False",
        unschedulable=cordoned,
    )


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
    # the datastore's part reads back whole, in its place, like the rest of the status
    read = wire.read_status(json.dumps(body["status"]).encode())
    assert json.dumps(status_document(read)) == json.dumps(body["status"])


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


GRACE = timedelta(minutes=10)


def topology(name: str, uid: str, minimum: int = 2, paused: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"datastore": "etcdv3", "zoneLabel": "topology.kubernetes.io/zone"}
    return {
        "apiVersion": "route-reflector.dev/v1alpha1",
        "kind": "RouteReflectorTopology",
        "metadata": {
            "name": name,
            "uid": uid,
            "generation": 1,
            "creationTimestamp": f"2026-01-01T00:00:0{minimum}Z",
        },
        "spec": spec | {"min": minimum, "paused": paused},
    }


def sync_of(parent: dict[str, Any], *live: dict[str, Any]) -> dict[str, Any]:
    """A sync of `parent` whose related topologies are `live` (the parent is always among them)."""
    body = request(NODES)
    body["parent"] = parent
    shown = {t["metadata"]["name"]: t for t in (parent, *live)}
    body["related"]["RouteReflectorTopology.route-reflector.dev/v1alpha1"] = shown
    return body


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def owned_by(etcd: EtcdServer, owner: str) -> tuple[list[str], list[str], bool]:
    """(BGPPeers, cluster-ID records, owner record present) of `owner` in etcd."""
    peers = [
        key
        for key, value in etcd.get_prefix(PEERS_PREFIX).items()
        if value["metadata"].get("labels", {}).get(OWNER_LABEL) == owner
    ]
    records = list(etcd.get_prefix(f"{OWNED_PREFIX}{owner}/"))
    return peers, records, etcd.get(OWNERS_PREFIX + owner) is not None


@pytest.mark.parametrize(("uid", "found"), [(None, "missing"), ("a b", "not a Kubernetes uid")])
def test_a_parent_without_uid_is_refused_and_nothing_is_written(
    etcd: EtcdServer, uid: str | None, found: str
) -> None:
    seed(etcd)
    body = request(NODES)
    del body["parent"]["metadata"]["uid"]
    if uid is not None:
        body["parent"]["metadata"]["uid"] = uid
    with client_for(etcd) as client:
        answer = client.post("/topology/sync", json=body)
        metrics = client.get("/metrics").text
    assert answer.status_code == 400
    assert answer.json()["field"] == "parent.metadata.uid"
    assert answer.json()["error"].startswith(found)
    assert 'owner="default"' not in metrics  # a refused parent gets no series either
    assert etcd.get_prefix(PEERS_PREFIX) == {} and cluster_ids(etcd) == {}
    assert etcd.get_prefix("/route-reflector.dev/") == {}


def test_every_object_written_carries_the_parents_uid(etcd: EtcdServer) -> None:
    seed(etcd)
    with client_for(etcd) as client:
        client.post("/topology/sync", json=request(NODES))
    peers = etcd.get_prefix(PEERS_PREFIX).values()
    assert {p["metadata"]["annotations"][OWNER_UID_ANNOTATION] for p in peers} == {"u"}
    records = etcd.get_prefix(OWNED_PREFIX + "default/").values()
    assert records and {r["ownerUID"] for r in records} == {"u"}
    assert etcd.get(OWNERS_PREFIX + "default") == {"name": "default", "uid": "u"}


def test_a_parent_named_evil_without_a_live_owner_leaves_nothing_behind_after_the_sweep(
    etcd: EtcdServer,
) -> None:
    seed(etcd)
    real, evil = topology("default", "uid-real"), topology("evil", "uid-evil", minimum=4)
    clock = Clock()
    app = create_app(environ={"ETCD_ENDPOINTS": etcd.url}, clock=clock)
    with TestClient(app) as client:
        assert client.post("/topology/sync", json=sync_of(evil)).status_code == 200
        assert all(owned_by(etcd, "evil"))
        first = client.post("/topology/sync", json=sync_of(real)).json()["status"]
        alone = {rr["node"]: rr["clusterID"] for rr in first["routeReflectors"]}
        assert first["datastore"]["orphaned"] == [
            {
                "owner": "evil",
                "uid": "uid-evil",
                "bgpPeers": len(owned_by(etcd, "evil")[0]),
                "clusterIDs": 8,
                "unseenSince": "2026-11-26T10:00:00Z",
                "removed": False,
            }
        ]
        assert 'rr_datastore_orphaned_owners{owner="default"} 1.0' in client.get("/metrics").text
        clock.now = NOW + GRACE - timedelta(seconds=1)
        early = client.post("/topology/sync", json=sync_of(real)).json()["status"]
        assert early["datastore"]["orphaned"][0]["removed"] is False and all(owned_by(etcd, "evil"))
        clock.now = NOW + GRACE
        swept = client.post("/topology/sync", json=sync_of(real)).json()["status"]
        assert swept["datastore"]["orphaned"][0]["removed"] is True
        for status in (first, swept):  # what status reports is what the CRD documents
            assert list(status_validator().iter_errors(status)) == []
        after = client.post("/topology/sync", json=sync_of(real)).json()["status"]
        assert 'rr_datastore_orphaned_owners{owner="default"} 0.0' in client.get("/metrics").text
    assert owned_by(etcd, "evil") == ([], [], False)
    assert after["datastore"]["orphaned"] == []
    assert cluster_ids(etcd) == alone  # evil's extra RRs lost their IDs, ours kept theirs


def test_a_live_topology_is_never_swept_even_paused_and_a_deleted_ones_objects_go(
    etcd: EtcdServer,
) -> None:
    seed(etcd)
    real, other = topology("default", "uid-real"), topology("other", "uid-other", minimum=4)
    paused = topology("other", "uid-other", minimum=4, paused=True)
    clock = Clock()
    app = create_app(environ={"ETCD_ENDPOINTS": etcd.url}, clock=clock)
    with TestClient(app) as client:
        client.post("/topology/sync", json=sync_of(other))
        held = owned_by(etcd, "other")
        for step in range(3):  # other stays shown (paused, never applying): never swept
            clock.now = NOW + step * GRACE
            client.post("/topology/sync", json=sync_of(paused, real))
            status = client.post("/topology/sync", json=sync_of(real, paused)).json()["status"]
            assert status["datastore"]["orphaned"] == []
        assert owned_by(etcd, "other") == held
        # Deleted with its finalizer removed by hand: no sync shows it any more.
        client.post("/topology/sync", json=sync_of(real))
        clock.now += GRACE
        client.post("/topology/sync", json=sync_of(real))
    assert owned_by(etcd, "other") == ([], [], False)


def test_the_finalize_hook_removes_the_deleted_topologys_objects(etcd: EtcdServer) -> None:
    seed(etcd)
    with client_for(etcd) as client:
        client.post("/topology/sync", json=request(NODES))
        assert all(owned_by(etcd, "default"))
        finalize = request(NODES) | {"finalizing": True}
        answer = client.post("/topology/finalize", json=finalize)
    assert answer.status_code == 200 and answer.json()["finalized"] is True
    assert owned_by(etcd, "default") == ([], [], False)
    assert cluster_ids(etcd) == {}


def test_a_foreign_bgppeer_is_reported_and_never_touched(etcd: EtcdServer) -> None:
    seed(etcd)
    tor = foreign_bgp_peer("tor")
    etcd.put(PEERS_PREFIX + "tor", tor)
    revision = etcd.mod_revision(PEERS_PREFIX + "tor")
    clock = Clock()
    app = create_app(environ={"ETCD_ENDPOINTS": etcd.url}, clock=clock)
    with TestClient(app) as client:
        for step in range(3):
            clock.now = NOW + step * GRACE
            status = client.post("/topology/sync", json=request(NODES)).json()["status"]
            assert status["datastore"]["foreignBGPPeers"] == 1
            assert status["datastore"]["orphaned"] == []
        metrics = client.get("/metrics").text
    assert 'rr_datastore_foreign_bgppeers{owner="default"} 1.0' in metrics
    assert etcd.mod_revision(PEERS_PREFIX + "tor") == revision
    assert etcd.get(PEERS_PREFIX + "tor") == tor
