"""The etcdv3 applier against real etcd servers: diff, compare-and-swap, ordering, outages, TLS."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest_etcd import BeforeTxn
from etcd_server import EtcdServer, foreign_bgp_peer

from hooks.datastores import etcd as etcd_module
from hooks.datastores.etcd import (
    NODES_PREFIX,
    OWNED_PREFIX,
    OWNER_LABEL,
    OWNERS_PREFIX,
    PEERS_PREFIX,
    DesiredState,
    EtcdApplier,
    EtcdConflict,
    EtcdError,
    EtcdSettings,
    EtcdUnavailable,
)
from hooks.datastores.etcd_sweep import SWEEP_GRACE, Liveness

pytest_plugins = ["conftest_etcd"]
pytestmark = pytest.mark.etcd

OWNER = "default"


def calico_node(name: str, address: str = "10.0.0.1/24") -> dict[str, Any]:
    """A Calico Node as calico/node writes it, with fields we must never touch."""
    return {
        "kind": "Node",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {
            "name": name,
            "uid": "7f0c6e4e-0000-4000-8000-000000000000",
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "a"},
            "annotations": {"projectcalico.org/kube-labels": '{"a":"b"}'},
        },
        "spec": {
            "bgp": {"ipv4Address": address, "ipv4IPIPTunnelAddr": "192.168.0.1"},
            "orchRefs": [{"nodeName": name, "orchestrator": "k8s"}],
            "addresses": [{"address": address, "type": "CalicoNodeIP"}],
            "futureField": {"unicode": "zürich ✓", "number": 12345678901234567890},
        },
        "status": {"podCIDRs": ["192.168.0.0/24"]},
    }


def peer(name: str, group: str) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "nodeSelector": f"route-reflector.dev/group == '{group}'",
            "peerSelector": f"route-reflector.dev/reflector == '{group}'",
        },
    }


def desired(peers: list[dict[str, Any]], cluster_ids: Mapping[str, str | None]) -> DesiredState:
    return DesiredState(owner=OWNER, peers=tuple(peers), cluster_ids=dict(cluster_ids))


def settings(*urls: str, timeout: float = 2.0, **extra: Any) -> EtcdSettings:
    defaults: dict[str, Any] = {"ca_cert_file": None, "cert_file": None, "key_file": None}
    return EtcdSettings(endpoints=urls, **(defaults | extra), timeout_seconds=timeout)


def seed_nodes(server: EtcdServer, *names: str) -> None:
    server.put_many({NODES_PREFIX + name: calico_node(name) for name in names})


def cluster_id(server: EtcdServer, node: str) -> str | None:
    document = server.get(NODES_PREFIX + node)
    assert document is not None
    value: str | None = document["spec"].get("bgp", {}).get("routeReflectorClusterID")
    return value


def decoded_write(txn: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """(verb, key, cluster ID or None) for a write transaction, None for reads."""
    operation = txn["success"][0] if txn["success"] else {}
    if "request_put" in operation:
        key = base64.b64decode(operation["request_put"]["key"]).decode()
        value = json.loads(base64.b64decode(operation["request_put"]["value"]))
        cid = value.get("spec", {}).get("bgp", {}).get("routeReflectorClusterID")
        return ("put", key, cid)
    if "request_delete_range" in operation:
        return ("delete", base64.b64decode(operation["request_delete_range"]["key"]).decode(), None)
    return None


def stop_at_write(server: EtcdServer, number: int) -> BeforeTxn:
    """A hook that stops `server` as write transaction `number` is about to go out."""
    sent = 0

    def hook(txn: dict[str, Any]) -> None:
        nonlocal sent
        if decoded_write(txn):
            sent += 1
            if sent == number:
                server.stop()

    return hook


def test_first_apply_writes_peers_and_cluster_ids(etcd: EtcdServer) -> None:
    seed_nodes(etcd, "n1", "n2", "n3")
    applier = EtcdApplier(settings(etcd.url))

    result = applier.apply(desired([peer("rr-a", "a"), peer("rr-b", "b")], {"n1": "224.0.0.1"}))

    assert (result.writes, result.peers, result.reflectors) == (3, 2, 1)
    assert result.missing_nodes == result.foreign_conflicts == ()
    assert cluster_id(etcd, "n1") == "224.0.0.1"
    assert cluster_id(etcd, "n2") is None
    stored = etcd.get(PEERS_PREFIX + "rr-a")
    assert stored is not None
    assert stored["kind"] == "BGPPeer" and stored["apiVersion"] == "projectcalico.org/v3"
    assert stored["metadata"]["name"] == "rr-a"
    assert stored["metadata"]["labels"] == {OWNER_LABEL: OWNER}
    assert uuid.UUID(stored["metadata"]["uid"]).version == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stored["metadata"]["creationTimestamp"])
    assert stored["spec"] == peer("rr-a", "a")["spec"]
    # Peers are written after cluster IDs, in name order: rr-b is our last write.
    assert result.revision == etcd.mod_revision(PEERS_PREFIX + "rr-b")


def test_second_identical_apply_makes_no_writes(etcd: EtcdServer) -> None:
    seed_nodes(etcd, "n1", "n2")
    applier = EtcdApplier(settings(etcd.url))
    state = desired([peer("rr-a", "a")], {"n1": "224.0.0.1", "n2": None})
    applier.apply(state)
    etcd.put("/calico/resources/v3/projectcalico.org/ippools/unrelated", {"moves": "revision"})

    again = applier.apply(state)

    assert again.writes == 0
    assert (again.peers, again.reflectors) == (1, 1)
    # The revision of our own newest key, not etcd's current revision.
    assert again.revision == etcd.mod_revision(PEERS_PREFIX + "rr-a")


def test_changed_spec_updates_the_peer_and_keeps_uid_and_creation_time(etcd: EtcdServer) -> None:
    applier = EtcdApplier(settings(etcd.url))
    applier.apply(desired([peer("rr-a", "a")], {}))
    before = etcd.get(PEERS_PREFIX + "rr-a")
    assert before is not None

    result = applier.apply(desired([peer("rr-a", "z")], {}))

    after = etcd.get(PEERS_PREFIX + "rr-a")
    assert after is not None and result.writes == 1
    assert after["spec"] == peer("rr-a", "z")["spec"]
    assert after["metadata"] == before["metadata"]


def test_foreign_peers_and_other_node_fields_are_left_alone(etcd: EtcdServer) -> None:
    seed_nodes(etcd, "n1")
    foreign = foreign_bgp_peer("rr-a")
    etcd.put(PEERS_PREFIX + "rr-a", foreign)
    etcd.put(PEERS_PREFIX + "tor", foreign | {"metadata": {"name": "tor"}})
    other_owner = foreign | {"metadata": {"name": "x", "labels": {OWNER_LABEL: "other"}}}
    etcd.put(PEERS_PREFIX + "x", other_owner)
    etcd.put(PEERS_PREFIX + "garbage", b"not json")
    untouched = {name: etcd.mod_revision(PEERS_PREFIX + name) for name in ("rr-a", "tor", "x")}
    applier = EtcdApplier(settings(etcd.url))

    result = applier.apply(desired([peer("rr-a", "a"), peer("rr-b", "b")], {"n1": "224.0.0.1"}))

    assert result.foreign_conflicts == ("rr-a",)
    assert result.peers == 1
    assert {n: etcd.mod_revision(PEERS_PREFIX + n) for n in untouched} == untouched
    assert etcd.get(PEERS_PREFIX + "rr-a") == foreign
    assert etcd.mod_revision(PEERS_PREFIX + "garbage") > 0
    assert set(applier.read_owned(OWNER)) == {"rr-b"}
    with_id = calico_node("n1")
    with_id["spec"]["bgp"]["routeReflectorClusterID"] = "224.0.0.1"
    assert etcd.get(NODES_PREFIX + "n1") == with_id

    applier.apply(desired([], {"n1": None}))

    assert etcd.get(NODES_PREFIX + "n1") == calico_node("n1")
    assert etcd.get(PEERS_PREFIX + "rr-b") is None
    assert {n: etcd.mod_revision(PEERS_PREFIX + n) for n in untouched} == untouched
    assert etcd.mod_revision(PEERS_PREFIX + "garbage") > 0


def test_node_changed_between_read_and_write_is_retried(
    etcd: EtcdServer, transactions: list[BeforeTxn]
) -> None:
    seed_nodes(etcd, "n1")
    attempts: list[str] = []

    def concurrent_writer(txn: dict[str, Any]) -> None:
        write = decoded_write(txn)
        if write and write[1] == NODES_PREFIX + "n1":
            attempts.append(write[1])
            if len(attempts) == 1:
                changed = calico_node("n1")
                changed["metadata"]["labels"]["new"] = "label"
                etcd.put(NODES_PREFIX + "n1", changed)

    transactions.append(concurrent_writer)

    result = EtcdApplier(settings(etcd.url)).apply(desired([], {"n1": "224.0.0.9"}))

    assert len(attempts) == 2 and result.writes == 1
    node = etcd.get(NODES_PREFIX + "n1")
    assert node is not None
    assert node["metadata"]["labels"]["new"] == "label"
    assert node["spec"]["bgp"]["routeReflectorClusterID"] == "224.0.0.9"


def test_a_key_that_never_settles_raises_after_max_retries(
    etcd: EtcdServer, transactions: list[BeforeTxn]
) -> None:
    seed_nodes(etcd, "n1")
    attempts: list[str] = []

    def busy_writer(txn: dict[str, Any]) -> None:
        if decoded_write(txn):
            attempts.append("x")
            etcd.put(NODES_PREFIX + "n1", calico_node("n1", f"10.0.0.{len(attempts)}/24"))

    transactions.append(busy_writer)
    applier = EtcdApplier(settings(etcd.url, max_retries=2))

    with pytest.raises(EtcdConflict, match="n1"):
        applier.apply(desired([], {"n1": "224.0.0.9"}))
    assert len(attempts) == 3


def test_owned_keys_removed_behind_our_back_are_restored(etcd: EtcdServer) -> None:
    seed_nodes(etcd, "n1")
    applier = EtcdApplier(settings(etcd.url))
    state = desired([peer("rr-a", "a")], {"n1": "224.0.0.1"})
    applier.apply(state)
    etcd.delete(PEERS_PREFIX + "rr-a")
    etcd.put(NODES_PREFIX + "n1", calico_node("n1"))

    result = applier.apply(state)

    assert result.writes == 2
    assert set(applier.read_owned(OWNER)) == {"rr-a"}
    assert cluster_id(etcd, "n1") == "224.0.0.1"


def test_unparseable_node_stops_the_apply_before_any_write(etcd: EtcdServer) -> None:
    seed_nodes(etcd, "n1")
    etcd.put(NODES_PREFIX + "broken", b"{truncated")

    with pytest.raises(EtcdError, match="broken"):
        EtcdApplier(settings(etcd.url)).apply(
            desired([peer("rr-a", "a")], {"n1": "224.0.0.1", "broken": "224.0.0.2"})
        )
    assert etcd.get(PEERS_PREFIX + "rr-a") is None
    assert cluster_id(etcd, "n1") is None


def test_many_managed_nodes_are_read_as_one_paged_prefix(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"node-{i:03d}" for i in range(300)]
    seed_nodes(etcd, *names)
    monkeypatch.setattr(etcd_module, "_PAGE_SIZE", 64)
    plan = {name: None for name in names} | {"node-007": "224.0.0.1", "node-299": "224.0.0.2"}
    applier = EtcdApplier(settings(etcd.url))

    first = applier.apply(desired([peer("rr-a", "a")], plan))
    second = applier.apply(desired([peer("rr-a", "a")], plan))

    assert (first.writes, first.reflectors, second.writes) == (3, 2, 0)
    assert cluster_id(etcd, "node-299") == "224.0.0.2"


def test_unreachable_etcd_fails_fast_and_names_the_endpoint() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    started = time.monotonic()

    with pytest.raises(EtcdUnavailable, match=re.escape(url) + ".*refused"):
        EtcdApplier(settings(url, timeout=2.0)).apply(desired([peer("rr-a", "a")], {}))
    assert time.monotonic() - started < 1.0


def test_silent_etcd_times_out_as_unavailable() -> None:
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()

        with pytest.raises(EtcdUnavailable, match="timed out"):
            EtcdApplier(settings(url, timeout=0.3)).apply(desired([], {}))
        assert time.monotonic() - started < 1.5


def test_next_endpoint_is_tried_when_the_first_refuses(etcd: EtcdServer) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"

    result = EtcdApplier(settings(dead, etcd.url)).apply(desired([peer("rr-a", "a")], {}))

    assert result.peers == 1


def test_etcd_stopping_mid_apply_removes_nothing_and_the_next_apply_completes(
    private_etcd: EtcdServer, transactions: list[BeforeTxn]
) -> None:
    server = private_etcd
    seed_nodes(server, "n1", "n2")
    applier = EtcdApplier(settings(server.url, timeout=3.0))
    applier.apply(desired([peer("rr-g1", "g1")], {"n1": "224.0.0.1", "n2": None}))
    new_plan = desired([peer("rr-g2", "g2")], {"n1": None, "n2": "224.0.0.2"})
    transactions.append(stop_at_write(server, 2))  # the first write lands, then etcd stops
    started = time.monotonic()
    with pytest.raises(EtcdUnavailable, match=re.escape(server.url)):
        applier.apply(new_plan)
    assert time.monotonic() - started < 3.0
    transactions.clear()

    server.start()
    assert cluster_id(server, "n1") == "224.0.0.1"  # old reflector and peering still there
    assert set(server.get_prefix(PEERS_PREFIX)) == {"rr-g1"}
    assert cluster_id(server, "n2") == "224.0.0.2"

    result = applier.apply(new_plan)

    assert result.writes == 3
    assert set(applier.read_owned(OWNER)) == {"rr-g2"}
    assert (cluster_id(server, "n1"), cluster_id(server, "n2")) == (None, "224.0.0.2")
    assert applier.apply(new_plan).writes == 0


def test_tls_with_a_client_certificate(tls_etcd: EtcdServer) -> None:
    tls = tls_etcd.tls
    assert tls is not None
    tls_etcd.delete_prefix("/calico/")
    seed_nodes(tls_etcd, "n1")
    secure = settings(
        tls_etcd.url, ca_cert_file=tls.ca_cert, cert_file=tls.client_cert, key_file=tls.client_key
    )

    result = EtcdApplier(secure).apply(desired([peer("rr-a", "a")], {"n1": "224.0.0.1"}))

    assert result.writes == 2
    assert cluster_id(tls_etcd, "n1") == "224.0.0.1"


def test_tls_without_a_client_certificate_is_unavailable(tls_etcd: EtcdServer) -> None:
    tls = tls_etcd.tls
    assert tls is not None

    with pytest.raises(EtcdUnavailable, match=re.escape(tls_etcd.url)):
        EtcdApplier(settings(tls_etcd.url, ca_cert_file=tls.ca_cert)).apply(desired([], {}))


def test_tls_with_an_untrusted_server_certificate_is_unavailable(tls_etcd: EtcdServer) -> None:
    tls = tls_etcd.tls
    assert tls is not None
    untrusting = settings(tls_etcd.url, cert_file=tls.client_cert, key_file=tls.client_key)

    with pytest.raises(EtcdUnavailable, match="TLS failure"):
        EtcdApplier(untrusting).apply(desired([], {}))


def test_settings_come_from_calico_environment() -> None:
    environ = {
        "ETCD_ENDPOINTS": "https://10.0.0.1:2379, https://10.0.0.2:2379,",
        "ETCD_CA_CERT_FILE": "/certs/ca.pem",
        "ETCD_CERT_FILE": "/certs/cert.pem",
        "ETCD_KEY_FILE": "/certs/key.pem",
    }

    parsed = EtcdSettings.from_environ(environ)

    assert parsed.endpoints == ("https://10.0.0.1:2379", "https://10.0.0.2:2379")
    assert (parsed.ca_cert_file, parsed.cert_file, parsed.key_file) == (
        "/certs/ca.pem",
        "/certs/cert.pem",
        "/certs/key.pem",
    )
    assert EtcdSettings.from_environ({}) == EtcdSettings(
        ("http://127.0.0.1:2379",), None, None, None
    )


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"ETCD_ENDPOINTS": "127.0.0.1:2379"}, "ETCD_ENDPOINTS"),
        ({"ETCD_ENDPOINTS": "http://etcd:2379/v3"}, "ETCD_ENDPOINTS"),
        ({"ETCD_CERT_FILE": "/c.pem"}, "ETCD_KEY_FILE"),
    ],
)
def test_invalid_settings_name_the_variable(environ: dict[str, str], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EtcdSettings.from_environ(environ)


@pytest.mark.parametrize(
    ("state", "field"),
    [
        (lambda: desired([], {"n1": "224.0.0.256"}), r"cluster_ids\[n1\]"),
        (lambda: desired([], {"a/b": None}), "cluster_ids"),
        (lambda: desired([peer("../x", "a")], {}), r"peers\[0\].name"),
        (lambda: desired([peer("p", "a"), peer("p", "b")], {}), r"peers\[1\].name"),
        (lambda: DesiredState(owner="x" * 64, peers=(), cluster_ids={}), "owner"),
    ],
)
def test_invalid_desired_state_is_rejected(state: Callable[[], DesiredState], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        state()


def test_cluster_ids_left_by_an_interrupted_apply_are_cleared_by_a_later_different_plan(
    private_etcd: EtcdServer, transactions: list[BeforeTxn]
) -> None:
    server = private_etcd
    names = [f"n{i:02d}" for i in range(20)]
    seed_nodes(server, *names, "admin-rr")
    admin = calico_node("admin-rr")  # a cluster ID someone else set: never ours to clear
    admin["spec"]["bgp"] = {"ipv4Address": "10.0.0.1/24", "routeReflectorClusterID": "224.9.9.9"}
    server.put(NODES_PREFIX + "admin-rr", admin)
    applier = EtcdApplier(settings(server.url, timeout=3.0))
    transactions.append(stop_at_write(server, 9))  # eight writes land, then etcd stops
    with pytest.raises(EtcdUnavailable):
        applier.apply(desired([peer("rr-big", "g")], {name: "224.0.0.1" for name in names}))
    transactions.clear()
    server.start()
    carrying = [name for name in names if cluster_id(server, name) is not None]
    assert len(carrying) == 8  # the interrupted apply left them; no status names them

    # The next plan differs (fewer RRs) and, with no status written, names none of them.
    result = applier.apply(desired([peer("rr-small", "g")], {"n15": "224.0.0.2"}))

    assert result.writes > 0
    assert [name for name in names if cluster_id(server, name) is not None] == ["n15"]
    assert cluster_id(server, "admin-rr") == "224.9.9.9"
    assert set(server.get_prefix(OWNED_PREFIX + OWNER + "/")) == {"n15"}
    assert applier.apply(desired([peer("rr-small", "g")], {"n15": "224.0.0.2"})).writes == 0


@pytest.mark.parametrize(
    ("ours_before", "when"),
    [
        ((), "squatted"),  # the name was taken before our first write
        ((), "created"),  # a foreign writer creates the name between our read and our create
        (("rr-a",), "replaced"),  # ... or replaces ours between our read and our update
        (("rr-a", "rr-old"), "deleted"),  # ... or takes the one we were about to delete
    ],
)
def test_compare_and_swap_never_overwrites_a_foreign_or_squatted_bgppeer(
    etcd: EtcdServer, transactions: list[BeforeTxn], ours_before: tuple[str, ...], when: str
) -> None:
    """Issue 15's figure: etcd CAS never overwrote a foreign or squatted BGPPeer."""
    applier = EtcdApplier(settings(etcd.url))
    applier.apply(desired([peer(name, "old") for name in ours_before], {}))
    target = "rr-old" if when == "deleted" else "rr-a"
    squat = foreign_bgp_peer(target, {"team": "network"})
    if when == "squatted":
        etcd.put(PEERS_PREFIX + target, squat)
    raced: list[int] = []

    def foreign_writer(txn: dict[str, Any]) -> None:
        write = decoded_write(txn)
        if when != "squatted" and write and write[1] == PEERS_PREFIX + target and not raced:
            raced.append(etcd.put(PEERS_PREFIX + target, squat))

    transactions.append(foreign_writer)
    wanted = [peer("rr-a", "new")]

    result = applier.apply(desired(wanted, {}))

    assert etcd.get(PEERS_PREFIX + target) == squat
    assert bool(raced) == (when != "squatted")
    assert result.foreign_conflicts == (() if when == "deleted" else ("rr-a",))
    assert set(applier.read_owned(OWNER)) == ({"rr-a"} if when == "deleted" else set())
    # The next sync finds it again and still leaves it alone.
    revision = etcd.mod_revision(PEERS_PREFIX + target)
    again = applier.apply(desired(wanted, {}))
    assert etcd.mod_revision(PEERS_PREFIX + target) == revision
    assert again.foreign_conflicts == result.foreign_conflicts


def owner_state(
    owner: str, uid: str, peers: list[dict[str, Any]], now: datetime, *live: str
) -> DesiredState:
    """What `owner` wants, in a sync that shows the topologies with uids `live` (and itself)."""
    liveness = Liveness(uids=frozenset({uid, *live}), owners=frozenset({owner}), now=now)
    return DesiredState(owner, tuple(peers), {}, uid=uid, name=owner, liveness=liveness)


def test_an_owner_seen_again_while_it_is_swept_stops_its_sweep(
    etcd: EtcdServer, transactions: list[BeforeTxn]
) -> None:
    start = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    applier = EtcdApplier(settings(etcd.url))
    other = owner_state("other", "uid-other", [peer("other-rr-a", "a")], start)
    applier.apply(other)
    mine = owner_state(OWNER, "uid-mine", [peer("rr-a", "a")], start)
    assert [o.owner for o in applier.apply(mine).orphans] == ["other"]  # marked unseen
    owner_key = OWNERS_PREFIX + "other"

    def other_syncs_again(txn: dict[str, Any]) -> None:
        write = decoded_write(txn)
        if write == ("delete", owner_key, None) and not transactions[1:]:
            transactions.append(lambda _: None)  # once
            applier_of_other = EtcdApplier(settings(etcd.url))
            applier_of_other.apply(
                owner_state("other", "uid-other", [peer("other-rr-a", "a")], start)
            )

    transactions.append(other_syncs_again)
    later = owner_state(OWNER, "uid-mine", [peer("rr-a", "a")], start + SWEEP_GRACE)

    result = applier.apply(later)

    assert len(transactions) == 2  # the race happened
    assert [(o.owner, o.swept) for o in result.orphans] == [("other", False)]
    assert etcd.get(PEERS_PREFIX + "other-rr-a") is not None
    assert etcd.get(owner_key) == {"name": "other", "uid": "uid-other"}
