"""What operators see: Prometheus metrics after syncs, one JSON log line per sync, stack traces
only for bugs."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from conftest import TestClient, fixed_clock
from golden import FIXTURES

from hooks import controllers
from hooks.app import create_app


def body(hook: str, case: str) -> bytes:
    return (FIXTURES / hook / case / "request.json").read_bytes()


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "hooks"]


def test_metrics_name_every_figure_an_operator_watches() -> None:
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        client.post("/topology/sync", content=body("topology-sync", "three-uneven-zones"))
        client.post("/node/sync", content=body("node-sync", "client"))
        client.post("/topology/sync", content=b"{")
        text = client.get("/metrics").text
    for family in (
        'rr_hook_duration_seconds_bucket{hook="topology_sync"',
        'rr_hook_duration_seconds_count{hook="node_sync"}',
        'rr_hook_request_bytes_count{hook="topology_sync"}',
        'rr_hook_errors_total{hook="topology_sync",reason="bad_request"} 1.0',
        'rr_zone_reflectors_expected{topology="default",zone=',
        'rr_zone_reflectors_actual{topology="default",zone=',
        'rr_zone_eligible_nodes{topology="default",zone=',
        'rr_plan_changes_total{topology="default"} 1.0',
        'rr_reflectors_draining{topology="default"} 0.0',
        'rr_bgp_peers{topology="default"}',
    ):
        assert family in text, family


def test_every_sync_logs_one_json_line_with_hook_parent_duration_and_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hooks")
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        client.post("/topology/sync", content=body("topology-sync", "one-zone"))
        client.post("/node/sync", content=body("node-sync", "reflector"))
    topology, node = lines(caplog)
    assert topology["hook"] == "topology_sync" and topology["outcome"] == "ok"
    assert topology["parent"] == "default" and topology["changed"] is True
    assert topology["reflectors"] == 3 and "duration_ms" in topology
    assert node["hook"] == "node_sync" and node["changes"] > 0


def test_bad_input_is_logged_without_a_stack_trace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hooks")
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        client.post("/topology/sync", content=b'{"parent": 3}')
    [record] = [r for r in caplog.records if r.name == "hooks"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert json.loads(record.getMessage())["outcome"] == "bad_request"


def test_a_bug_is_logged_with_its_stack_trace(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(controllers, "decide_topology", broken)
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        answer = client.post("/topology/sync", content=body("topology-sync", "one-zone"))
    assert answer.status_code == 500
    assert any(r.exc_info is not None for r in caplog.records if r.name == "hooks")


def role_changes_metric(text: str) -> float:
    found = [line for line in text.splitlines() if line.startswith("rr_role_changes_total{")]
    assert found == [f'rr_role_changes_total{{owner="default"}} {found[0].split()[-1]}']
    return float(found[0].split()[-1])


def test_role_changes_count_each_node_that_gained_or_lost_the_reflector_role() -> None:
    from scenario import Scenario, zoned_nodes

    spec = {"zoneLabel": "topology.kubernetes.io/zone", "min": 2}
    scenario = Scenario(spec, zoned_nodes({"a": 4, "b": 4}))
    scenario.run_until_still()
    settled = len(scenario.history)
    replaced = sorted(scenario.reflectors())[0]
    scenario.cordon(replaced)
    scenario.run_until_still()
    assert replaced not in scenario.reflectors()

    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        client.post("/topology/sync", content=scenario.history[settled - 1].request)
        assert role_changes_metric(client.get("/metrics").text) == 0.0
        for record in scenario.history[settled:]:
            client.post("/topology/sync", content=record.request)
        text = client.get("/metrics").text

    # The cordoned RR lost the role, its replacement gained it: two, however many syncs it took.
    assert role_changes_metric(text) == 2.0
    assert [
        r.decision.role_changes for r in scenario.history[settled:] if r.decision.role_changes
    ] == [1, 1]
