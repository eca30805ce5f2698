"""The benchmark's generator: realistic nodes, deterministic, and requests the hooks can read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest

from bench import plan_input
from bench.generate import (
    RACK_LABEL,
    ZONE_LABEL,
    ZONES,
    Generator,
    SteadyState,
    steady_state,
    topology_object,
    topology_sync_body,
)
from bench.plans import path_stats
from bench.report import paths_table
from bench.targets import targets
from hooks import wire
from hooks.paths import count_paths
from hooks.sessions import nodes_from_objects
from hooks.yaml_events import load_yaml

COUNT = 50


@pytest.fixture(scope="module")
def nodes() -> list[dict[str, object]]:
    return list(Generator(seed=7).nodes(COUNT))


@pytest.fixture(scope="module")
def state(nodes: list[dict[str, object]]) -> SteadyState:
    return steady_state(nodes, "multi")


def test_a_node_is_10_to_15_kb_of_json(nodes: list[dict[str, object]]) -> None:
    sizes = [len(orjson.dumps(node)) for node in nodes]
    assert min(sizes) >= 10_000
    assert max(sizes) <= 15_000


def test_a_node_looks_like_a_cloud_node(nodes: list[dict[str, object]]) -> None:
    node = nodes[0]
    meta = node["metadata"]
    assert isinstance(meta, dict)
    assert len(meta["managedFields"]) >= 4
    assert "csi.volume.kubernetes.io/nodeid" in meta["annotations"]
    assert "projectcalico.org/IPv4Address" in meta["annotations"]
    for key in (
        ZONE_LABEL,
        RACK_LABEL,
        "node.kubernetes.io/instance-type",
        "kubernetes.io/hostname",
        "topology.kubernetes.io/region",
    ):
        assert key in meta["labels"]
    status = node["status"]
    assert isinstance(status, dict)
    assert len(status["conditions"]) == 5
    assert all("lastHeartbeatTime" in c for c in status["conditions"])
    assert len(status["images"]) >= 30


def test_names_are_unique_and_zones_are_three(nodes: list[dict[str, object]]) -> None:
    names = [n["metadata"]["name"] for n in nodes]  # type: ignore[index]
    assert len(set(names)) == COUNT
    assert {n["metadata"]["labels"][ZONE_LABEL] for n in nodes} == set(ZONES)  # type: ignore[index]


def test_the_same_seed_gives_the_same_bytes(nodes: list[dict[str, object]]) -> None:
    again = Generator(seed=7)
    assert [orjson.dumps(again.node(i)) for i in (0, 17, 49)] == [
        orjson.dumps(nodes[i]) for i in (0, 17, 49)
    ]
    assert orjson.dumps(Generator(seed=8).node(17)) != orjson.dumps(nodes[17])


def test_the_topology_sync_body_decodes_into_the_request_type(
    nodes: list[dict[str, object]],
) -> None:
    body = topology_sync_body(nodes, topology_object("simple"))
    request = wire.decode(body, wire.TopologySyncRequest)
    assert isinstance(request, wire.TopologySyncRequest)
    assert request.parent.metadata.name == "default"
    decoded = wire.decode_nodes(request.related)
    assert len(decoded) == COUNT
    assert all(isinstance(n, wire.NodeWire) for n in decoded)
    assert len(wire.decode_topologies(request.related)) == 1


def test_the_steady_state_carries_a_status_and_labelled_nodes(state: SteadyState) -> None:
    request = wire.decode(state.topology_body(), wire.TopologySyncRequest)
    status = request.parent.read_status()
    assert status.topology == "multi"
    assert [rr.node for rr in status.routeReflectors] == state.reflectors
    assert state.reflectors
    assert wire.BGPPEER_KEY in (request.children or {})
    labelled = {
        n.metadata.name
        for n in wire.decode_nodes(request.related)
        if n.metadata.annotations and n.metadata.annotations.cluster_id
    }
    assert labelled == set(state.reflectors)


def test_the_node_sync_body_decodes_with_the_topology_status(state: SteadyState) -> None:
    request = wire.decode(state.node_body(3), wire.NodeSyncRequest)
    assert isinstance(request, wire.NodeSyncRequest)
    assert request.object.metadata.name == state.nodes[3]["metadata"]["name"]
    (topology,) = wire.decode_topologies(request.related)
    assert [rr.node for rr in topology.read_status().routeReflectors] == state.reflectors


def test_the_plan_input_files_hold_the_same_node_list_in_json_and_in_yaml(
    nodes: list[dict[str, object]], tmp_path: Path
) -> None:
    paths = plan_input.write_inputs(nodes[:5], tmp_path)
    text = paths["yaml"].read_text()
    assert "&id" not in text and "*id" not in text  # kubectl writes every node out in full
    assert (
        load_yaml(text) == json.loads(paths["json"].read_text()) == plan_input.node_list(nodes[:5])
    )


def test_the_bench_counts_add_path_routes_on_the_steady_state_and_reports_them(
    state: SteadyState,
) -> None:
    paths = path_stats(state.nodes, state.children)
    assert paths is not None
    expected = count_paths(
        nodes_from_objects(state.nodes), [c for c in state.children if c["kind"] == "BGPPeer"]
    )
    assert paths["paths_client_max"] == expected.paths_client_max > 1
    assert paths["routes_per_node_max"] == expected.routes_per_node_max
    assert paths["count_ms"] >= 0

    row = {"n": COUNT, "topology": "multi", "paths": paths | {"exploded": True}}
    lines = paths_table([row])
    assert lines[1] == "## Routing tables (add paths)"
    assert f"| ≥ {paths['paths_client_max']:,} / ≥ " in lines[-1]
    assert "| EXPLODES |" in lines[-1]
    [target] = [t for t in targets([row | {"n": 5_000}], {}, {}) if "route count" in t["target"]]
    assert (target["verdict"], target["note"]) == ("PASS", "explodes: a lower bound")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not on PATH")
def test_the_bench_http_clients_get_the_very_bytes_the_hook_function_answers() -> None:
    from golden import FIXTURES, call_hook

    from bench.measure import Server

    body = (FIXTURES / "node-sync" / "former-reflector" / "request.json").read_bytes()
    server = Server()
    try:
        expected = call_hook("node-sync", body)
        assert server.post("/node/sync", body) == expected
        assert server.post_curl("/node/sync", body) == expected
        with pytest.raises(RuntimeError, match="400"):
            server.post("/node/sync", b"{")
    finally:
        server.close()
