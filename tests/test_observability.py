"""What operators see: Prometheus metrics after syncs, one JSON log line per sync, stack traces
only for bugs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TestClient, fixed_clock
from golden import FIXTURES
from scenario import ZONE, Scenario, zoned_nodes
from served import serving

from hooks import controllers, wire
from hooks import handlers as handlers_module
from hooks.app import create_app
from hooks.paths import PathReport, count_paths
from hooks.sessions import nodes_from_objects


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
        'rr_zone_reflectors_expected{owner="default",zone=',
        'rr_zone_reflectors_actual{owner="default",zone=',
        'rr_zone_eligible_nodes{owner="default",zone=',
        'rr_plan_changes_total{owner="default"} 1.0',
        'rr_reflectors_draining{owner="default"} 0.0',
        'rr_bgp_peers{owner="default"}',
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


def test_a_bug_is_logged_at_error_with_its_last_frames_cut_to_size(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(controllers, "decide_topology", broken)
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        answer = client.post("/topology/sync", content=body("topology-sync", "one-zone"))
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error", "field": None}
    (record,) = [r for r in caplog.records if r.name == "hooks" and r.levelno == logging.ERROR]
    line = json.loads(record.getMessage())
    assert line["error"] == "KeyError: 'boom'"
    assert "in broken" in line["trace"] and len(line["trace"]) <= 2100


def test_metrics_include_the_process_figures() -> None:
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        text = client.get("/metrics").text
    for family in ("process_resident_memory_bytes ", "process_cpu_seconds_total ", "python_info{"):
        assert family in text, family


def test_the_served_log_is_json_lines_access_lines_included(tmp_path: Path) -> None:
    """`python -m hooks serve` over a socket: uvicorn's own lines are JSON like the hooks'."""
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file, serving({"LOG_LEVEL": "info"}, log_file) as (_, port):
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/nowhere", timeout=5).status_code == 404
        answer = httpx.post(f"{url}/node/sync", content=b"{", timeout=5)
        assert answer.status_code == 400
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    access = [line for line in lines if "access" in line]
    assert {"access": "GET /nowhere", "status": 404} in [
        {"access": a["access"], "status": a["status"]} for a in access
    ]
    assert any(a["access"] == "POST /node/sync" and a["status"] == 400 for a in access)
    hook = next(line for line in lines if line.get("hook") == "node_sync")
    assert hook["outcome"] == "bad_request"
    started = [line for line in lines if line.get("logger") == "uvicorn.error"]
    assert any("Uvicorn running on" in line["message"] for line in started), started


def converged(topology: str) -> Scenario:
    spec = {"topology": topology, "zoneLabel": ZONE, "min": 2, "ratio": 0.1}
    scenario = Scenario(spec, zoned_nodes({"a": 12, "b": 10, "c": 8}), check=False)
    scenario.run_until_still()
    return scenario


def gauge(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    [line] = [x for x in text.splitlines() if x.startswith(f"{name}{{{wanted}}} ")]
    return float(line.split()[-1])


@pytest.mark.parametrize("topology", ["simple", "multi", "quorum"])
def test_route_count_gauges_equal_the_count_over_the_labelled_cluster(topology: str) -> None:
    scenario = converged(topology)
    expected = count_paths(nodes_from_objects(scenario.node_map.values()), scenario.bgp_peers())

    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        client.post("/topology/sync", content=scenario.topology_request())
        text = client.get("/metrics").text

    owner = {"owner": "default"}
    assert not expected.exploded and expected.paths_client_max > 1
    assert gauge(text, "rr_paths_per_prefix", **owner, role="client", stat="max") == (
        expected.paths_client_max
    )
    assert gauge(text, "rr_paths_per_prefix", **owner, role="client", stat="mean") == (
        expected.paths_client_mean
    )
    assert gauge(text, "rr_paths_per_prefix", **owner, role="reflector", stat="max") == (
        expected.paths_rr_max
    )
    assert gauge(text, "rr_routes_per_node", **owner, stat="max") == expected.routes_per_node_max
    assert gauge(text, "rr_routes_per_node", **owner, stat="mean") == (
        expected.routes_per_node_mean
    )
    assert gauge(text, "rr_paths_exploded", **owner) == 0
    # The stated bound comes from the plan (one path per RR of a client's group, per RR sharing
    # an RR's cluster ID), and the model's count keeps within it.
    status = scenario.status or {}
    group_size = max(len(g["reflectors"]) for g in status["groups"])
    ids = [rr["clusterID"] for rr in status["routeReflectors"]]
    cluster_size = max(ids.count(i) for i in ids)
    client_bound = gauge(text, "rr_paths_per_prefix_bound", **owner, role="client")
    rr_bound = gauge(text, "rr_paths_per_prefix_bound", **owner, role="reflector")
    assert (client_bound, rr_bound) == (min(group_size, 16), min(cluster_size, 32))
    assert expected.paths_client_max <= client_bound
    assert expected.paths_rr_max <= rr_bound


def test_routes_are_counted_again_only_when_the_peerings_or_the_rrs_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> PathReport:
        report = count_paths(*args, **kwargs)
        counted.append(report.routes_per_node_max)
        return report

    monkeypatch.setattr(handlers_module, "count_paths", counting)
    scenario = converged("simple")
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        client.post("/topology/sync", content=scenario.topology_request())
        client.post("/topology/sync", content=scenario.topology_request())
        assert len(counted) == 1  # a steady sync costs no count
        scenario.set_spec(min=3)
        scenario.run_until_still()
        client.post("/topology/sync", content=scenario.topology_request())
    assert len(counted) == 2 and counted[1] > counted[0]


def test_an_exploding_count_sets_the_gauges_to_its_lower_bound_and_flags_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def capped(*args: Any, **kwargs: Any) -> PathReport:
        return count_paths(*args, **kwargs, budget=50)

    monkeypatch.setattr(handlers_module, "count_paths", capped)
    scenario = converged("multi")
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        client.post("/topology/sync", content=scenario.topology_request())
        text = client.get("/metrics").text
    lower = capped(nodes_from_objects(scenario.node_map.values()), scenario.bgp_peers())
    assert lower.exploded
    assert gauge(text, "rr_paths_exploded", owner="default") == 1
    assert gauge(text, "rr_routes_per_node", owner="default", stat="max") == (
        lower.routes_per_node_max
    )


@pytest.mark.parametrize("topology", ["simple", "multi", "quorum"])
def test_planned_nodes_carry_the_labels_the_node_hook_gives_them(topology: str) -> None:
    scenario = converged(topology)
    request = wire.decode(scenario.topology_request(), wire.TopologySyncRequest)
    decision = controllers.decide_topology(request, {}, scenario.now)

    planned = controllers.planned_nodes(
        decision, (n.to_info() for n in wire.decode_nodes(request.related))
    )

    assert sorted(planned, key=lambda n: n.name) == nodes_from_objects(scenario.node_map.values())


def role_changes_metric(text: str) -> float:
    found = [line for line in text.splitlines() if line.startswith("rr_role_changes_total{")]
    assert found == [f'rr_role_changes_total{{owner="default"}} {found[0].split()[-1]}']
    return float(found[0].split()[-1])


def test_role_changes_count_each_node_that_gained_or_lost_the_reflector_role() -> None:
    spec = {"zoneLabel": "topology.kubernetes.io/zone", "min": 2}
    scenario = Scenario(spec, zoned_nodes({"a": 4, "b": 4}))
    scenario.run_until_still()
    settled = len(scenario.history)
    replaced = sorted(scenario.reflectors())[0]
    scenario.cordon(replaced)
    scenario.run_until_still()
    assert replaced not in scenario.reflectors()

    # Replayed at the moments they were made: session reports are dated by the scenario's clock.
    moment = [scenario.history[settled - 1].now]
    with TestClient(create_app(environ={}, clock=lambda: moment[0])) as client:
        client.post("/topology/sync", content=scenario.history[settled - 1].request)
        assert role_changes_metric(client.get("/metrics").text) == 0.0
        for record in scenario.history[settled:]:
            moment[0] = record.now
            client.post("/topology/sync", content=record.request)
        text = client.get("/metrics").text

    # The cordoned RR lost the role, its replacement gained it: two, however many syncs it took.
    assert role_changes_metric(text) == 2.0
    assert [
        r.decision.role_changes for r in scenario.history[settled:] if r.decision.role_changes
    ] == [1, 1]
