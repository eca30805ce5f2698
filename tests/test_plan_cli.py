"""`python -m hooks plan`: the preview an operator runs before installing anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import CliRunner, input_files
from golden import as_reflector
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import make_node

from hooks.offline import SHIPPED_TOPOLOGY
from hooks.yaml_events import load_yaml

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


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return input_files(tmp_path, node_list(), TOPOLOGY, "yaml")


def test_table_shows_each_zone_with_its_reflectors(
    files: tuple[Path, Path], run_cli: CliRunner
) -> None:
    nodes, topology = files
    done = run_cli("plan", str(nodes), "--topology", str(topology))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("topology simple: 4 route reflectors, 6 BGPPeers, Ready=True")
    header = next(line for line in lines if line.startswith("ZONE"))
    assert header.split()[:6] == ["ZONE", "NODES", "READY", "ELIGIBLE", "DEMAND", "RRS"]
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("zone-")}
    assert rows["zone-a"][1:6] == ["6", "6", "5", "2", "2"]
    assert rows["zone-b"][1:6] == ["5", "5", "5", "2", "2"]
    # simple: the RRs of a zone share its cluster ID, listed below the zone's row
    below = {lines[i - 1].split()[0]: lines[i] for i, line in enumerate(lines) if line[:2] == "  "}
    assert below["zone-a"] == "  224.0.0.1: node-00, node-02"
    assert below["zone-b"] == "  224.0.0.2: node-01, node-03"


def test_json_output_has_status_peers_and_node_changes_with_nulls(
    files: tuple[Path, Path],
    run_cli: CliRunner,
) -> None:
    nodes, topology = files
    done = run_cli("plan", str(nodes), "--topology", str(topology), "-o", "json")
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


def test_table_and_json_count_the_add_path_routes(
    files: tuple[Path, Path], run_cli: CliRunner
) -> None:
    nodes, topology = files
    table = run_cli("plan", str(nodes), "--topology", str(topology)).stdout.splitlines()
    paths = json.loads(
        run_cli("plan", str(nodes), "--topology", str(topology), "-o", "json").stdout
    )["paths"]

    # simple, 2 zones x 2 RRs: a group per zone sharing its cluster ID, its 2 RRs in planes 1
    # and 2, each plane a star through one hub: a client holds one path per plane (2) for any
    # remote prefix, and so does an RR (its hub's, or its group partner's)
    assert paths["paths_client_max"] == 2 and paths["paths_rr_max"] == 2
    assert paths["routes_per_node_max"] == 20  # 10 remote prefixes x 2
    assert paths["exploded"] is False
    assert (paths["sessions_per_client_max"], paths["sessions_per_rr_max"]) == (2, 6)
    assert "paths per remote prefix: at clients max 2, mean" in "\n".join(table)
    assert "routes per node: max 20, mean 19.64" in table
    assert "sessions per client: max 2, mean 2.0; per RR: max 6, mean 5.5" in table


def test_yaml_output_is_bgp_peers_and_node_patches(
    files: tuple[Path, Path], run_cli: CliRunner
) -> None:
    nodes, topology = files
    done = run_cli("plan", str(nodes), "--topology", str(topology), "-o", "yaml")
    assert done.returncode == 0, done.stderr
    objects = list(yaml.safe_load_all(done.stdout))
    kinds = [o["kind"] for o in objects]
    assert kinds == ["BGPPeer"] * 6 + ["Node"] * kinds.count("Node")
    by_name = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Node"}
    assert by_name["old-rr"]["metadata"]["labels"]["calico-route-reflector"] is None
    assert by_name["node-00"]["apiVersion"] == "v1"


def test_dash_reads_the_nodes_from_standard_input(
    files: tuple[Path, Path], run_cli: CliRunner
) -> None:
    nodes, topology = files
    from_file = run_cli("plan", str(nodes), "--topology", str(topology), "-o", "json")
    from_stdin = run_cli(
        "plan", "-", "--topology", str(topology), "-o", "json", stdin=nodes.read_text()
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["nodes"] == json.loads(from_file.stdout)["nodes"]


def test_without_a_topology_the_shipped_default_topology_is_planned(
    tmp_path: Path, run_cli: CliRunner
) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(node_list()))
    done = run_cli("plan", str(nodes), "-o", "json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)["status"]
    # What `kubectl apply -k metacontroller/` deploys: simple, zones by topology.kubernetes.io/zone.
    assert status["topology"] == "simple"
    assert [z["name"] for z in status["zones"]] == ["zone-a", "zone-b"]
    assert status["reflectors"] == 6  # min 3 in each zone


def test_the_cli_default_topology_is_the_shipped_manifest() -> None:
    shipped = yaml.safe_load((ROOT / "metacontroller/base/default-topology.yaml").read_text())
    # Argo CD's sync-wave annotations say how to deploy it, not what it plans.
    shipped["metadata"].pop("annotations", None)
    assert shipped == SHIPPED_TOPOLOGY


def test_a_bare_spec_is_read_as_the_topology(
    files: tuple[Path, Path], tmp_path: Path, run_cli: CliRunner
) -> None:
    nodes, topology = files
    bare = tmp_path / "spec.yaml"
    bare.write_text(yaml.safe_dump(yaml.safe_load(TOPOLOGY)["spec"]))
    from_object = run_cli("plan", str(nodes), "--topology", str(topology), "-o", "json")
    from_spec = run_cli("plan", str(nodes), "--topology", str(bare), "-o", "json")
    assert from_spec.returncode == 0, from_spec.stderr
    assert untimed(json.loads(from_spec.stdout)) == untimed(json.loads(from_object.stdout))


def untimed(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan without its conditions' lastTransitionTime (the clock of the run)."""
    for condition in plan["status"]["conditions"]:
        del condition["lastTransitionTime"]
    return plan


@pytest.mark.parametrize("command", ["plan", "verify"])
def test_a_misspelt_setting_exits_2_with_only_the_error_naming_it(
    files: tuple[Path, Path], command: str, run_cli: CliRunner
) -> None:
    nodes, topology = files
    topology.write_text(TOPOLOGY.replace("zoneLabel", "zonelabel"))
    done = run_cli(command, str(nodes), "--topology", str(topology))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: topology default: InvalidSpec: spec.zonelabel: unknown setting;"
        " did you mean zoneLabel?\n"
    )


def test_a_zone_label_no_node_carries_is_warned_about_and_set_as_a_condition(
    files: tuple[Path, Path],
    run_cli: CliRunner,
) -> None:
    nodes, topology = files
    topology.write_text(TOPOLOGY.replace("topology.kubernetes.io/zone", "topology.k8s.io/zone"))
    done = run_cli("plan", str(nodes), "--topology", str(topology), "-o", "json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "warning: zoneLabel 'topology.k8s.io/zone' is on no node: every node is in one zone"
        " (a typo?)\n"
    )
    conditions = {c["type"]: c for c in json.loads(done.stdout)["status"]["conditions"]}
    assert conditions["LabelsMatched"]["status"] == "False"
    assert conditions["LabelsMatched"]["reason"] == "LabelMatchesNoNode"
    assert conditions["Ready"]["status"] == "True"  # it plans; it is probably not what you meant


def test_a_rack_label_no_node_carries_is_warned_about_in_hierarchy(
    files: tuple[Path, Path],
    run_cli: CliRunner,
) -> None:
    nodes, topology = files
    topology.write_text(TOPOLOGY + "  topology: hierarchy\n  rackLabel: example.com/rak\n")
    done = run_cli("plan", str(nodes), "--topology", str(topology))
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("warning: rackLabel 'example.com/rak' is on no node: ")
    assert "topology hierarchy:" in done.stdout


def test_labels_every_node_carries_give_no_warning(
    files: tuple[Path, Path], run_cli: CliRunner
) -> None:
    nodes, topology = files
    done = run_cli("plan", str(nodes), "--topology", str(topology))
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize(
    ("nodes", "topology"),
    [
        ("{not json", None),
        ("key: [unclosed", None),
        ('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}', None),
        ('{"kind": "List", "items": [{"metadata": {}}]}', None),
        ("just a string", None),
        ('{"kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "web-1"}}]}', None),
        ("[" * 5000 + "]" * 5000, None),
        (None, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"),
        (None, "{broken"),
        (None, ""),
        (None, "[zoneLabel]"),
    ],
    ids=[
        "not-json",
        "not-yaml",
        "not-a-node-list",
        "node-without-name",
        "scalar",
        "a-pod-in-the-list",
        "nested-too-deeply",
        "topology-of-another-kind",
        "topology-not-yaml",
        "topology-empty",
        "topology-a-list",
    ],
)
def test_bad_input_exits_2_with_a_one_line_error(
    tmp_path: Path,
    files: tuple[Path, Path],
    nodes: str | None,
    topology: str | None,
    run_cli: CliRunner,
) -> None:
    nodes_path, topology_path = files
    if nodes is not None:
        nodes_path.write_text(nodes)
    if topology is not None:
        topology_path.write_text(topology)
    done = run_cli("plan", str(nodes_path), "--topology", str(topology_path))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("error: ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_missing_file_exits_2(tmp_path: Path, run_cli: CliRunner) -> None:
    done = run_cli("plan", str(tmp_path / "absent.json"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1


YAML_SCALARS = (
    st.text(max_size=8) | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)
)
YAML_DOCUMENTS = st.recursive(
    YAML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(document=YAML_DOCUMENTS, flow=st.booleans())
def test_the_fast_yaml_reader_gives_what_safe_load_gives(document: Any, flow: bool) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow)
    assert load_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text",
    [
        "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n",
        "- &a {k: v}\n- *a\n",
        "when: 2024-01-01T00:00:00Z\nhex: 0x1f\nyes: on\nempty:\n",
        "a: !!str 1\nb: !!int '2'\nc: !!float 3\n",
        "",
    ],
    ids=["merge-key", "alias", "implicit-types", "explicit-tags", "empty"],
)
def test_the_fast_yaml_reader_keeps_yaml_s_own_rules(text: str) -> None:
    assert load_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text", ["--- a\n--- b\n", "a: *nowhere\n", "? [a, b]\n: c\n"], ids=["two", "alias", "key"]
)
def test_the_fast_yaml_reader_refuses_what_safe_load_refuses(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError):
        load_yaml(text)


def test_the_fast_yaml_reader_keeps_a_self_referencing_anchor_one_object() -> None:
    document = load_yaml("a: &a [x, *a]\n")
    assert document["a"][0] == "x" and document["a"][1] is document["a"]


def test_the_fast_yaml_reader_builds_an_alias_once_so_nested_aliases_stay_small() -> None:
    rows = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    document = load_yaml("l0: &l0 [lol]\n" + rows)
    assert document["l9"][0] is document["l8"]  # 9**9 lists if every alias were copied


def test_an_unhashable_yaml_key_is_an_input_error(tmp_path: Path, run_cli: CliRunner) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("? [a, b]\n: c\n")
    done = run_cli("plan", str(path))
    assert done.returncode == 2 and "not JSON or YAML" in done.stderr, done.stderr
