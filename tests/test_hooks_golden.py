"""Every golden request gives its response, byte for byte, from the function and over HTTP.

UPDATE_GOLDEN=1 rewrites the responses when behaviour changes on purpose: review the diff.
"""

from __future__ import annotations

import json
import os

import pytest
from golden import FIXTURES, ROUTES, call_hook, canonical, cases
from starlette.testclient import TestClient

from hooks import wire
from hooks.legacy import carries_reflector_label
from hooks.status import status_document

CLUSTER_ID = "projectcalico.org/RouteReflectorClusterID"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CASES = cases()


def test_every_hook_has_golden_cases() -> None:
    hooks = {hook for hook, _ in CASES}
    assert hooks == set(ROUTES)
    assert len([c for h, c in CASES if h == "topology-sync"]) >= 15


@pytest.mark.parametrize(("hook", "case"), CASES, ids=[f"{h}/{c}" for h, c in CASES])
def test_hook_function_answers_the_golden_response(hook: str, case: str) -> None:
    folder = FIXTURES / hook / case
    answer = call_hook(hook, (folder / "request.json").read_bytes())
    stored = folder / "response.json"
    if UPDATE:
        stored.write_text(canonical(answer))
    assert stored.exists(), f"no {stored}: run UPDATE_GOLDEN=1 pytest {__file__} and review it"
    expected = stored.read_text()
    assert json.loads(answer) == json.loads(expected)
    assert canonical(answer) == expected, "same JSON, but the key order changed"


@pytest.mark.parametrize(("hook", "case"), CASES, ids=[f"{h}/{c}" for h, c in CASES])
def test_service_answers_the_same_bytes_as_the_function(
    hook: str, case: str, client: TestClient
) -> None:
    folder = FIXTURES / hook / case
    body = (folder / "request.json").read_bytes()
    response = client.post(ROUTES[hook], content=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content == call_hook(hook, body)
    assert canonical(response.content) == (folder / "response.json").read_text()


@pytest.mark.parametrize(
    ("hook", "case"),
    [c for c in CASES if c[0] == "topology-sync"],
    ids=[c for h, c in CASES if h == "topology-sync"],
)
def test_topology_sync_is_byte_stable_on_repeat(hook: str, case: str) -> None:
    body = (FIXTURES / hook / case / "request.json").read_bytes()
    assert call_hook(hook, body) == call_hook(hook, body)


def _labelled(request: dict[str, object]) -> dict[str, str]:
    """Nodes carrying the default RR label now (or the original operator's multi form of it),
    with the cluster ID annotation they carry."""
    nodes = request["related"]["Node.v1"]  # type: ignore[index]
    return {
        name: n["metadata"].get("annotations", {}).get(CLUSTER_ID, "")
        for name, n in nodes.items()
        if carries_reflector_label(n["metadata"].get("labels", {}), "calico-route-reflector", "")
    }


# Ready reasons that speak of something before the labels: with these, Ready is False whatever
# the nodes carry (nothing is applied, or the plan waits on sessions, a transition, an operator).
BEFORE_LABELS = (
    "InvalidSpec",
    "Paused",
    "TransitionPending",
    "NoReflectors",
    "LegacyLabelsPending",
)


@pytest.mark.parametrize("case", [c for h, c in CASES if h == "topology-sync"], ids=str)
def test_ready_converged_exactly_when_the_planned_reflectors_carry_their_labels(case: str) -> None:
    """Ready=True/Converged promises that the labels on the nodes are the plan, no more, no less;
    and when they are the plan (nothing else pending), Ready says so."""
    folder = FIXTURES / "topology-sync" / case
    request = json.loads((folder / "request.json").read_text())
    status = json.loads(call_hook("topology-sync", (folder / "request.json").read_bytes()))[
        "status"
    ]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    planned = {rr["node"]: rr["clusterID"] for rr in status.get("routeReflectors", [])}
    labels_are_the_plan = _labelled(request) == planned
    if ready["reason"] in BEFORE_LABELS:
        assert ready["status"] == "False", ready
        return
    assert (ready["status"] == "True") is labels_are_the_plan, ready
    assert ready["reason"] == ("Converged" if labels_are_the_plan else "LabelsPending"), ready


@pytest.mark.parametrize("case", [c for h, c in CASES if h == "topology-sync"], ids=str)
def test_the_status_written_reads_back_whole(case: str) -> None:
    """The status the sync writes is the struct its readers decode: read back and written
    again, every field and its place survive (a field the readers do not know would be lost)."""
    written = json.loads((FIXTURES / "topology-sync" / case / "response.json").read_text())[
        "status"
    ]
    read = wire.read_status(json.dumps(written).encode())
    assert read.topology == written.get("topology", "")
    again = status_document(read)
    assert json.dumps(again) == json.dumps(written)
