"""What the hooks emit validates against the schemas it is written to: Calico's BGPPeer CRD, our
RouteReflectorTopology status, and Metacontroller's strict (v2) response envelopes."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from golden import FIXTURES, call_hook, cases

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tests" / "data" / "schemas"
CASES = cases()
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

Json = dict[str, Any]


def _strict(schema: Json) -> Json:
    """The schema as the API server applies it: fields it does not declare would be pruned
    (silently lost), so here they are an error."""
    schema = copy.deepcopy(schema)

    def walk(node: Json) -> None:
        if not isinstance(node, dict):
            return
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.get("properties", {}).values():
            walk(value)
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])

    walk(schema)
    return schema


def _crd_schema(path: Path, version: str) -> Json:
    crd = yaml.safe_load(path.read_text())
    found = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema: Json = found["schema"]["openAPIV3Schema"]
    return schema


@functools.cache
def bgp_peer_validator() -> jsonschema.Draft7Validator:
    schema = _crd_schema(SCHEMAS / "crd.projectcalico.org_bgppeers.yaml", "v1")
    return jsonschema.Draft7Validator(_strict(schema))


@functools.cache
def status_validator() -> jsonschema.Draft7Validator:
    schema = _crd_schema(ROOT / "metacontroller" / "base" / "crd.yaml", "v1alpha1")
    return jsonschema.Draft7Validator(schema["properties"]["status"])


def answers(hook: str) -> list[tuple[str, Json]]:
    """Every answer for `hook`: the stored golden response and what the code answers now."""
    found = []
    for h, case in CASES:
        if h != hook:
            continue
        folder = FIXTURES / h / case
        found.append((f"{case}/stored", json.loads((folder / "response.json").read_text())))
        live = call_hook(h, (folder / "request.json").read_bytes())
        found.append((f"{case}/live", json.loads(live)))
    return found


TOPOLOGY = answers("topology-sync")
PEERS = [
    (f"{case}/{child['metadata']['name']}", child)
    for case, answer in TOPOLOGY
    for child in answer["children"]
]


def test_the_schemas_are_the_repositorys_own() -> None:
    assert (SCHEMAS / "crd.projectcalico.org_bgppeers.yaml").is_file()
    assert PEERS, "the golden cases emit BGPPeers"


@pytest.mark.parametrize(("where", "peer"), PEERS, ids=[p[0] for p in PEERS])
def test_every_bgp_peer_validates_against_calicos_crd(where: str, peer: Json) -> None:
    errors = sorted(bgp_peer_validator().iter_errors(peer), key=str)
    assert not errors, [e.message for e in errors]
    assert peer["apiVersion"] == "crd.projectcalico.org/v1"
    assert peer["kind"] == "BGPPeer"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", peer["metadata"]["name"])
    assert len(peer["metadata"]["name"]) <= 253
    assert "peerIP" not in peer["spec"], "Calico-to-Calico sessions use peerSelector"
    assert set(peer["spec"]) >= {"nodeSelector", "peerSelector"}


@pytest.mark.parametrize(("where", "answer"), TOPOLOGY, ids=[t[0] for t in TOPOLOGY])
def test_every_topology_status_validates_against_our_crd(where: str, answer: Json) -> None:
    status = answer["status"]
    errors = sorted(status_validator().iter_errors(status), key=str)
    assert not errors, [e.message for e in errors]
    for condition in status["conditions"]:
        assert condition["status"] in ("True", "False", "Unknown")
        assert RFC3339.match(condition["lastTransitionTime"]), condition
    types = {c["type"]: c for c in status["conditions"]}
    allowed = {"Ready", "Degraded", "Reconciling", "Stalled", "LegacyBGPPeers", "LabelsMatched"}
    assert {"Ready", "Degraded"} <= set(types) <= allowed
    # LabelsMatched only while a configured label matches no node.
    assert ("LabelsMatched" in types) == where.startswith("zone-label-on-no-node/")
    progress = [types[t] for t in ("Reconciling", "Stalled") if t in types]
    # Flux-style progress conditions only while True, never both, and only when not Ready.
    assert len(progress) <= 1
    for condition in progress:
        assert condition["status"] == "True"
        assert types["Ready"]["status"] == "False"
        assert condition["reason"] == types["Ready"]["reason"]
    generations = {c["observedGeneration"] for c in status["conditions"]}
    assert len(generations) == 1 and isinstance(generations.pop(), int)
    assert "observedGeneration" not in status, "Metacontroller adds it"
    assert [rr["node"] for rr in status.get("routeReflectors", [])] == sorted(
        rr["node"] for rr in status.get("routeReflectors", [])
    )
    assert [z["name"] for z in status.get("zones", [])] == sorted(
        z["name"] for z in status.get("zones", [])
    )


@pytest.mark.parametrize(("where", "answer"), TOPOLOGY, ids=[t[0] for t in TOPOLOGY])
def test_composite_envelope_has_exactly_the_documented_fields(where: str, answer: Json) -> None:
    assert {"status", "children"} <= set(answer) <= {"status", "children", "resyncAfterSeconds"}
    assert isinstance(answer["children"], list)
    if "resyncAfterSeconds" in answer:
        assert isinstance(answer["resyncAfterSeconds"], int | float)
        assert answer["resyncAfterSeconds"] > 0
    names = [c["metadata"]["name"] for c in answer["children"]]
    assert len(names) == len(set(names))
    for child in answer["children"]:
        assert set(child) == {"apiVersion", "kind", "metadata", "spec"}


NODE = answers("node-sync")


@pytest.mark.parametrize(("where", "answer"), NODE, ids=[n[0] for n in NODE])
def test_decorator_envelope_has_exactly_the_documented_fields(where: str, answer: Json) -> None:
    assert set(answer) == {"labels", "annotations", "status", "attachments"}
    assert answer["status"] is None
    assert answer["attachments"] == []
    for kind in ("labels", "annotations"):
        assert all(v is None or isinstance(v, str) for v in answer[kind].values())


CUSTOMIZE = answers("topology-customize") + answers("node-customize")


@pytest.mark.parametrize(("where", "answer"), CUSTOMIZE, ids=[c[0] for c in CUSTOMIZE])
def test_customize_envelope_has_exactly_the_documented_fields(where: str, answer: Json) -> None:
    assert set(answer) == {"relatedResources"}
    for rule in answer["relatedResources"]:
        assert {"apiVersion", "resource"} <= set(rule)
        assert set(rule) - {"apiVersion", "resource"} in ({"labelSelector"}, {"names"})


def test_the_bgp_peer_schema_rejects_what_the_api_server_would_prune_or_refuse() -> None:
    """Guard against a vacuous validator: unknown and mistyped fields must fail."""
    peer = copy.deepcopy(PEERS[0][1])
    peer["spec"]["peerSelectr"] = "all()"
    assert list(bgp_peer_validator().iter_errors(peer))
    peer = copy.deepcopy(PEERS[0][1])
    peer["spec"]["asNumber"] = "not a number"
    assert list(bgp_peer_validator().iter_errors(peer))
