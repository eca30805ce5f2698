"""The monitoring overlay: alerts checked and unit-tested by promtool, a scrape promtool accepts,
every metric a rule or the dashboard names really exported, label values bounded."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import NOW, TestClient, fixed_clock
from golden import FIXTURES
from scenario import ZONE, Scenario, zoned_nodes
from test_manifests import Manifest, build

from hooks.app import create_app

ROOT = Path(__file__).parents[1]
OVERLAY = ROOT / "metacontroller" / "overlays" / "monitoring"
HERE = Path(__file__).parent / "monitoring"
README = (ROOT / "README.md").read_text()
INSTALL = "make promtool"
METRIC = re.compile(r"\brr_[a-z_]+")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is not None:
        return found
    if os.environ.get("RR_SKIP_PROMTOOL") == "1":
        pytest.skip("promtool missing and RR_SKIP_PROMTOOL=1")
    pytest.fail(f"promtool is missing: run `{INSTALL}` (or set RR_SKIP_PROMTOOL=1 to skip)")


def rendered() -> tuple[Manifest, ...]:
    return build(str(OVERLAY))


def only(kind: str) -> Manifest:
    [found] = [m for m in rendered() if m["kind"] == kind]
    return found


def rules() -> list[dict[str, Any]]:
    return [rule for group in only("PrometheusRule")["spec"]["groups"] for rule in group["rules"]]


def alerts() -> list[str]:
    return [rule["alert"] for rule in rules()]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OVERLAY / "grafana-dashboard.json").read_text())
    return loaded


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def write_rules(where: Path) -> Path:
    path = where / "rules.yaml"
    path.write_text(yaml.safe_dump(only("PrometheusRule")["spec"]))
    return path


def run(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], input=stdin, capture_output=True, text=True, timeout=60
    )


# The manifests


def test_the_overlay_renders_a_service_monitor_and_a_prometheus_rule_of_the_operators_shape() -> (
    None
):
    schemas = yaml.safe_load((HERE / "prometheus-operator-schemas.yaml").read_text())
    for kind in ("ServiceMonitor", "PrometheusRule"):
        jsonschema.validate(only(kind), schemas[kind])
        assert only(kind)["metadata"]["namespace"] == "route-reflector"


def test_the_service_monitor_selects_the_hook_service_and_names_its_metrics_port() -> None:
    service = next(m for m in rendered() if m["kind"] == "Service")
    monitor = only("ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["namespace"] in monitor["namespaceSelector"]["matchNames"]
    [endpoint] = monitor["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}


def test_every_alert_has_a_summary_a_description_and_a_runbook_section_in_the_readme() -> None:
    assert len(alerts()) == len(set(alerts())) == 9
    for rule in rules():
        notes = rule["annotations"]
        assert notes["summary"] and len(notes["description"]) > 80, rule["alert"]
        anchor = f"runbook-{rule['alert'].lower()}"
        assert notes["runbook"] == f"README.md#{anchor}"
        assert f"### Runbook: {rule['alert']}" in README, rule["alert"]
        troubleshooting = README.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
        assert f"(#{anchor})" in troubleshooting, f"Troubleshooting does not link {anchor}"


# promtool


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    done = run(promtool(), "check", "rules", write_rules(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_every_alert_has_promtool_unit_tests_that_fire_and_stay_quiet() -> None:
    cases = yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    for alert in alerts():
        mine = [check for check in checks if check["alertname"] == alert]
        assert any(check["exp_alerts"] for check in mine), f"{alert} never asserted to fire"
        assert any(not check["exp_alerts"] for check in mine), f"{alert} never asserted quiet"


def test_the_promtool_unit_tests_pass(tmp_path: Path) -> None:
    write_rules(tmp_path)
    shutil.copy(HERE / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    done = run(promtool(), "test", "rules", tmp_path / "alerts_test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_promtool_unit_tests_fail_when_an_alert_never_fires(tmp_path: Path) -> None:
    spec = only("PrometheusRule")["spec"]
    spec["groups"][0]["rules"][0]["expr"] = "vector(1) == 0"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(HERE / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    done = run(promtool(), "test", "rules", tmp_path / "alerts_test.yaml")
    assert done.returncode != 0 and "RouteReflectorTopologyNotReady" in done.stdout + done.stderr


# A real scrape


@functools.cache
def scrape() -> str:
    """/metrics after a few syncs: a converged topology, one with RRs still Pending (waitSeconds
    set), node syncs and a bad request."""
    spec = {"topology": "simple", "zoneLabel": ZONE, "min": 2, "ratio": 0.1, "waitSeconds": 300}
    pending = Scenario(spec, zoned_nodes({"a": 6, "b": 5}), check=False, name="pending")
    pending.step()
    converged = Scenario(spec, zoned_nodes({"a": 12, "b": 10, "c": 8}), check=False)
    converged.run_until_still()
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        for scenario in (converged, pending):
            assert client.post("/topology/sync", content=scenario.topology_request()).is_success
        node = (FIXTURES / "node-sync" / "client" / "request.json").read_bytes()
        assert client.post("/node/sync", content=node).is_success
        assert client.post("/topology/sync", content=b"{").status_code == 400
        text: str = client.get("/metrics").text
        return text


def exported() -> set[str]:
    """Sample names, and family names (`# TYPE` lines: a histogram's name without _bucket)."""
    lines = scrape().splitlines()
    samples = {line.split("{")[0].split()[0] for line in lines if line[:1] != "#"}
    return samples | {line.split()[2] for line in lines if line.startswith("# TYPE ")}


def test_promtool_finds_nothing_to_fix_in_a_real_scrape() -> None:
    done = run(promtool(), "check", "metrics", stdin=scrape())
    assert done.returncode == 0 and not done.stdout + done.stderr, done.stdout + done.stderr


def test_every_metric_a_rule_names_is_exported_after_a_few_syncs() -> None:
    named = {name for rule in rules() for name in METRIC.findall(yaml.safe_dump(rule))}
    assert {"rr_condition", "rr_paths_per_prefix_bound", "rr_hook_errors_total"} <= named
    assert named <= exported(), sorted(named - exported())


def test_every_metric_a_dashboard_query_names_is_exported_after_a_few_syncs() -> None:
    named = {name for query in dashboard_queries() for name in METRIC.findall(query)}
    assert len(named) >= 15
    assert named <= exported(), sorted(named - exported())


def test_the_dashboard_shows_what_the_issue_asks_for_and_imports_as_is() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and "id" not in board
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "owner"}
    queries = " ".join(dashboard_queries())
    for family in (
        "rr_zone_reflectors_expected",
        "rr_zone_reflectors_actual",
        "rr_zone_eligible_nodes",
        "rr_plan_changes_total",
        "rr_reflectors_draining",
        "rr_hook_duration_seconds_bucket",
        "rr_hook_request_bytes_bucket",
        "rr_hook_errors_total",
        "rr_bgp_peers",
        "rr_paths_per_prefix",
        "rr_routes_per_node",
    ):
        assert family in queries, family
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"


# Cardinality


def forged_topology(parent: str, zones: int) -> bytes:
    """A topology sync naming a parent and zones nobody created."""
    request = json.loads((FIXTURES / "topology-sync" / "one-zone" / "request.json").read_bytes())
    request["parent"]["metadata"]["name"] = parent
    request["parent"]["spec"]["zoneLabel"] = ZONE
    for index, node in enumerate(request["related"]["Node.v1"].values()):
        node["metadata"]["labels"][ZONE] = f"{parent}-zone-{index % zones}"
    return json.dumps(request).encode()


def series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and line[0] != "#"]


def test_two_hundred_requests_with_made_up_names_keep_metrics_small() -> None:
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        assert client.post("/topology/sync", content=forged_topology("default", 3)).is_success
        before = client.get("/metrics").text
        for _ in range(200):
            name = uuid.uuid4().hex
            assert client.post("/topology/sync", content=forged_topology(name, 4)).is_success
        after = client.get("/metrics").text
    # 16 owners at most, and 512 zone series (x3 gauges) in all, whatever the requests name
    assert len(after) < 200_000, len(after)
    assert len(series(after)) < 2_500, len(series(after))
    zones = {line.split("}")[0] for line in series(after) if "rr_zone_eligible_nodes{" in line}
    assert len(zones) <= 512
    owners = {m for m in re.findall(r'owner="([^"]+)"', after)}
    assert len(owners) == 16 and "default" in owners
    assert 'rr_metrics_rejected_total{kind="owner"} 185.0' in after
    assert 'rr_zone_eligible_nodes{owner="default",zone="default-zone-0"}' in before + after


def test_a_zone_gone_from_the_latest_sync_loses_its_series() -> None:
    with TestClient(create_app(environ={}, clock=fixed_clock)) as client:
        client.post("/topology/sync", content=forged_topology("default", 4))
        four = client.get("/metrics").text
        client.post("/topology/sync", content=forged_topology("default", 2))
        two = client.get("/metrics").text
    assert 'zone="default-zone-3"' in four and 'zone="default-zone-3"' not in two
    assert 'rr_zone_eligible_nodes{owner="default",zone="default-zone-1"}' in two


def test_an_owner_not_synced_for_an_hour_is_forgotten_and_frees_its_slot() -> None:
    now = [NOW]
    env = {"METRICS_MAX_OWNERS": "1"}
    with TestClient(create_app(environ=env, clock=lambda: now[0])) as client:
        client.post("/topology/sync", content=forged_topology("evil", 2))
        client.post("/topology/sync", content=forged_topology("default", 2))
        full = client.get("/metrics").text
        now[0] = NOW + timedelta(hours=1, seconds=1)
        client.post("/topology/sync", content=forged_topology("default", 2))
        later = client.get("/metrics").text
    assert 'owner="evil"' in full and 'owner="default"' not in full
    assert 'rr_metrics_rejected_total{kind="owner"} 1.0' in full
    assert 'owner="evil"' not in later and 'owner="default"' in later


def test_zones_beyond_the_bound_are_counted_not_exported() -> None:
    with TestClient(create_app(environ={"METRICS_MAX_ZONES": "3"}, clock=fixed_clock)) as client:
        client.post("/topology/sync", content=forged_topology("default", 5))
        text = client.get("/metrics").text
    zones = [line for line in series(text) if line.startswith("rr_zone_eligible_nodes{")]
    assert len(zones) == 3
    assert 'rr_metrics_rejected_total{kind="zone"} 2.0' in text
