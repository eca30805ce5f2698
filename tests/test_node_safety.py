"""The node hook never removes what it does not own and never strips labels on missing
information; keys go back only through the topology's finalizer (issue 13, section 2)."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from conftest import TestClient, fixed_clock
from golden import FIXTURES, NOW
from scenario import Scenario, zoned_nodes

from hooks import controllers, wire
from hooks.app import create_app
from hooks.config import SpecError, load_settings

Json = dict[str, Any]
TOPOLOGY = wire.TOPOLOGY_KEY


def request(case: str) -> Json:
    loaded: Json = json.loads((FIXTURES / "node-sync" / case / "request.json").read_text())
    return loaded


def labelled_reflector() -> Json:
    """An RR carrying every key this service sets, and labels it never owns."""
    body = request("released-reflector")
    topology = body["related"][TOPOLOGY]["default"]
    topology["status"].pop("released")
    topology["metadata"].pop("deletionTimestamp")
    return body


def answer(body: Json, environ: dict[str, str] | None = None) -> Json:
    decoded = wire.decode(wire.encode(body), wire.NodeSyncRequest)
    encoded = wire.encode(controllers.node_sync(decoded, environ or {}))
    result: Json = json.loads(encoded)
    return result


def removed(result: Json) -> set[str]:
    return {k for kind in ("labels", "annotations") for k, v in result[kind].items() if v is None}


@pytest.mark.parametrize(
    "break_it",
    [
        lambda body: body["related"].pop(TOPOLOGY),
        lambda body: body.update(related=None),
        lambda body: body["related"][TOPOLOGY]["default"].update(status=None),
        lambda body: body["related"][TOPOLOGY]["default"].pop("status"),
        lambda body: body["related"][TOPOLOGY]["default"]["status"].pop("routeReflectors"),
        lambda body: body["related"][TOPOLOGY]["default"]["status"].pop("topology"),
        lambda body: body["related"][TOPOLOGY]["default"].update(status={"routeReflectors": 7}),
        lambda body: body["related"][TOPOLOGY]["default"].update(status=[1, 2]),
        lambda body: body["related"][TOPOLOGY]["default"]["spec"].update(min="three"),
    ],
    ids=[
        "no-topology",
        "related-null",
        "status-null",
        "status-absent",
        "no-routeReflectors",
        "no-topology-name",
        "unreadable-routeReflectors",
        "status-not-an-object",
        "invalid-spec",
    ],
)
def test_missing_or_unreadable_information_changes_nothing_on_a_labelled_reflector(
    break_it: Any,
) -> None:
    body = labelled_reflector()
    assert removed(answer(body)) == set(), "the intact request keeps every key"
    break_it(body)
    result = answer(body)
    assert result["labels"] == {} and result["annotations"] == {}


def test_a_released_topology_takes_back_only_the_keys_the_service_owns() -> None:
    body = request("released-reflector")
    node = body["object"]["metadata"]
    node["labels"] |= {
        "route-reflector.dev/group": "zone-a",
        "route-reflector.dev/pool": "true",  # the user's (README: a dedicated pool), not ours
        "team": "blue",
    }
    result = answer(body)
    assert removed(result) == {
        "calico-route-reflector",
        "route-reflector.dev/reflector",
        "route-reflector.dev/group",
        "projectcalico.org/RouteReflectorClusterID",
        "route-reflector.dev/managed",
    }
    assert not {k for k in result["labels"] if k.startswith("kubernetes.io/") or k == "team"}
    assert "route-reflector.dev/pool" not in result["labels"]


def test_a_managed_record_naming_foreign_labels_never_removes_them() -> None:
    body = labelled_reflector()
    body["object"]["metadata"]["annotations"]["route-reflector.dev/managed"] = json.dumps(
        {"labels": ["kubernetes.io/hostname", "kubernetes.io/os", "team"], "annotations": ["x"]}
    )
    body["object"]["metadata"]["labels"]["team"] = "blue"
    body["related"][TOPOLOGY]["default"]["status"]["routeReflectors"] = []  # no longer an RR
    result = answer(body)
    assert "route-reflector.dev/reflector" in removed(result)
    assert removed(result).isdisjoint({"kubernetes.io/hostname", "kubernetes.io/os", "team", "x"})


def test_a_node_label_key_carrying_someone_elses_value_is_never_removed() -> None:
    body = labelled_reflector()
    body["object"]["metadata"]["labels"]["calico-route-reflector"] = "theirs"
    body["related"][TOPOLOGY]["default"]["status"]["routeReflectors"] = []
    assert "calico-route-reflector" not in removed(answer(body))
    body["related"][TOPOLOGY]["default"]["status"]["released"] = True
    assert "calico-route-reflector" not in removed(answer(body))


@pytest.mark.parametrize(
    "node_label",
    [
        "kubernetes.io/os=rr",
        "k8s.io/rr=true",
        "node.kubernetes.io/rr",
        "node-role.kubernetes.io/rr=",
    ],
)
def test_a_node_label_in_a_kubernetes_reserved_namespace_is_an_invalid_spec(
    node_label: str,
) -> None:
    with pytest.raises(SpecError) as raised:
        load_settings({"nodeLabel": node_label}, {})
    assert raised.value.field == "spec.nodeLabel"
    assert "reserves" in raised.value.message


def test_a_node_label_merely_mentioning_kubernetes_is_accepted() -> None:
    settings = load_settings({"nodeLabel": "example.com/kubernetes.io-rr=yes"}, {})
    assert settings.reflector_label == ("example.com/kubernetes.io-rr", "yes")


def test_a_reserved_node_label_refuses_the_topology_and_leaves_nodes_alone() -> None:
    topology = json.loads((FIXTURES / "topology-sync" / "converged" / "request.json").read_text())
    topology["parent"]["spec"]["nodeLabel"] = "kubernetes.io/os=rr"
    decoded = wire.decode(wire.encode(topology), wire.TopologySyncRequest)
    result = json.loads(wire.encode(controllers.topology_sync(decoded, {}, NOW)))
    ready = next(c for c in result["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and "spec.nodeLabel" in ready["message"]
    assert len(result["children"]) == len(topology["children"][wire.BGPPEER_KEY])
    body = labelled_reflector()
    body["related"][TOPOLOGY]["default"]["spec"]["nodeLabel"] = "kubernetes.io/os=rr"
    body["object"]["metadata"]["labels"]["kubernetes.io/os"] = "rr"
    assert answer(body) == {**answer(body), "labels": {}, "annotations": {}}


def test_a_skipped_node_sync_is_logged_and_counted_by_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hooks")
    missing = labelled_reflector()
    missing["related"][TOPOLOGY]["default"]["status"] = None
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        for body in (missing, request("no-topology-keeps-labels"), request("reflector")):
            response = client.post("/node/sync", content=wire.encode(body))
            assert response.status_code == 200
        text = client.get("/metrics").text
    assert 'rr_node_sync_skipped_total{reason="incomplete_status"} 1.0' in text
    assert 'rr_node_sync_skipped_total{reason="no_topology"} 1.0' in text
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "hooks"]
    assert [line.get("skipped") for line in logged] == ["incomplete_status", "no_topology", None]
    assert "no plan in its status" in logged[0]["message"]


# --- uninstall through the finalizer -----------------------------------------------------------


def test_deleting_the_topology_releases_every_key_and_then_lets_it_go() -> None:
    scenario = Scenario(
        {"topology": "simple", "zoneLabel": "topology.kubernetes.io/zone", "min": 2},
        zoned_nodes({"a": 4, "b": 4}),
    )
    scenario.run_until_still()
    assert scenario.labelled()
    peers = copy.deepcopy(scenario.children[wire.BGPPEER_KEY])
    before = {n: dict(node["metadata"]["labels"]) for n, node in scenario.node_map.items()}

    first = scenario.finalize_step()  # the status says released; the node hook then acts

    assert first.finalized is False  # nodes still carried keys when it was asked
    assert first.status["released"] is True
    ready = next(c for c in first.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Releasing"
    assert scenario.children[wire.BGPPEER_KEY].keys() == peers.keys()  # kept meanwhile
    assert not scenario.labelled()
    for name, node in scenario.node_map.items():
        labels = node["metadata"]["labels"]
        assert not [k for k in labels if k.startswith("route-reflector.dev/")]
        assert "calico-route-reflector" not in labels
        assert wire.CLUSTER_ID_ANNOTATION not in node["metadata"].get("annotations", {})
        kept = {k: v for k, v in before[name].items() if not k.startswith("route-reflector.dev/")}
        kept.pop("calico-route-reflector", None)
        assert labels == kept, name

    second = scenario.finalize_step()
    assert second.finalized is True
    assert second.children == []


def test_a_superseded_topology_is_finalized_at_once_without_releasing_anything() -> None:
    body = json.loads((FIXTURES / "topology-sync" / "converged" / "request.json").read_text())
    older = copy.deepcopy(body["parent"])
    older["metadata"] |= {"name": "first", "creationTimestamp": "2020-01-01T00:00:00Z"}
    body.setdefault("related", {})[TOPOLOGY] = {"first": older}
    decoded = wire.decode(wire.encode(body), wire.TopologySyncRequest)
    result = controllers.topology_finalize(decoded, {}, NOW)
    assert result.finalized is True


def test_the_finalize_hook_answers_over_http_with_the_contract_metacontroller_reads() -> None:
    body = json.loads((FIXTURES / "topology-sync" / "converged" / "request.json").read_text())
    body["finalizing"] = True
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        response = client.post("/topology/finalize", content=wire.encode(body))
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"status", "children", "finalized", "resyncAfterSeconds"}
    assert answer["finalized"] is False and answer["status"]["released"] is True


def test_the_finalize_status_validates_against_the_topology_crd() -> None:
    from test_schemas import status_validator

    body = json.loads((FIXTURES / "topology-sync" / "converged" / "request.json").read_text())
    decoded = wire.decode(wire.encode(body), wire.TopologySyncRequest)
    status = json.loads(wire.encode(controllers.topology_finalize(decoded, {}, NOW)))["status"]
    errors = sorted(status_validator().iter_errors(status), key=str)
    assert not errors, [e.message for e in errors]
    assert status["released"] is True
