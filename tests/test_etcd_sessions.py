"""BGP session state in etcdv3 mode, against real etcd: the service writes a CalicoNodeStatus
request per RR where libcalico-go keeps them (`/calico/resources/v3/projectcalico.org/
caliconodestatuses/<name>`), calico-node fills in their status, and the next sync reads them back
through the parser the KDD children go through: Established reports move a new RR out of Pending
and turn the mesh off in etcd; stale, absent, unreadable or unreachable reports prove nothing."""

from __future__ import annotations

import copy
import io
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from etcd_server import EtcdServer
from served import serving
from test_etcd_hooks import NODES, seed, topology
from test_schemas import status_validator

from hooks.app import create_app
from hooks.calico import OWNER_LABEL
from hooks.cli import main
from hooks.datastores import etcd as etcd_module
from hooks.datastores.etcd import PEERS_PREFIX
from hooks.datastores.etcd_documents import OWNER_UID_ANNOTATION, STATUSES_PREFIX
from hooks.datastores.etcd_mesh import CONFIG_KEY, MESH_RECORD_KEY
from hooks.datastores.etcd_sweep import SWEEP_GRACE
from hooks.stamps import stamp
from hooks.writers import Etcd

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

pytest_plugins = ["conftest_etcd"]
pytestmark = pytest.mark.etcd

NOW = datetime(2026, 11, 29, 6, 0, 0, tzinfo=UTC)
WAIT = 300  # waitSeconds: what a new RR waits without session state
UID = "0f0e0d0c-0b0a-4909-8807-060504030201"
MESH_OFF = {"nodeToNodeMeshEnabled": False}


def parent(name: str = "default", uid: str = UID, mesh: str = "DisableWhenReady") -> Any:
    made = topology(name, uid)
    return made | {"spec": made["spec"] | {"waitSeconds": WAIT, "nodeToNodeMesh": mesh}}


def sync_request(
    status: dict[str, Any] | None = None, of: Any = None, *live: Any, nodes: Any = None
) -> Any:
    topology = of if of is not None else parent()
    if status is not None:
        topology = topology | {"status": status}
    shown = {t["metadata"]["name"]: t for t in (topology, *live)}
    return {
        "controller": {},
        "parent": topology,
        "children": {},
        "related": {
            "Node.v1": {n["metadata"]["name"]: n for n in nodes or NODES},
            "RouteReflectorTopology.route-reflector.dev/v1alpha1": shown,
        },
        "finalizing": False,
    }


def labelled(post: Any, status: dict[str, Any], of: Any = None) -> list[dict[str, Any]]:
    """The nodes as the node hook (`post`: path, body → answer) labels them for `status`."""
    topology = (of if of is not None else parent()) | {"status": status}
    shown = {topology["metadata"]["name"]: topology}
    nodes = []
    for node in NODES:
        body = {
            "controller": {},
            "object": node,
            "attachments": {},
            "related": {"RouteReflectorTopology.route-reflector.dev/v1alpha1": shown},
            "finalizing": False,
        }
        answer = post("/node/sync", body)
        metadata = copy.deepcopy(node["metadata"])
        for field in ("labels", "annotations"):
            for key, value in (answer.get(field) or {}).items():
                if value is None:
                    metadata[field].pop(key, None)
                else:
                    metadata[field][key] = value
        nodes.append(node | {"metadata": metadata})
    return nodes


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def reports(etcd: EtcdServer) -> dict[str, dict[str, Any]]:
    """The CalicoNodeStatus documents in etcd, by name."""
    return {k.removeprefix(STATUSES_PREFIX): v for k, v in etcd.get_prefix(STATUSES_PREFIX).items()}


def report(etcd: EtcdServer, node: str, state: str, at: datetime | None) -> None:
    """What calico-node's status reporter does to the request for `node`: fill in its status (two
    BGPPeer sessions in `state`, one mesh session that never counts), dated `at` (None: undated)."""
    name, document = next((k, v) for k, v in reports(etcd).items() if v["spec"]["node"] == node)
    up = 2 if state == "Established" else 0
    peers = [
        {"peerIP": f"10.0.0.{i}", "type": "NodePeer", "state": state, "since": "1h"} for i in (1, 2)
    ] + [{"peerIP": "10.0.0.9", "type": "NodeMesh", "state": "Idle", "since": "1h"}]
    document["status"] = {
        **({"lastUpdated": stamp(at)} if at is not None else {}),
        "agent": {"birdV4": {"state": "Ready", "version": "v0.3.3"}},
        "bgp": {
            "numberEstablishedV4": up,
            "numberNotEstablishedV4": 3 - up,
            "numberEstablishedV6": 0,
            "numberNotEstablishedV6": 0,
            "peersV4": peers,
        },
    }
    etcd.put(STATUSES_PREFIX + name, document)


def states(status: dict[str, Any]) -> dict[str, str]:
    return {rr["node"]: rr["state"] for rr in status["routeReflectors"]}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status["conditions"] if c["type"] == kind), None)


def app_for(etcd: EtcdServer, clock: Clock) -> TestClient:
    return TestClient(create_app(environ={"ETCD_ENDPOINTS": etcd.url}, clock=clock))


def poster(client: TestClient) -> Any:
    return lambda path, body: client.post(path, json=body).json()


def synced(client: TestClient, body: Any) -> dict[str, Any]:
    answer = client.post("/topology/sync", json=body)
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()["status"]
    return status


@contextmanager
def planned(etcd: EtcdServer, of: Any = None) -> Iterator[tuple[TestClient, Clock, Any]]:
    """The service on a seeded etcd at NOW, after the first sync of `of` (its status)."""
    seed(etcd)
    clock = Clock()
    with app_for(etcd, clock) as client:
        yield client, clock, synced(client, sync_request(None, of))


# --- the requests written, and Established reports acted on --------------------------------------


def test_established_reports_in_etcd_activate_new_rrs_and_turn_the_mesh_off(
    etcd: EtcdServer,
) -> None:
    with planned(etcd) as (client, clock, first):
        rrs = sorted(states(first))
        assert set(states(first).values()) == {"Pending"}
        written = reports(etcd)
        assert sorted(d["spec"]["node"] for d in written.values()) == rrs
        for name, document in written.items():
            assert name.startswith("default-rr-")
            assert document["kind"] == "CalicoNodeStatus"
            assert document["apiVersion"] == "projectcalico.org/v3"
            assert document["metadata"]["labels"] == {OWNER_LABEL: "default"}
            assert document["metadata"]["annotations"] == {OWNER_UID_ANNOTATION: UID}
            assert document["spec"] == {
                "node": document["spec"]["node"],
                "classes": ["BGP"],
                "updatePeriodSeconds": 10,
            }
        assert condition(first, "NodeToNodeMesh")["reason"] == "WaitingForReflectors"  # type: ignore[index]
        assert condition(first, "SessionState") is None

        for node in rrs:  # well within waitSeconds: only the reports can move them
            report(etcd, node, "Established", NOW + timedelta(seconds=5))
        clock.now = NOW + timedelta(seconds=10)
        second = synced(client, sync_request(first, nodes=labelled(poster(client), first)))

        assert set(states(second).values()) == {"Active"}
        mesh = condition(second, "NodeToNodeMesh")
        assert mesh is not None and (mesh["status"], mesh["reason"]) == ("False", "Disabled")
        assert etcd.get(CONFIG_KEY)["spec"] == MESH_OFF  # type: ignore[index]
        # Re-applied, the requests keep what calico-node wrote into them.
        synced(client, sync_request(second, nodes=labelled(poster(client), second)))
        assert all("bgp" in d["status"] for d in reports(etcd).values())


def test_stale_reports_keep_a_new_rr_pending_past_wait_seconds_and_the_mesh_on(
    etcd: EtcdServer,
) -> None:
    with planned(etcd) as (client, clock, first):
        for node in states(first):  # Established, but reported before the RR was planned
            report(etcd, node, "Established", NOW - timedelta(minutes=1))
        clock.now = NOW + timedelta(seconds=WAIT + 60)
        late = synced(client, sync_request(first, nodes=labelled(poster(client), first)))
        assert set(states(late).values()) == {"Pending"}
        assert condition(late, "NodeToNodeMesh")["reason"] == "WaitingForReflectors"  # type: ignore[index]
        assert etcd.get_bytes(CONFIG_KEY) is None

        for node in states(first):
            report(etcd, node, "Established", clock.now - timedelta(seconds=1))
        fresh = synced(client, sync_request(late, nodes=labelled(poster(client), late)))
    assert set(states(fresh).values()) == {"Active"}
    assert etcd.get(CONFIG_KEY)["spec"] == MESH_OFF  # type: ignore[index]


def test_without_reports_new_rrs_wait_wait_seconds_and_the_mesh_stays_on(
    etcd: EtcdServer,
) -> None:
    with planned(etcd) as (client, clock, first):
        rrs = states(first)
        report(etcd, min(rrs), "Connect", NOW + timedelta(seconds=1))  # one reports, not up
        clock.now = NOW + timedelta(seconds=WAIT - 10)
        early = synced(client, sync_request(first, nodes=labelled(poster(client), first)))
        assert set(states(early).values()) == {"Pending"}

        for document in reports(etcd).values():  # calico-node < 3.21: no report at all
            document.pop("status", None)
            etcd.put(STATUSES_PREFIX + document["metadata"]["name"], document)
        waited = synced(client, sync_request(early, nodes=labelled(poster(client), early)))
        assert set(states(waited).values()) == {"Pending"}
        clock.now = NOW + timedelta(seconds=WAIT)
        done = synced(client, sync_request(waited, nodes=labelled(poster(client), waited)))
    assert set(states(done).values()) == {"Active"}  # after waitSeconds, without proof
    mesh = condition(done, "NodeToNodeMesh")
    assert mesh is not None and mesh["reason"] == "WaitingForReflectors"
    assert "no CalicoNodeStatus report in etcd yet" in mesh["message"]
    assert etcd.get_bytes(CONFIG_KEY) is None


def test_an_unreadable_or_foreign_report_is_reported_and_never_trusted(etcd: EtcdServer) -> None:
    with planned(etcd) as (client, clock, first):
        rrs = sorted(states(first))
        for node in rrs:
            report(etcd, node, "Established", NOW + timedelta(seconds=5))
        by_node = {d["spec"]["node"]: name for name, d in reports(etcd).items()}
        broken, mistyped, foreign = by_node[rrs[0]], by_node[rrs[1]], by_node[rrs[2]]
        wrong, theirs = reports(etcd)[mistyped], reports(etcd)[foreign]
        wrong["status"]["bgp"] = "Established"
        etcd.put(STATUSES_PREFIX + mistyped, wrong)
        theirs["metadata"]["labels"] = {OWNER_LABEL: "someone-else"}
        etcd.put(STATUSES_PREFIX + foreign, theirs)
        etcd.put(STATUSES_PREFIX + broken, b'{"spec":{"node":')
        clock.now = NOW + timedelta(seconds=WAIT + 60)
        second = synced(client, sync_request(first, nodes=labelled(poster(client), first)))

    problem = condition(second, "SessionState")
    assert problem is not None
    assert (problem["status"], problem["reason"]) == ("False", "ReportUnreadable")
    assert broken in problem["message"] and mistyped in problem["message"]
    assert list(status_validator().iter_errors(second)) == []  # as the CRD documents it
    assert foreign not in problem["message"]  # someone else's: not ours to read or report
    assert states(second) == {
        rrs[0]: "Pending",
        rrs[1]: "Pending",
        rrs[2]: "Pending",
        rrs[3]: "Active",
    }
    assert condition(second, "NodeToNodeMesh")["reason"] == "WaitingForReflectors"  # type: ignore[index]
    assert etcd.get_bytes(CONFIG_KEY) is None
    assert etcd.get_bytes(STATUSES_PREFIX + broken) == b'{"spec":{"node":'  # never overwritten


def test_a_report_read_that_fails_proves_nothing_and_says_so(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with planned(etcd) as (client, clock, first):
        for node in states(first):
            report(etcd, node, "Established", NOW + timedelta(seconds=5))
        # More documents under the topology's prefix than one bounded read takes.
        monkeypatch.setattr(etcd_module, "_MAX_REPORTS", 3)
        clock.now = NOW + timedelta(seconds=WAIT + 60)
        refused = synced(client, sync_request(first, nodes=labelled(poster(client), first)))
        problem = condition(refused, "SessionState")
        assert problem is not None and (problem["status"], problem["reason"]) == (
            "Unknown",
            "ReadFailed",
        )
        assert "more than 3 keys" in problem["message"]
        assert set(states(refused).values()) == {"Pending"}  # no fallback to waitSeconds either
        assert etcd.get_bytes(CONFIG_KEY) is None

        monkeypatch.setattr(etcd_module, "_MAX_REPORTS", 1000)
        read = synced(client, sync_request(refused, nodes=labelled(poster(client), refused)))
    assert condition(read, "SessionState") is None
    assert set(states(read).values()) == {"Active"}


def test_an_unreachable_etcd_reads_as_unproven_session_state() -> None:
    env = {"ETCD_ENDPOINTS": "http://127.0.0.1:9"}
    sessions = Etcd(env).sessions("default")
    assert sessions.observed and not sessions.established
    assert "127.0.0.1:9" in sessions.failure


# --- what goes with the topology ------------------------------------------------------------------


def test_requests_follow_the_plan_and_the_finalize_hook_removes_them(etcd: EtcdServer) -> None:
    with planned(etcd) as (client, _, first):
        assert len(reports(etcd)) == 4
        smaller = parent()
        smaller["spec"] = smaller["spec"] | {"min": 1, "waitSeconds": 0}
        for _ in range(4):  # the extra RRs drain and leave
            first = synced(client, sync_request(first, smaller))
        assert sorted(d["spec"]["node"] for d in reports(etcd).values()) == sorted(states(first))
        assert len(reports(etcd)) == len(states(first)) < 4
        answer = client.post("/topology/finalize", json=sync_request(first) | {"finalizing": True})
    assert answer.status_code == 200 and answer.json()["finalized"] is True
    assert reports(etcd) == {}


def test_a_swept_owner_turns_the_mesh_back_on_before_its_objects_go(etcd: EtcdServer) -> None:
    gone = parent("gone", "7e7e7e7e-7e7e-4e7e-8e7e-7e7e7e7e7e7e")
    with planned(etcd, gone) as (client, clock, first):
        for node in states(first):
            report(etcd, node, "Established", NOW + timedelta(seconds=5))
        clock.now = NOW + timedelta(seconds=10)
        synced(client, sync_request(first, gone, nodes=labelled(poster(client), first, gone)))
        assert etcd.get(CONFIG_KEY)["spec"] == MESH_OFF  # type: ignore[index]
        assert json.loads(etcd.get_bytes(MESH_RECORD_KEY) or b"{}")["owner"] == "gone"
        held = etcd.get_prefix(PEERS_PREFIX), reports(etcd)

        # "gone" was deleted with its finalizer removed by hand; "default" (mesh left on) syncs.
        live = parent(mesh="Keep")
        synced(client, sync_request(None, live))
        clock.now += SWEEP_GRACE
        restoring = synced(client, sync_request(None, live))
        orphan = restoring["datastore"]["orphaned"][0]
        assert (orphan["owner"], orphan["removed"]) == ("gone", False)
        assert etcd.get_bytes(CONFIG_KEY) is None  # the document it created is gone: mesh on
        assert etcd.get_bytes(MESH_RECORD_KEY) is None
        assert all(k in etcd.get_prefix(PEERS_PREFIX) for k in held[0])  # its peers stay a sync
        assert held[1].keys() <= reports(etcd).keys()

        swept = synced(client, sync_request(restoring, live))
    assert swept["datastore"]["orphaned"][0]["removed"] is True
    owners = {
        d["metadata"]["labels"][OWNER_LABEL]
        for d in [*etcd.get_prefix(PEERS_PREFIX).values(), *reports(etcd).values()]
    }
    assert owners == {"default"}


# --- `plan` pointed at etcd: the same reader, so the same preview --------------------------------


def planned_from(
    tmp_path: Path, status: dict[str, Any], nodes: list[dict[str, Any]], etcd_url: str | None
) -> dict[str, Any]:
    """The status `route-reflector-hooks plan -o json` shows for the topology with `status`
    (as `kubectl get rrt -o yaml` shows it), with ETCD_ENDPOINTS `etcd_url` (None: unset)."""
    topology, listed = tmp_path / "topology.json", tmp_path / "nodes.json"
    topology.write_text(json.dumps(parent() | {"status": status}))
    listed.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ETCD_ENDPOINTS", raising=False)
        if etcd_url is not None:
            patch.setenv("ETCD_ENDPOINTS", etcd_url)
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["plan", str(listed), "--topology", str(topology), "-o", "json"]) == 0
    planned: dict[str, Any] = json.loads(out.getvalue())["status"]
    return planned


def test_plan_pointed_at_etcd_reads_the_reports_there_as_the_service_does(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    seed(etcd)
    # `plan` runs at the wall clock: the service planned the RRs a minute ago, well within
    # waitSeconds, so only reports can move them.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    clock = Clock(start)
    with app_for(etcd, clock) as client:
        first = synced(client, sync_request())
        nodes = labelled(poster(client), first)
        assert set(states(first).values()) == {"Pending"}

        absent = planned_from(tmp_path, first, nodes, etcd.url)  # requests, no report in them
        assert set(states(absent).values()) == {"Pending"}
        waiting = condition(absent, "NodeToNodeMesh")
        assert waiting is not None and waiting["reason"] == "WaitingForReflectors"
        assert "no CalicoNodeStatus report in etcd yet" in waiting["message"]

        for node in states(first):
            report(etcd, node, "Established", start + timedelta(seconds=5))
        established = planned_from(tmp_path, first, nodes, etcd.url)
        assert set(states(established).values()) == {"Active"}
        would = condition(established, "NodeToNodeMesh")
        assert would is not None and would["reason"] == "WouldDisable"
        assert etcd.get_bytes(CONFIG_KEY) is None  # a preview: nothing switched

        not_pointed = planned_from(tmp_path, first, nodes, None)
        assert set(states(not_pointed).values()) == {"Pending"}
        unreachable = planned_from(tmp_path, first, nodes, "http://127.0.0.1:9")
        problem = condition(unreachable, "SessionState")
        assert problem is not None and problem["reason"] == "ReadFailed"
        assert set(states(unreachable).values()) == {"Pending"}

        clock.now = datetime.now(UTC)
        service = synced(client, sync_request(first, nodes=nodes))
    assert states(service) == states(established)
    assert condition(service, "NodeToNodeMesh")["reason"] == "Disabled"  # type: ignore[index]


# --- over HTTP: the real server -------------------------------------------------------------------


def test_over_http_reports_calico_node_writes_to_etcd_turn_the_mesh_off(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    seed(etcd)
    log = tmp_path / "server.log"
    with log.open("wb") as stderr, serving({"ETCD_ENDPOINTS": etcd.url}, stderr) as (_, port):
        url = f"http://127.0.0.1:{port}/topology/sync"
        first = httpx.post(url, json=sync_request(), timeout=30)
        assert first.status_code == 200, first.text
        status = first.json()["status"]
        assert set(states(status).values()) == {"Pending"}
        time.sleep(1.1)  # a report must be dated after the second the RRs were planned in
        for node in states(status):
            report(etcd, node, "Established", datetime.now(UTC))
        base = f"http://127.0.0.1:{port}"
        nodes = labelled(lambda path, body: httpx.post(base + path, json=body).json(), status)
        second = httpx.post(url, json=sync_request(status, nodes=nodes), timeout=30)
        assert second.status_code == 200, second.text
    done = second.json()["status"]
    assert set(states(done).values()) == {"Active"}
    assert condition(done, "NodeToNodeMesh")["reason"] == "Disabled"  # type: ignore[index]
    assert etcd.get(CONFIG_KEY)["spec"] == MESH_OFF  # type: ignore[index]
