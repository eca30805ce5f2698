"""`python -m hooks plan`: the preview an operator runs before installing anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from golden import as_reflector
from strategies import make_node

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = """\
apiVersion: route-reflector.dev/v1alpha1
kind: RouteReflectorTopology
metadata:
  name: default
spec:
  zoneLabel: topology.kubernetes.io/zone
  min: 2
  max: 3
  ratio: 0.1
"""


def node_list() -> dict[str, Any]:
    nodes = [make_node(f"node-{i:02d}", f"zone-{'ab'[i % 2]}", "plain", i) for i in range(10)]
    # old-rr was an RR and is cordoned now: the plan takes its labels back (nulls).
    nodes.append(as_reflector(make_node("old-rr", "zone-a", "cordoned", 0), "224.0.0.7"))
    return {"apiVersion": "v1", "kind": "List", "items": nodes}


def plan(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ROUTE_REFLECTOR_", "DATASTORE"))
    }
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "hooks", "plan", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps(node_list()))
    topology = tmp_path / "t.yaml"
    topology.write_text(TOPOLOGY)
    return nodes, topology


def test_table_shows_each_zone_with_its_reflectors(files: tuple[Path, Path]) -> None:
    nodes, topology = files
    done = plan(str(nodes), "--topology", str(topology))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("topology simple: 4 route reflectors, 3 BGPPeers, Ready=True")
    header = next(line for line in lines if line.startswith("ZONE"))
    assert header.split()[:6] == ["ZONE", "NODES", "READY", "ELIGIBLE", "DEMAND", "RRS"]
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("zone-")}
    assert rows["zone-a"][1:6] == ["6", "6", "5", "2", "2"]
    assert rows["zone-b"][1:6] == ["5", "5", "5", "2", "2"]
    assert "node-00 (224.0.0.1)" in done.stdout and "node-01 (224.0.0.2)" in done.stdout


def test_json_output_has_status_peers_and_node_changes_with_nulls(
    files: tuple[Path, Path],
) -> None:
    nodes, topology = files
    done = plan(str(nodes), "--topology", str(topology), "-o", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {"status", "bgpPeers", "nodes", "paths"}
    assert [rr["node"] for rr in result["status"]["routeReflectors"]] == [
        "node-00",
        "node-01",
        "node-02",
        "node-03",
    ]
    assert {p["kind"] for p in result["bgpPeers"]} == {"BGPPeer"}
    old = result["nodes"]["old-rr"]
    assert old["labels"]["calico-route-reflector"] is None
    assert old["labels"]["route-reflector.dev/reflector"] is None
    assert old["annotations"]["projectcalico.org/RouteReflectorClusterID"] is None
    assert result["nodes"]["node-00"]["labels"]["calico-route-reflector"] == ""
    assert result["nodes"]["node-04"]["labels"] == {"route-reflector.dev/group": "zone-a"}


def test_table_and_json_count_the_add_path_routes(files: tuple[Path, Path]) -> None:
    nodes, topology = files
    table = plan(str(nodes), "--topology", str(topology)).stdout.splitlines()
    paths = json.loads(plan(str(nodes), "--topology", str(topology), "-o", "json").stdout)["paths"]

    # simple, 2 zones x 2 RRs, one cluster ID per zone, RRs meshed: a client of zone-a gets a
    # zone-b client's prefix from each zone-b RR through each of its own 2 RRs (2 x 2), and a
    # zone-b RR's prefix from it directly and via its zone-b partner, at each of its 2 RRs
    assert paths["paths_client_max"] == 4 and paths["paths_rr_max"] == 4
    assert paths["exploded"] is False
    assert (paths["sessions_per_client_max"], paths["sessions_per_rr_max"]) == (2, 7)
    assert "paths per remote prefix: at clients max 4, mean" in "\n".join(table)
    assert any(line.startswith("routes per node: max ") for line in table)
    assert "sessions per client: max 2, mean 2.0; per RR: max 7, mean 6.5" in table


def test_yaml_output_is_bgp_peers_and_node_patches(files: tuple[Path, Path]) -> None:
    nodes, topology = files
    done = plan(str(nodes), "--topology", str(topology), "-o", "yaml")
    assert done.returncode == 0, done.stderr
    objects = list(yaml.safe_load_all(done.stdout))
    kinds = [o["kind"] for o in objects]
    assert kinds == ["BGPPeer"] * 3 + ["Node"] * kinds.count("Node")
    by_name = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Node"}
    assert by_name["old-rr"]["metadata"]["labels"]["calico-route-reflector"] is None
    assert by_name["node-00"]["apiVersion"] == "v1"


def test_dash_reads_the_nodes_from_standard_input(files: tuple[Path, Path]) -> None:
    nodes, topology = files
    from_file = plan(str(nodes), "--topology", str(topology), "-o", "json")
    from_stdin = plan("-", "--topology", str(topology), "-o", "json", stdin=nodes.read_text())
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["nodes"] == json.loads(from_file.stdout)["nodes"]


def test_yaml_node_list_and_no_topology_use_the_defaults(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(node_list()))
    done = plan(str(nodes), "-o", "json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)["status"]
    assert status["zones"][0]["name"] == "" and status["reflectors"] == 3  # min 3, one zone


@pytest.mark.parametrize(
    ("nodes", "topology"),
    [
        ("{not json", None),
        ("key: [unclosed", None),
        ('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}', None),
        ('{"kind": "List", "items": [{"metadata": {}}]}', None),
        ("just a string", None),
        (None, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"),
        (None, "{broken"),
    ],
    ids=[
        "not-json",
        "not-yaml",
        "not-a-node-list",
        "node-without-name",
        "scalar",
        "topology-of-another-kind",
        "topology-not-yaml",
    ],
)
def test_bad_input_exits_2_with_a_one_line_error(
    tmp_path: Path, files: tuple[Path, Path], nodes: str | None, topology: str | None
) -> None:
    nodes_path, topology_path = files
    if nodes is not None:
        nodes_path.write_text(nodes)
    if topology is not None:
        topology_path.write_text(topology)
    done = plan(str(nodes_path), "--topology", str(topology_path))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("error: ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    done = plan(str(tmp_path / "absent.json"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
