"""The node-to-node mesh switch in etcdv3 mode, against real etcd: BGPConfiguration `default` in
etcd is switched off only on a decision that proves it safe, edited in place by compare-and-swap,
and turned back on by the finalize hook of the topology that switched it off."""

from __future__ import annotations

import base64
import json
import socket
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest_etcd import BeforeTxn
from etcd_server import EtcdServer
from nodes import kube_node
from scenario import mesh_switch_request
from served import serving

from hooks import controllers, wire
from hooks.controllers import TopologyDecision
from hooks.datastores.etcd import EtcdApplier, EtcdSettings
from hooks.datastores.etcd_documents import DocumentError, Entry, Fresh
from hooks.datastores.etcd_mesh import CONFIG_KEY, MESH_RECORD_KEY, MeshRecord, mesh_off, mesh_on
from hooks.stamps import stamp
from hooks.writers import Etcd, mesh_switch_for

pytest_plugins = ["conftest_etcd"]
pytestmark = pytest.mark.etcd

NOW = datetime(2026, 11, 29, 3, 0, 0, tzinfo=UTC)
UID = "11111111-2222-4333-8444-555555555555"
# BGPConfiguration `default` as Calico's Go client writes it: compact, Go's key order, `&` escaped
# as \u0026 (a decode and re-encode would write it as `&`), a number in exponent form.
CALICO_WRITTEN = (
    b'{"kind":"BGPConfiguration","apiVersion":"projectcalico.org/v3","metadata":{"name":"default",'
    b'"uid":"0b5e6c1a-8d4f-4b7e-9a3c-2f1d0e9c8b7a","creationTimestamp":"2024-01-01T00:00:00Z"},'
    b'"spec":{"logSeverityScreen":"Info","asNumber":64512,"serviceClusterIPs":[{"cidr":"10.96.0.0/12"}],'
    b'"communities":[{"name":"a\\u0026b","value":"65000:100"}],"ttl":1e3}}'
)
WITH_MESH_OFF = CALICO_WRITTEN.replace(
    b'"spec":{"logSeverityScreen"', b'"spec":{"nodeToNodeMeshEnabled":false,"logSeverityScreen"'
)


def applier_for(etcd: EtcdServer, max_retries: int = 5) -> EtcdApplier:
    return EtcdApplier(EtcdSettings((etcd.url,), None, None, None, 2.0, max_retries))


def record_of(etcd: EtcdServer) -> MeshRecord | None:
    raw = etcd.get_bytes(MESH_RECORD_KEY)
    return None if raw is None else MeshRecord.decode(Entry(MESH_RECORD_KEY, raw, 0))


def config_writes(txn: dict[str, Any]) -> bool:
    """Whether `txn` writes BGPConfiguration `default` (its compare names the key)."""
    return any(base64.b64decode(c["key"]).decode() == CONFIG_KEY for c in txn["compare"])


# --- the switch and its record, against real etcd -----------------------------------------------


def test_an_absent_configuration_is_created_with_the_mesh_off_and_recorded(
    etcd: EtcdServer,
) -> None:
    applier = applier_for(etcd)

    assert applier.mesh_off("default", UID) == "created"

    document = etcd.get(CONFIG_KEY)
    assert document is not None
    assert document["kind"] == "BGPConfiguration"
    assert document["apiVersion"] == "projectcalico.org/v3"
    assert document["metadata"]["name"] == "default"
    assert document["spec"] == {"nodeToNodeMeshEnabled": False}
    assert record_of(etcd) == MeshRecord("default", UID, created=True, previous=None)
    revisions = etcd.mod_revision(CONFIG_KEY), etcd.mod_revision(MESH_RECORD_KEY)

    assert applier.mesh_off("default", UID) == "unchanged"
    assert (etcd.mod_revision(CONFIG_KEY), etcd.mod_revision(MESH_RECORD_KEY)) == revisions


def test_an_existing_document_keeps_every_other_byte_off_and_back_on(etcd: EtcdServer) -> None:
    etcd.put(CONFIG_KEY, CALICO_WRITTEN)
    applier = applier_for(etcd)

    assert applier.mesh_off("default", UID) == "patched"
    assert etcd.get_bytes(CONFIG_KEY) == WITH_MESH_OFF
    assert record_of(etcd) == MeshRecord("default", UID, created=False, previous=None)

    assert applier.mesh_restore("default") is True
    assert etcd.get_bytes(CONFIG_KEY) == CALICO_WRITTEN
    assert etcd.get_bytes(MESH_RECORD_KEY) is None


def test_a_mesh_on_explicitly_is_switched_off_and_restored_to_true(etcd: EtcdServer) -> None:
    on = CALICO_WRITTEN.replace(b'"ttl":1e3', b'"ttl":1e3,"nodeToNodeMeshEnabled":true')
    etcd.put(CONFIG_KEY, on)
    applier = applier_for(etcd)

    assert applier.mesh_off("default", UID) == "patched"
    assert etcd.get_bytes(CONFIG_KEY) == on.replace(b'Enabled":true', b'Enabled":false')
    assert record_of(etcd) == MeshRecord("default", UID, created=False, previous=True)

    assert applier.mesh_restore("default") is True
    assert etcd.get_bytes(CONFIG_KEY) == on


def test_a_mesh_the_operator_turned_off_is_neither_written_nor_recorded(etcd: EtcdServer) -> None:
    etcd.put(CONFIG_KEY, WITH_MESH_OFF)
    revision = etcd.mod_revision(CONFIG_KEY)
    applier = applier_for(etcd)

    assert applier.mesh_off("default", UID) == "unchanged"
    assert applier.mesh_restore("default") is False  # nothing recorded: stays off at uninstall

    assert etcd.mod_revision(CONFIG_KEY) == revision
    assert etcd.get_bytes(MESH_RECORD_KEY) is None


def test_a_concurrent_foreign_change_is_kept_and_the_switch_applied_on_top(
    etcd: EtcdServer, transactions: list[BeforeTxn]
) -> None:
    etcd.put(CONFIG_KEY, CALICO_WRITTEN)
    theirs = CALICO_WRITTEN.replace(b'"asNumber":64512', b'"asNumber":65001')
    attempts: list[bool] = []

    def foreign_writer(txn: dict[str, Any]) -> None:
        if config_writes(txn):
            attempts.append(True)
            if len(attempts) == 1:  # between our read and our write
                etcd.put(CONFIG_KEY, theirs)

    transactions.append(foreign_writer)

    assert applier_for(etcd).mesh_off("default", UID) == "patched"

    assert len(attempts) == 2
    assert etcd.get_bytes(CONFIG_KEY) == theirs.replace(
        b'"spec":{', b'"spec":{"nodeToNodeMeshEnabled":false,'
    )


def test_a_foreign_writer_that_turns_the_mesh_off_first_leaves_nothing_to_record(
    etcd: EtcdServer, transactions: list[BeforeTxn]
) -> None:
    def foreign_writer(txn: dict[str, Any]) -> None:
        if config_writes(txn) and etcd.get_bytes(CONFIG_KEY) is None:
            etcd.put(CONFIG_KEY, WITH_MESH_OFF)

    transactions.append(foreign_writer)

    assert applier_for(etcd).mesh_off("default", UID) == "unchanged"
    assert etcd.get_bytes(CONFIG_KEY) == WITH_MESH_OFF
    assert etcd.get_bytes(MESH_RECORD_KEY) is None


def test_the_record_follows_the_document_it_was_written_with(
    etcd: EtcdServer, transactions: list[BeforeTxn]
) -> None:
    """Read absent, created by someone else before our create: what we changed is their field."""
    on = b'{"kind":"BGPConfiguration","spec":{"nodeToNodeMeshEnabled":true}}'

    def foreign_writer(txn: dict[str, Any]) -> None:
        if config_writes(txn) and etcd.get_bytes(CONFIG_KEY) is None:
            etcd.put(CONFIG_KEY, on)

    transactions.append(foreign_writer)

    assert applier_for(etcd).mesh_off("default", UID) == "patched"
    assert record_of(etcd) == MeshRecord("default", UID, created=False, previous=True)


def test_restore_leaves_a_mesh_someone_turned_back_on_and_drops_the_record(
    etcd: EtcdServer,
) -> None:
    applier = applier_for(etcd)
    etcd.put(CONFIG_KEY, CALICO_WRITTEN)
    applier.mesh_off("default", UID)
    by_hand = WITH_MESH_OFF.replace(b'Enabled":false', b'Enabled":true')
    etcd.put(CONFIG_KEY, by_hand)
    revision = etcd.mod_revision(CONFIG_KEY)

    assert applier.mesh_restore("default") is False

    assert etcd.mod_revision(CONFIG_KEY) == revision
    assert etcd.get_bytes(MESH_RECORD_KEY) is None


def test_only_the_topology_that_switched_the_mesh_off_restores_it(etcd: EtcdServer) -> None:
    applier = applier_for(etcd)
    applier.mesh_off("default", UID)

    revision = etcd.mod_revision(CONFIG_KEY)

    assert applier.mesh_restore("other") is False
    assert etcd.mod_revision(CONFIG_KEY) == revision
    assert record_of(etcd) == MeshRecord("default", UID, created=True, previous=None)

    assert applier.mesh_restore("default") is True
    assert etcd.get_bytes(CONFIG_KEY) is None  # it created the document, nobody changed it


def test_a_created_document_someone_added_to_keeps_their_fields(etcd: EtcdServer) -> None:
    applier = applier_for(etcd)
    applier.mesh_off("default", UID)
    document = etcd.get(CONFIG_KEY)
    assert document is not None
    document["spec"]["asNumber"] = 65010
    etcd.put(CONFIG_KEY, json.dumps(document, separators=(",", ":")))

    assert applier.mesh_restore("default") is True

    assert etcd.get(CONFIG_KEY) == document | {"spec": {"asNumber": 65010}}


def test_a_document_that_cannot_be_edited_is_refused() -> None:
    switch_off = mesh_off(Fresh(new_uid=lambda: "new", created=stamp(NOW)))
    with pytest.raises(DocumentError, match="not JSON"):
        switch_off(Entry(CONFIG_KEY, b"{not json", 7))
    with pytest.raises(DocumentError, match="spec is not an object"):
        switch_off(Entry(CONFIG_KEY, b'{"spec":[1]}', 7))
    twice = b'{"spec":{"nodeToNodeMeshEnabled":false,"nodeToNodeMeshEnabled":false}}'
    with pytest.raises(DocumentError, match="appears twice"):
        mesh_on(MeshRecord("default", UID, False, None))(Entry(CONFIG_KEY, twice, 7))


# --- the service's switch: only on a decision that proves the RRs carry every session ------------


def converged_decision(converged: bool) -> TopologyDecision:
    """A DisableWhenReady decision in etcdv3 mode; `converged`: every RR Active and Established.

    The sessions come from CalicoNodeStatus children, which only KDD mode reads: the decision is
    made there and then carried to etcdv3 mode, so the switch's own gate is what is tested."""
    request = wire.decode_topology_request(mesh_switch_request(converged))
    decision = controllers.decide_topology(request, {}, NOW)
    assert decision.settings is not None
    return replace(decision, settings=replace(decision.settings, datastore="etcdv3"))


def test_the_mesh_goes_off_in_etcd_only_on_a_decision_that_proves_it(etcd: EtcdServer) -> None:
    env = {"ETCD_ENDPOINTS": etcd.url, "K8S_API_ENDPOINT": "http://127.0.0.1:9"}
    switch = mesh_switch_for(env, Etcd(env))

    early = converged_decision(False)
    waiting = switch(early)
    assert (waiting.status, waiting.reason) == ("True", "WaitingForReflectors")
    unreported = "no CalicoNodeStatus report in etcd yet" in waiting.message
    assert unreported is not early.sessions.observed
    assert etcd.get_bytes(CONFIG_KEY) is None and etcd.get_bytes(MESH_RECORD_KEY) is None

    proven = converged_decision(True)
    assert proven.mesh_can_go
    done = switch(proven)
    assert (done.status, done.reason) == ("False", "Disabled")
    assert "(etcd)" in done.message
    document = etcd.get(CONFIG_KEY)
    assert document is not None and document["spec"] == {"nodeToNodeMeshEnabled": False}
    assert record_of(etcd) == MeshRecord("default", proven.owner_uid, True, None)


def test_an_etcd_that_is_down_is_a_condition_not_an_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"ETCD_ENDPOINTS": f"http://127.0.0.1:{port}"}

    failed = mesh_switch_for(env, Etcd(env))(converged_decision(True))

    assert (failed.status, failed.reason) == ("True", "SwitchFailed")
    assert f"127.0.0.1:{port}" in failed.message


# --- over HTTP: the real server in etcdv3 mode ---------------------------------------------------


def topology_request(finalizing: bool, status: dict[str, Any] | None = None) -> dict[str, Any]:
    nodes = [kube_node(f"n{i:02d}", "ab"[i % 2]) for i in range(6)]
    parent: dict[str, Any] = {
        "apiVersion": "route-reflector.dev/v1alpha1",
        "kind": "RouteReflectorTopology",
        "metadata": {"name": "default", "uid": UID, "generation": 1},
        "spec": {
            "datastore": "etcdv3",
            "zoneLabel": "topology.kubernetes.io/zone",
            "min": 2,
            "nodeToNodeMesh": "DisableWhenReady",
        },
    }
    if status is not None:
        parent["status"] = status
    return {
        "controller": {},
        "parent": parent,
        "children": {},
        "related": {"Node.v1": {n["metadata"]["name"]: n for n in nodes}},
        "finalizing": finalizing,
    }


def mesh_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "NodeToNodeMesh")


def test_over_http_the_sync_waits_and_the_finalize_hook_turns_the_mesh_back_on(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    etcd.put(CONFIG_KEY, CALICO_WRITTEN)
    log = tmp_path / "server.log"
    with (
        log.open("wb") as stderr,
        serving({"ETCD_ENDPOINTS": etcd.url, "LOG_LEVEL": "info"}, stderr) as (_, port),
    ):
        base = f"http://127.0.0.1:{port}"
        synced = httpx.post(f"{base}/topology/sync", json=topology_request(False), timeout=30)
        assert synced.status_code == 200, synced.text
        # No CalicoNodeStatus report in etcd yet: nothing proves the RRs, the mesh stays.
        waiting = mesh_condition(synced.json()["status"])
        assert waiting["reason"] == "WaitingForReflectors"
        assert "no CalicoNodeStatus report in etcd yet" in waiting["message"]
        assert etcd.get_bytes(CONFIG_KEY) == CALICO_WRITTEN

        # As the switch leaves it once a decision proves the RRs carry every session.
        applier_for(etcd).mesh_off("default", UID)
        assert etcd.get_bytes(CONFIG_KEY) == WITH_MESH_OFF

        status = synced.json()["status"]
        first = httpx.post(f"{base}/topology/finalize", json=topology_request(True, status))
        assert first.status_code == 200, first.text
        held = first.json()
        assert held["finalized"] is False and "released" not in held["status"]
        ready = next(c for c in held["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "RestoringMesh")
        assert etcd.get_bytes(CONFIG_KEY) == CALICO_WRITTEN
        assert etcd.get_bytes(MESH_RECORD_KEY) is None

        second = httpx.post(
            f"{base}/topology/finalize", json=topology_request(True, held["status"])
        )
        assert second.status_code == 200, second.text
        assert second.json()["finalized"] is True
    assert etcd.get_bytes(CONFIG_KEY) == CALICO_WRITTEN
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    finalizes = [line for line in lines if line.get("hook") == "topology_finalize"]
    assert [line.get("mesh_restored") for line in finalizes] == [True, None]
