"""The service over real HTTP (uvicorn started by `python -m hooks serve`) and under TestClient."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import TestClient, fixed_clock
from golden import FIXTURES, ROUTES, call_hook
from served import serving

from hooks import controllers
from hooks.app import create_app

# One case per hook whose answer does not depend on the clock, so the live server (real clock)
# must answer the very bytes of the function.
CLOCK_FREE = {
    "topology-sync": "converged",
    "node-sync": "former-reflector",
    "topology-customize": "default",
    "node-customize": "default",
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`python -m hooks serve` on a free port, with none of the operator's environment."""
    with serving(stderr=subprocess.PIPE) as (_, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


def _request(hook: str, case: str) -> bytes:
    return (FIXTURES / hook / case / "request.json").read_bytes()


@pytest.mark.parametrize("hook", sorted(ROUTES))
def test_every_route_answers_what_the_function_answers(hook: str, http: httpx.Client) -> None:
    body = _request(hook, CLOCK_FREE[hook])
    response = http.post(ROUTES[hook], content=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content == call_hook(hook, body)


def test_healthz_answers_ok(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_metrics_are_prometheus_text_with_hook_durations(http: httpx.Client) -> None:
    http.post(ROUTES["node-sync"], content=_request("node-sync", "client"))
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE rr_hook_duration_seconds histogram" in response.text
    assert 'rr_hook_duration_seconds_count{hook="node_sync"}' in response.text


def test_node_hook_keeps_null_inside_labels_and_a_null_status(http: httpx.Client) -> None:
    response = http.post(ROUTES["node-sync"], content=_request("node-sync", "former-reflector"))
    assert response.status_code == 200
    raw = response.content
    assert b'"status":null' in raw
    assert b'"calico-route-reflector":null' in raw
    assert b'"projectcalico.org/RouteReflectorClusterID":null' in raw
    answer = response.json()
    assert answer["status"] is None
    assert answer["labels"]["route-reflector.dev/reflector"] is None


def _assert_bad_request(response: httpx.Response, field: str | None) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert set(answer) == {"error", "field"}
    assert answer["error"]
    assert answer["field"] == field


@pytest.mark.parametrize("route", sorted(ROUTES.values()))
def test_malformed_json_is_a_400(route: str, http: httpx.Client) -> None:
    _assert_bad_request(http.post(route, content=b'{"parent": {'), None)


@pytest.mark.parametrize("route", ["/topology/sync", "/topology/customize", "/node/customize"])
def test_missing_parent_is_a_400_naming_it(route: str, http: httpx.Client) -> None:
    body: dict[str, Any] = {"controller": {}, "children": {}, "related": {}}
    _assert_bad_request(http.post(route, json=body), "parent")


def test_mistyped_related_is_a_400_naming_it(http: httpx.Client) -> None:
    request = json.loads(_request("topology-sync", "one-zone"))
    request["related"] = ["not", "a", "map"]
    _assert_bad_request(http.post("/topology/sync", json=request), "related")


def test_mistyped_node_in_related_is_a_400_naming_the_node(http: httpx.Client) -> None:
    request = json.loads(_request("topology-sync", "one-zone"))
    request["related"]["Node.v1"]["node-1"]["metadata"]["labels"] = "zone-a"
    response = http.post("/topology/sync", json=request)
    assert response.status_code == 400
    assert response.json()["field"].startswith("related.Node.v1")


def test_missing_object_on_node_sync_is_a_400_naming_it(http: httpx.Client) -> None:
    request = json.loads(_request("node-sync", "client"))
    del request["object"]
    _assert_bad_request(http.post("/node/sync", json=request), "object")


def test_a_body_over_max_body_bytes_is_a_413() -> None:
    body = _request("topology-sync", "one-zone")
    assert len(body) > 1000
    with TestClient(create_app(environ={"MAX_BODY_BYTES": "1000"}, clock=fixed_clock)) as client:
        declared = client.post("/topology/sync", content=body)
        streamed = client.post("/topology/sync", content=iter([body[:600], body[600:]]))
        small = client.post("/node/customize", json={"parent": {"metadata": {"name": "n"}}})
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "MAX_BODY_BYTES" in response.json()["error"]
    assert small.status_code == 200


def test_an_internal_error_is_a_500_never_a_200(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(controllers, "decide_topology", broken)
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        response = client.post("/topology/sync", content=_request("topology-sync", "one-zone"))
        metrics = client.get("/metrics").text
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "internal error", "field": None}  # "boom" stays in the log
    assert 'rr_hook_errors_total{hook="topology_sync",reason="internal_error"} 1.0' in metrics


def test_hook_routes_take_only_post(client: TestClient) -> None:
    assert client.get("/topology/sync").status_code == 405
