"""A mesh record whose owner has nothing else left in etcd, against real etcd: the sweep marks its
owner (in an owner record written again for it), turns the mesh back on once the owner stayed
unseen for SWEEP_GRACE, then drops that record; a live owner's record is never touched, a
BGPConfiguration someone else changed is not overwritten, and a failed read or write is a 503
that leaves everything as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from conftest_etcd import BeforeTxn
from etcd_server import EtcdServer
from test_etcd_datastore import stop_at_write
from test_etcd_hooks import seed, topology
from test_etcd_mesh import CALICO_WRITTEN, WITH_MESH_OFF, applier_for, config_writes, record_of
from test_etcd_sessions import NOW, Clock, app_for, parent, sync_request, synced
from test_schemas import status_validator

from hooks.datastores.etcd_documents import OWNERS_PREFIX
from hooks.datastores.etcd_mesh import CONFIG_KEY, MESH_RECORD_KEY, MeshRecord
from hooks.datastores.etcd_sweep import SWEEP_GRACE
from hooks.stamps import stamp

pytest_plugins = ["conftest_etcd"]
pytestmark = pytest.mark.etcd

GONE_UID = "9a9a9a9a-9a9a-4a9a-8a9a-9a9a9a9a9a9a"
OTHER_UID = "5b5b5b5b-5b5b-4b5b-8b5b-5b5b5b5b5b5b"
LIVE = parent(mesh="Keep")  # the topology that syncs: leaves the mesh as it finds it
OURS = "/route-reflector.dev/"
GONE_RECORD = MeshRecord("gone", GONE_UID, created=False, previous=None)


def ours(etcd: EtcdServer) -> dict[str, dict[str, Any]]:
    """Every record of this service in etcd, by key."""
    return {OURS + key: value for key, value in etcd.get_prefix(OURS).items()}


def orphaned(status: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = status["datastore"]["orphaned"]
    return found


@contextmanager
def left_alone(etcd: EtcdServer, by: str = "gone", uid: str = GONE_UID) -> Iterator[None]:
    """BGPConfiguration `default` as Calico wrote it, switched off by `by`, of which only the
    mesh record is left (everything else of it deleted by hand, say)."""
    seed(etcd)
    etcd.put(CONFIG_KEY, CALICO_WRITTEN)
    assert applier_for(etcd).mesh_off(by, uid) == "patched"
    assert ours(etcd).keys() == {MESH_RECORD_KEY}
    yield


def test_a_lone_mesh_record_of_a_deleted_topology_turns_the_mesh_on_after_the_grace(
    etcd: EtcdServer,
) -> None:
    clock = Clock()
    with left_alone(etcd), app_for(etcd, clock) as client:
        first = synced(client, sync_request(None, LIVE))
        assert orphaned(first) == [
            {
                "owner": "gone",
                "uid": GONE_UID,
                "bgpPeers": 0,
                "clusterIDs": 0,
                "unseenSince": stamp(NOW),
                "removed": False,
            }
        ]
        assert etcd.get(OWNERS_PREFIX + "gone") == {
            "name": "gone",
            "uid": GONE_UID,
            "unseenSince": stamp(NOW),
        }
        clock.now = NOW + SWEEP_GRACE - timedelta(seconds=1)
        early = synced(client, sync_request(first, LIVE))
        assert orphaned(early) == orphaned(first)
        assert etcd.get_bytes(CONFIG_KEY) == WITH_MESH_OFF
        assert record_of(etcd) == GONE_RECORD

        clock.now = NOW + SWEEP_GRACE
        restoring = synced(client, sync_request(early, LIVE))
        assert etcd.get_bytes(CONFIG_KEY) == CALICO_WRITTEN  # on: every other byte as Calico wrote
        assert etcd.get_bytes(MESH_RECORD_KEY) is None
        assert orphaned(restoring)[0]["removed"] is False  # its owner record goes next sync

        swept = synced(client, sync_request(restoring, LIVE))
        assert orphaned(swept)[0]["removed"] is True
        for status in (first, restoring, swept):
            assert list(status_validator().iter_errors(status)) == []
        after = synced(client, sync_request(swept, LIVE))
    assert orphaned(after) == []
    assert etcd.get(OWNERS_PREFIX + "gone") is None
    assert etcd.get_bytes(CONFIG_KEY) == CALICO_WRITTEN


def test_a_mesh_record_of_a_live_topology_is_never_touched(etcd: EtcdServer) -> None:
    other = topology("other", OTHER_UID)  # listed in every sync, paused or not: live
    clock = Clock()
    with left_alone(etcd, "other", OTHER_UID), app_for(etcd, clock) as client:
        revisions = etcd.mod_revision(CONFIG_KEY), etcd.mod_revision(MESH_RECORD_KEY)
        status = None
        for step in range(3):
            clock.now = NOW + step * SWEEP_GRACE
            status = synced(client, sync_request(status, LIVE, other))
            assert orphaned(status) == []
    assert (etcd.mod_revision(CONFIG_KEY), etcd.mod_revision(MESH_RECORD_KEY)) == revisions
    assert etcd.get(OWNERS_PREFIX + "other") is None  # nothing written for it either


def test_a_configuration_someone_turned_on_as_we_restore_is_left_as_they_wrote_it(
    etcd: EtcdServer, transactions: list[BeforeTxn]
) -> None:
    theirs = CALICO_WRITTEN.replace(b'"spec":{', b'"spec":{"nodeToNodeMeshEnabled":true,')
    theirs = theirs.replace(b'"asNumber":64512', b'"asNumber":65001')
    raced: list[bool] = []

    def operator(txn: dict[str, Any]) -> None:
        if config_writes(txn) and not raced:  # between our read and our write
            raced.append(True)
            etcd.put(CONFIG_KEY, theirs)

    clock = Clock()
    with left_alone(etcd), app_for(etcd, clock) as client:
        first = synced(client, sync_request(None, LIVE))
        clock.now = NOW + SWEEP_GRACE
        transactions.append(operator)
        restoring = synced(client, sync_request(first, LIVE))
        assert raced and etcd.get_bytes(CONFIG_KEY) == theirs
        assert record_of(etcd) == GONE_RECORD  # went with no write: dropped with the sweep
        assert orphaned(restoring)[0]["removed"] is False
        swept = synced(client, sync_request(restoring, LIVE))
    assert orphaned(swept)[0]["removed"] is True
    assert etcd.get_bytes(CONFIG_KEY) == theirs
    assert not ours(etcd).keys() & {OWNERS_PREFIX + "gone", MESH_RECORD_KEY}


def test_a_configuration_we_cannot_edit_holds_the_sweep_and_says_why(etcd: EtcdServer) -> None:
    theirs = CALICO_WRITTEN.replace(
        b'"spec":{', b'"spec":{"nodeToNodeMeshEnabled":false,"nodeToNodeMeshEnabled":false,'
    )
    clock = Clock()
    with left_alone(etcd), app_for(etcd, clock) as client:
        first = synced(client, sync_request(None, LIVE))
        etcd.put(CONFIG_KEY, theirs)  # written again by hand, the field twice
        clock.now = NOW + SWEEP_GRACE
        held = synced(client, sync_request(first, LIVE))
        (orphan,) = orphaned(held)
        assert orphan["removed"] is False
        assert orphan["held"].startswith("the node-to-node mesh it switched off stays off: ")
        assert "appears twice" in orphan["held"]
        assert list(status_validator().iter_errors(held)) == []
        assert etcd.get_bytes(CONFIG_KEY) == theirs
        assert record_of(etcd) == GONE_RECORD
        assert json.loads(etcd.get_bytes(OWNERS_PREFIX + "gone") or b"{}")["uid"] == GONE_UID

        etcd.put(CONFIG_KEY, WITH_MESH_OFF)  # put right: the sweep goes on
        synced(client, sync_request(held, LIVE))
    assert etcd.get_bytes(CONFIG_KEY) == CALICO_WRITTEN
    assert etcd.get_bytes(MESH_RECORD_KEY) is None


def test_etcd_failing_at_the_restore_is_a_503_and_nothing_is_half_done(
    private_etcd: EtcdServer, transactions: list[BeforeTxn]
) -> None:
    clock = Clock()
    with left_alone(private_etcd), app_for(private_etcd, clock) as client:
        first = synced(client, sync_request(None, LIVE))
        before = ours(private_etcd)
        clock.now = NOW + SWEEP_GRACE
        stopping = stop_at_write(private_etcd, 1)
        transactions.append(lambda txn: stopping(txn) if config_writes(txn) else None)
        failed = client.post("/topology/sync", json=sync_request(first, LIVE))
        assert failed.status_code == 503, failed.text
        transactions.clear()
        private_etcd.start()
        assert private_etcd.get_bytes(CONFIG_KEY) == WITH_MESH_OFF  # neither half went
        assert ours(private_etcd) == before

        private_etcd.stop()  # down from the first read: nothing read, nothing written
        down = client.post("/topology/sync", json=sync_request(first, LIVE))
        assert down.status_code == 503, down.text
        private_etcd.start()
        assert ours(private_etcd) == before

        restoring = synced(client, sync_request(first, LIVE))
    assert orphaned(restoring)[0]["removed"] is False
    assert private_etcd.get_bytes(CONFIG_KEY) == CALICO_WRITTEN
    assert private_etcd.get_bytes(MESH_RECORD_KEY) is None
