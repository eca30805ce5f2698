"""Taking over from mhmxs/calico-route-reflector-operator: its RRs stay RRs, its label values stay
until our BGPPeers carry the sessions, its BGPPeers go only after that (tested on nodes and
BGPPeers as the old operator leaves them)."""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from typing import Any

import kmock
import pytest
from scenario import Scenario, make_node

from hooks.datastores.kubernetes import KubernetesAPI
from hooks.legacy import LegacyPeer, find_legacy_peers, is_legacy_value

Json = dict[str, Any]
KEY = "calico-route-reflector"
ZONE = "topology.kubernetes.io/zone"
CLUSTER_ID = "projectcalico.org/RouteReflectorClusterID"
BGPPEERS = "crd.projectcalico.org/v1/bgppeers"
SPEC = {"topology": "multi", "zoneLabel": ZONE, "min": 1, "max": 3}


def fnv32a(text: str) -> int:
    """The old operator's RR id: FNV-1a (32 bit) of the node UID."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def bgp_peer(name: str, node_selector: str, peer_selector: str, index: int) -> Json:
    """A BGPPeer as Calico's KDD stores what libcalico-go created: no labels, no owner."""
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPPeer",
        "metadata": {
            "name": name,
            "uid": f"99999999-0000-4000-8000-{index:012d}",
            "resourceVersion": str(9000 + index),
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "annotations": {"projectcalico.org/metadata": '{"creationTimestamp":null}'},
        },
        "spec": {"nodeSelector": node_selector, "peerSelector": peer_selector},
    }


def old_multi_cluster() -> tuple[list[Json], dict[str, Json], dict[str, str]]:
    """Six nodes in each of three zones; the old multi topology made the youngest node of each
    zone an RR (our ranking alone would pick the oldest), labelled with its FNV id, with a
    random cluster ID, and gave every client three `peer-to-rrs-<rr id>-<uid>` BGPPeers."""
    nodes = [
        make_node(f"{zone}-{n}", zone, index=n * 3 + z)
        for n in range(6)
        for z, zone in enumerate("abc")
    ]
    by_name = {node["metadata"]["name"]: node for node in nodes}
    old_ids = {"a-5": "224.0.0.17", "b-5": "224.0.0.42", "c-5": "224.0.0.99"}
    rr_id = {}
    for name, cluster_id in old_ids.items():
        meta = by_name[name]["metadata"]
        rr_id[name] = fnv32a(meta["uid"])
        meta["labels"][KEY] = str(rr_id[name])
        meta["annotations"][CLUSTER_ID] = cluster_id
    peers = {"rrs-to-rrs": bgp_peer("rrs-to-rrs", f"has({KEY})", f"has({KEY})", 0)}
    for node in nodes:
        meta = node["metadata"]
        if meta["name"] in old_ids:
            continue
        for rr in sorted(rr_id):
            name = f"peer-to-rrs-{rr_id[rr]}-{meta['uid']}"
            peers[name] = bgp_peer(
                name,
                f"kubernetes.io/hostname=='{meta['name']}'",
                f"{KEY}=='{rr_id[rr]}'",
                len(peers),
            )
    # Someone else's BGPPeers: never taken for the old operator's.
    peers["tor-a"] = bgp_peer("tor-a", f"{ZONE} == 'a'", "", 500) | {
        "spec": {"nodeSelector": f"{ZONE} == 'a'", "peerIP": "10.9.9.9", "asNumber": 65001}
    }
    peers["peer-to-rrs-edge"] = bgp_peer("peer-to-rrs-edge", "edge == 'true'", "rr == 'x'", 501)
    return nodes, peers, old_ids


def status_of(scenario: Scenario) -> Json:
    """The status the last sync wrote (a scenario that has run has one)."""
    assert scenario.status is not None
    return scenario.status


def old_scenario(spec: Json | None = None) -> tuple[Scenario, dict[str, str]]:
    nodes, peers, old_ids = old_multi_cluster()
    # The simulator knows only our BGPPeers, not the old ones that carry sessions meanwhile.
    scenario = Scenario(spec or SPEC, nodes, check=False)
    scenario.foreign_peers = peers
    return scenario, old_ids


def rr_label_values(scenario: Scenario, names: set[str] | dict[str, str]) -> dict[str, str]:
    return {name: scenario.node(name)["metadata"]["labels"].get(KEY, "-") for name in names}


def legacy_names(peers: dict[str, Json]) -> list[str]:
    """The old operator's own names: its mesh and its per-client `peer-to-rrs-<digits>-…`."""
    return sorted(n for n in peers if n == "rrs-to-rrs" or re.match(r"peer-to-rrs-\d", n))


def test_the_old_operators_multi_reflectors_stay_reflectors_and_roll_to_one_id_per_group() -> None:
    scenario, old_ids = old_scenario()
    scenario.step()
    assert set(scenario.reflectors()) == set(old_ids)
    groups = [set(g["reflectors"]) for g in status_of(scenario)["groups"]]
    status_ids = {rr["node"]: rr["clusterID"] for rr in status_of(scenario)["routeReflectors"]}
    # Its per-RR IDs are kept on the first sync but for one RR per group (a changed ID resets
    # that RR's sessions, so the change rolls like any other).
    for members in groups:
        assert sum(status_ids[m] != old_ids[m] for m in members & set(old_ids)) <= 1, members
    scenario.run_until_still()
    assert set(scenario.reflectors()) == set(old_ids)
    final = {name: scenario.node(name)["metadata"]["annotations"][CLUSTER_ID] for name in old_ids}
    for members in (set(g["reflectors"]) for g in status_of(scenario)["groups"]):
        (shared,) = {final[m] for m in members}  # one cluster ID per group in the end
        assert shared in {old_ids[m] for m in members}  # ... one its members already carried


def test_its_bgppeers_are_listed_and_someone_elses_are_not() -> None:
    scenario, _ = old_scenario()
    scenario.step()
    listed = status_of(scenario)["legacyOperator"]["bgpPeers"]
    assert listed == legacy_names(scenario.foreign_peers)
    assert len(listed) == status_of(scenario)["legacyOperator"]["count"] == 1 + 15 * 3
    assert "tor-a" not in listed and "peer-to-rrs-edge" not in listed


def test_its_label_values_stay_until_our_peers_carry_every_session_then_become_ours() -> None:
    scenario, old_ids = old_scenario()
    scenario.step()
    legacy_values = rr_label_values(scenario, old_ids)
    assert all(is_legacy_value(v, "") for v in legacy_values.values()), legacy_values
    assert status_of(scenario)["legacyOperator"]["keepLabels"] is True
    assert scenario.condition("LegacyBGPPeers")["reason"] == "WaitingForReflectors"

    scenario.run_until_still()

    assert rr_label_values(scenario, old_ids) == dict.fromkeys(old_ids, "")
    assert status_of(scenario)["legacyOperator"]["keepLabels"] is False
    assert scenario.condition("LegacyBGPPeers")["reason"] == "ReadyToRemove"
    assert scenario.condition("Ready")["status"] == "True"
    # The step that let the labels change had seen every RR Established and labelled.
    first_free = next(r for r in scenario.history if not r.decision.keep_legacy_labels)
    assert first_free.decision.ours_carry_sessions
    assert all(r.decision.keep_legacy_labels for r in scenario.history[: first_free.step - 1])


def test_the_old_single_topology_is_recognised_too() -> None:
    nodes = [make_node(f"n-{i}", "a", index=i) for i in range(8)]
    for name in ("n-5", "n-6", "n-7"):
        node = nodes[int(name[2:])]
        node["metadata"]["labels"][KEY] = ""
        node["metadata"]["annotations"][CLUSTER_ID] = "224.0.0.1"
    scenario = Scenario({"topology": "simple", "min": 3}, nodes, check=False)
    scenario.foreign_peers = {
        "rrs-to-rrs": bgp_peer("rrs-to-rrs", f"has({KEY})", f"has({KEY})", 0),
        "peer-to-rrs-1": bgp_peer("peer-to-rrs-1", f"!has({KEY})", f"has({KEY})", 1),
    }
    scenario.step()
    assert set(scenario.reflectors()) == {"n-5", "n-6", "n-7"}
    assert status_of(scenario)["legacyOperator"]["bgpPeers"] == ["peer-to-rrs-1", "rrs-to-rrs"]
    scenario.run_until_still()
    assert scenario.condition("LegacyBGPPeers")["reason"] == "ReadyToRemove"


def test_a_cluster_without_the_old_operator_shows_no_migration() -> None:
    nodes, _, _ = old_multi_cluster()
    for node in nodes:
        node["metadata"]["labels"].pop(KEY, None)
        node["metadata"]["annotations"].pop(CLUSTER_ID, None)
    scenario = Scenario(SPEC, nodes)
    scenario.run_until_still()
    assert "legacyOperator" not in status_of(scenario)
    with pytest.raises(KeyError):
        scenario.condition("LegacyBGPPeers")


@pytest.mark.parametrize(
    ("found", "ours", "legacy"),
    [
        ("2166136261", "", True),
        ("rr-2166136261", "rr", True),
        ("", "", False),
        ("rr", "rr", False),
        ("2166136261", "rr", False),
        ("abc", "", False),
        ("12345678901", "", False),
    ],
)
def test_old_multi_label_values_are_told_from_ours(found: str, ours: str, legacy: bool) -> None:
    assert is_legacy_value(found, ours) is legacy


def test_a_bgppeer_with_labels_or_an_owner_is_never_taken_for_the_old_operators() -> None:
    mesh = bgp_peer("rrs-to-rrs", f"has({KEY})", f"has({KEY})", 0)
    labelled = json.loads(json.dumps(mesh))
    labelled["metadata"]["labels"] = {"team": "net"}
    owned = json.loads(json.dumps(mesh))
    owned["metadata"]["ownerReferences"] = [{"kind": "Thing", "name": "x"}]
    other_key = bgp_peer("rrs-to-rrs", "has(other)", "has(other)", 1)
    assert find_legacy_peers([mesh], KEY) == (LegacyPeer("rrs-to-rrs", mesh["metadata"]["uid"]),)
    assert find_legacy_peers([labelled, owned, other_key], KEY) == ()


# --- the service deletes them (spec.legacyBGPPeers: RemoveWhenReady), over HTTP to kmock --------


@pytest.fixture
def k8s(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    kmock.resources[BGPPEERS] = kmock.ResourceInfo(kind="BGPPeer", namespaced=False)
    return kmock


def post(server: kmock.RawHandler, body: bytes) -> Json:
    from starlette.exceptions import StarletteDeprecationWarning

    from hooks.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    [srv] = server.servers
    app = create_app(environ={"K8S_API_ENDPOINT": f"http://{srv.host}:{srv.port}"})
    with TestClient(app) as client:
        answer = client.post("/topology/sync", content=body)
    assert answer.status_code == 200, answer.text
    result: Json = answer.json()
    return result


def removing_scenario(k8s: kmock.KubernetesEmulator) -> Scenario:
    """The old operator's cluster under RemoveWhenReady, its BGPPeers in the emulated API."""
    scenario, _ = old_scenario({**SPEC, "legacyBGPPeers": "RemoveWhenReady"})
    for name, peer in scenario.foreign_peers.items():
        k8s.objects[BGPPEERS, None, name] = peer
    return scenario


def condition(answer: Json, kind: str) -> Json:
    return next(c for c in answer["status"]["conditions"] if c["type"] == kind)


@pytest.mark.asyncio
async def test_the_service_deletes_them_only_once_ours_carry_every_session(
    k8s: kmock.KubernetesEmulator,
) -> None:
    scenario = removing_scenario(k8s)

    scenario.step()
    early = await asyncio.to_thread(post, k8s, scenario.topology_request())
    assert condition(early, "LegacyBGPPeers")["reason"] == "WaitingForReflectors"
    assert [r for r in k8s if r.method == kmock.method.DELETE] == []

    scenario.run_until_still()
    answer = await asyncio.to_thread(post, k8s, scenario.topology_request())

    removed = condition(answer, "LegacyBGPPeers")
    assert (removed["status"], removed["reason"]) == ("False", "Removed")
    deletes = [r for r in k8s if r.method == kmock.method.DELETE]
    expected = legacy_names(scenario.foreign_peers)
    assert sorted(r.url.path.rsplit("/", 1)[1] for r in deletes) == expected
    for request in deletes:
        name = request.url.path.rsplit("/", 1)[1]
        uid = scenario.foreign_peers[name]["metadata"]["uid"]
        assert json.loads(request.body)["preconditions"] == {"uid": uid}
    [srv] = k8s.servers
    api = KubernetesAPI(f"http://{srv.host}:{srv.port}", None, None, verify=False)
    listed = await asyncio.to_thread(api.call, "GET", "/apis/" + BGPPEERS)
    assert listed is not None
    assert {item["metadata"]["name"] for item in listed["items"]} == {"tor-a", "peer-to-rrs-edge"}


@pytest.mark.asyncio
async def test_a_refused_delete_is_reported_and_the_sync_still_answers(
    k8s: kmock.KubernetesEmulator,
) -> None:
    scenario = removing_scenario(k8s)
    k8s["delete", f"/apis/{BGPPEERS}/rrs-to-rrs"] << kmock.KubernetesError(
        status=403, reason="Forbidden"
    )
    scenario.run_until_still()

    answer = await asyncio.to_thread(post, k8s, scenario.topology_request())

    failed = condition(answer, "LegacyBGPPeers")
    assert (failed["status"], failed["reason"]) == ("True", "RemoveFailed")
    assert "HTTP 403" in failed["message"]
    assert "BGPPeer 'rrs-to-rrs'" in failed["message"]
    assert answer["children"], "our BGPPeers are still answered"


def test_status_names_at_most_a_hundred_of_them_and_counts_them_all() -> None:
    scenario, _ = old_scenario()
    extra = {
        f"peer-to-rrs-1{n:04d}-uid": bgp_peer(
            f"peer-to-rrs-1{n:04d}-uid",
            "kubernetes.io/hostname=='x'",
            f"{KEY}=='1{n:04d}'",
            600 + n,
        )
        for n in range(200)
    }
    scenario.foreign_peers |= extra
    scenario.step()
    legacy = status_of(scenario)["legacyOperator"]
    assert legacy["count"] == 1 + 15 * 3 + 200
    assert legacy["bgpPeers"] == legacy_names(scenario.foreign_peers)[:100]
