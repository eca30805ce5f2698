"""`python -m hooks verify`: a NodeList (planned first) or a plan joined with its NodeList is
proven to route; exit 0 when it does, 1 when a check fails, 2 when the input is unusable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import CliRunner, input_files
from strategies import make_node

from hooks.verify import VerifyReport

ROOT = Path(__file__).resolve().parents[1]
ZONE = "topology.kubernetes.io/zone"
TOPOLOGY = {
    "apiVersion": "route-reflector.dev/v1alpha1",
    "kind": "RouteReflectorTopology",
    "metadata": {"name": "default"},
    "spec": {"topology": "multi", "zoneLabel": ZONE, "min": 2, "max": 3, "ratio": 0.1},
}

Json = dict[str, Any]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads the environment as the service does: no stray fallback may leak in."""
    for name in list(os.environ):
        if name.startswith(("ROUTE_REFLECTOR_", "DATASTORE")):
            monkeypatch.delenv(name)


def node_list() -> Json:
    nodes = [make_node(f"node-{i:02d}", f"zone-{'abc'[i % 3]}", "plain", i) for i in range(15)]
    return {"apiVersion": "v1", "kind": "List", "items": nodes}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return input_files(tmp_path, node_list(), json.dumps(TOPOLOGY), "json")


def joined_plan(run_cli: CliRunner, nodes: Path, topology: Path) -> Json:
    """`plan -o json` joined with its NodeList, as jq -s '.[0] + {items: .[1].items}' does."""
    code, out, err = run_cli("plan", str(nodes), "--topology", str(topology), "-o", "json")
    assert code == 0, err
    plan: Json = json.loads(out)
    return plan | {"items": json.loads(nodes.read_text())["items"]}


def joined_file(run_cli: CliRunner, nodes: Path, topology: Path, folder: Path) -> Path:
    """The joined plan written to a file `verify` reads."""
    joined = folder / "joined.json"
    joined.write_text(json.dumps(joined_plan(run_cli, nodes, topology)))
    return joined


def test_python_dash_m_hooks_verify_exits_0_and_prints_the_verdict(
    files: tuple[Path, Path],
) -> None:
    nodes, topology = files
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ROUTE_REFLECTOR_", "DATASTORE"))
    }
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "hooks", "verify", str(nodes), "--topology", str(topology)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "verify: OK"
    assert "reachability: every node learns every other node's route" in lines
    assert any(line.startswith("single RR failure: tolerated (") for line in lines), lines
    assert "RR pair failure: not checked" in lines
    assert any(line.startswith("paths per remote prefix: at clients max ") for line in lines)
    assert any(line.startswith("routes per node: max ") for line in lines)


def test_pairs_checks_every_pair_of_rrs_failing(
    files: tuple[Path, Path], run_cli: CliRunner
) -> None:
    nodes, topology = files
    code, out, err = run_cli("verify", str(nodes), "--topology", str(topology), "--pairs")
    assert (code, err) == (0, "")
    # 3 zones x max(min 2, 5 x 0.1) = 6 RRs in groups of 3 over 2+ zones: any two may fail.
    assert "nodes 15 (6 route reflectors)" in out
    assert "RR pair failure: tolerated (15 checked)" in out.splitlines()


def test_json_output_is_the_report_with_its_verdict(
    files: tuple[Path, Path], run_cli: CliRunner
) -> None:
    nodes, topology = files
    code, out, _ = run_cli("verify", str(nodes), "--topology", str(topology), "-o", "json")
    assert code == 0
    report = json.loads(out)
    assert list(report)[:3] == ["ok", "nodes", "reflectors"]
    assert report["ok"] is True and report["reachable"] is True
    assert (report["nodes"], report["reflectors"]) == (15, 6)
    assert report["single_failure_ok"] is True and report["pair_failure_ok"] is None
    assert report["unreachable_examples"] == [] and report["skipped_peers"] == []
    paths = report["paths"]
    assert paths["exploded"] is False and (paths["nodes"], paths["reflectors"]) == (15, 6)
    # multi: 6 RRs in 2 groups of 3 sharing a cluster ID each, joined plane by plane through
    # one hub: a client holds one path per RR of its group for any remote prefix
    assert paths["sessions_per_client_max"] == 3
    assert paths["paths_client_max"] == 3


def test_without_a_topology_the_shipped_default_applies_in_yaml_too(
    tmp_path: Path, run_cli: CliRunner
) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(node_list()))
    code, out, _ = run_cli("verify", str(nodes), "-o", "json")
    assert code == 0
    assert json.loads(out)["reflectors"] == 9  # simple, by topology.kubernetes.io/zone, min 3


def racked_files(tmp_path: Path) -> tuple[Path, Path]:
    """24 nodes in 6 racks of 4 over 3 zones, and a hierarchy spec (the README's example)."""
    nodes = []
    for i in range(24):
        node = make_node(f"n{i:02d}", f"zone-{'abc'[i % 3]}", "plain", i)
        node["metadata"]["labels"]["example.com/rack"] = f"r{i // 4}"
        nodes.append(node)
    nodes_path = tmp_path / "racked.json"
    nodes_path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))
    spec = tmp_path / "hierarchy.yaml"
    spec.write_text(f"topology: hierarchy\nzoneLabel: {ZONE}\nrackLabel: example.com/rack\n")
    return nodes_path, spec


def test_hierarchy_pair_failures_are_reported_as_not_promised_and_exit_0(
    tmp_path: Path, run_cli: CliRunner
) -> None:
    nodes, spec = racked_files(tmp_path)
    code, out, err = run_cli("verify", str(nodes), "--topology", str(spec), "--pairs")
    assert (code, err) == (0, ""), out
    lines = out.splitlines()
    assert lines[:2] == [
        "verify: OK",
        "hierarchy promises: every node reaches every other; any single RR failure (not RR pairs)",
    ]
    pair = next(line for line in lines if line.startswith("RR pair failure:"))
    # Both RRs of a rack down cut that rack off: true, and not what hierarchy promises.
    assert pair.startswith("RR pair failure: cuts nodes off (not promised by hierarchy), e.g. ")
    code, out, _ = run_cli("verify", str(nodes), "--topology", str(spec), "--pairs", "-o", "json")
    report = json.loads(out)
    assert (code, report["ok"], report["pair_failure_ok"]) == (0, True, False)
    assert (report["topology"], report["pair_failure_promised"]) == ("hierarchy", False)


def test_multi_with_three_rrs_per_group_promises_pairs_and_its_plan_says_so(
    files: tuple[Path, Path], tmp_path: Path, run_cli: CliRunner
) -> None:
    joined = joined_file(run_cli, *files, tmp_path)
    code, out, _ = run_cli("verify", str(joined), "--pairs")
    assert code == 0
    assert out.splitlines()[1] == (
        "multi promises: every node reaches every other; any single RR failure;"
        " any two RRs failing at once"
    )


def test_a_plan_joined_with_its_node_list_is_verified(
    files: tuple[Path, Path], tmp_path: Path, run_cli: CliRunner
) -> None:
    joined = joined_file(run_cli, *files, tmp_path)
    from_plan = run_cli("verify", str(joined), "--pairs", "-o", "json")
    nodes, topology = files
    from_nodes = run_cli("verify", str(nodes), "--topology", str(topology), "--pairs", "-o", "json")
    assert from_plan.returncode == 0, from_plan.stderr
    assert json.loads(from_plan.stdout) == json.loads(from_nodes.stdout)


def test_a_plan_missing_a_groups_bgppeer_exits_1_and_names_an_unreachable_pair(
    files: tuple[Path, Path], tmp_path: Path, run_cli: CliRunner
) -> None:
    nodes, topology = files
    document = joined_plan(run_cli, nodes, topology)
    group = document["status"]["groups"][0]
    selects = f"route-reflector.dev/group == '{group['name']}'"
    peers = [
        p["metadata"]["name"] for p in document["bgpPeers"] if p["spec"]["nodeSelector"] == selects
    ]
    assert len(peers) == 1, document["bgpPeers"]
    peer = peers[0]
    document["bgpPeers"] = [p for p in document["bgpPeers"] if p["metadata"]["name"] != peer]
    clients = sorted(
        name
        for name, change in document["nodes"].items()
        if change["labels"].get("route-reflector.dev/group") == group["name"]
    )
    assert clients
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document))

    code, out, err = run_cli("verify", str(broken))
    assert (code, err) == (1, "")
    assert out.splitlines()[0] == "verify: FAILED"
    reachability = next(line for line in out.splitlines() if line.startswith("reachability:"))
    assert "pairs without a route" in reachability
    assert any(
        f"{client} -> " in reachability or f" -> {client}" in reachability for client in clients
    )

    code, out, _ = run_cli("verify", str(broken), "-o", "json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["reachable"] is False
    pair = report["unreachable_examples"][0]
    source, target = pair.split(" -> ")
    assert {source, target} & set(clients), pair


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON or YAML"),
        ("key: [unclosed", "not JSON or YAML"),
        ("just a string", "NodeList"),
        ('{"bgpPeers": [], "nodes": {}, "status": {}}', "needs `bgpPeers`, `nodes`"),
    ],
    ids=["not-json", "not-yaml", "scalar", "joined-without-items"],
)
def test_unusable_input_exits_2_with_a_one_line_error(
    tmp_path: Path, run_cli: CliRunner, content: str, message: str
) -> None:
    path = tmp_path / "input.json"
    path.write_text(content)
    code, out, err = run_cli("verify", str(path))
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_a_missing_file_exits_2_with_a_one_line_error(tmp_path: Path, run_cli: CliRunner) -> None:
    code, out, err = run_cli("verify", str(tmp_path / "absent.json"))
    assert (code, out) == (2, "")
    assert err.startswith("error: cannot read ") and "absent.json" in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_missing_topology_file_exits_2(
    files: tuple[Path, Path], tmp_path: Path, run_cli: CliRunner
) -> None:
    nodes, _ = files
    code, out, err = run_cli("verify", str(nodes), "--topology", str(tmp_path / "no.yaml"))
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_a_pair_failure_fails_the_verdict_only_where_the_topology_promises_pairs(
    tmp_path: Path, run_cli: CliRunner
) -> None:
    nodes, spec = racked_files(tmp_path)
    code, out, _ = run_cli("verify", str(nodes), "--topology", str(spec), "--pairs", "-o", "json")
    assert code == 0  # hierarchy: pairs are not promised
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in json.loads(out).items()
        if k not in ("ok", "paths", "topology", "pair_failure_promised")
    }
    report = VerifyReport(**fields)
    assert report.pair_failure_ok is False
    assert report.ok is False  # judged alone, every check counts
    assert report.with_promises("hierarchy", [{"reflectors": ["a", "b"]}]).ok is True
    assert report.with_promises("multi", [{"reflectors": ["a", "b", "c"]}]).ok is False
    assert report.with_promises("multi", [{"reflectors": ["a", "b"]}]).ok is True
