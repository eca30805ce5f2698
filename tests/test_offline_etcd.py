"""`plan` runs the service's one reconcile: in etcd mode the BGPPeers and cluster IDs the service
would write to etcd are recorded and shown, and `verify` checks them (issue 12's bug: `plan` in
etcd mode showed 0 BGPPeers and a failed verify, and exited 0)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from strategies import make_node

from hooks.cli import main
from hooks.offline import PlanResult, run_plan
from hooks.wire import CLUSTER_ID_ANNOTATION

NOW = datetime(2026, 11, 29, tzinfo=UTC)
ZONE = "topology.kubernetes.io/zone"


def cluster(count: int = 30, kind: str = "plain") -> dict[str, Any]:
    nodes = [make_node(f"node-{i:02d}", f"zone-{'abc'[i % 3]}", kind, i) for i in range(count)]
    return {"apiVersion": "v1", "kind": "List", "items": nodes}


def planned(topology: str, datastore: str) -> PlanResult:
    spec = {"topology": topology, "datastore": datastore, "zoneLabel": ZONE}
    return run_plan(cluster(), spec, {}, NOW)


def peer_specs(result: PlanResult) -> dict[str, Any]:
    return {peer["metadata"]["name"]: peer["spec"] for peer in result.bgp_peers}


@pytest.mark.parametrize("topology", ["simple", "multi", "quorum"])
def test_kdd_and_etcd_plans_of_one_cluster_give_the_same_peerings_and_verdict(
    topology: str,
) -> None:
    kdd, etcd = planned(topology, "kubernetes"), planned(topology, "etcdv3")
    assert etcd.bgp_peers and peer_specs(etcd) == peer_specs(kdd)
    # The same RRs with the same cluster IDs: KDD annotates the Nodes, etcd sets the Calico Nodes.
    assert etcd.sim_nodes() == kdd.sim_nodes()
    assert etcd.cluster_ids and not kdd.cluster_ids
    assert etcd.verify() == kdd.verify() and etcd.verify().ok
    assert etcd.status["bgpPeers"] == kdd.status["bgpPeers"] == len(etcd.bgp_peers)
    assert etcd.status["datastore"]["peers"] == len(etcd.bgp_peers)
    assert etcd.status["conditions"] == kdd.status["conditions"]


def files(tmp_path: Path, spec: str, kind: str = "plain") -> tuple[str, str]:
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps(cluster(kind=kind)))
    topology = tmp_path / "topology.yaml"
    topology.write_text(f"zoneLabel: {ZONE}\n{spec}")
    return str(nodes), str(topology)


def test_plan_in_etcd_mode_shows_the_bgppeers_it_would_write_and_verifies_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes, topology = files(tmp_path, "datastore: etcdv3\n")
    assert main(["plan", nodes, "--topology", topology]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("topology simple: ") and ", 9 BGPPeers, Ready=True" in table[0]
    assert any(line.startswith("verify: OK") for line in table)


def test_verify_checks_an_etcd_plan_joined_with_its_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes, topology = files(tmp_path, "datastore: etcdv3\n")
    assert main(["plan", nodes, "--topology", topology, "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["bgpPeers"]) == 9 and len(document["etcd"]["clusterIDs"]) == 9
    # No cluster-ID annotation in etcd mode: the IDs go to the Calico Nodes in etcd.
    changed = [change["annotations"] for change in document["nodes"].values()]
    assert changed and not any(CLUSTER_ID_ANNOTATION in annotations for annotations in changed)
    joined = tmp_path / "joined.json"
    joined.write_text(json.dumps(document | {"items": cluster()["items"]}))
    assert main(["verify", str(joined)]) == 0
    assert capsys.readouterr().out.startswith("verify: OK")
    without_ids = document | {"items": cluster()["items"], "etcd": {"clusterIDs": {}}}
    joined.write_text(json.dumps(without_ids))
    assert main(["verify", str(joined)]) == 1  # the same peers without the IDs do not route


@pytest.mark.parametrize("datastore", ["kubernetes", "etcdv3"])
def test_a_plan_whose_verify_fails_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], datastore: str
) -> None:
    # Every node cordoned: no RR can be placed, so no node reaches another without the mesh.
    nodes, topology = files(tmp_path, f"datastore: {datastore}\n", kind="cordoned")
    assert main(["plan", nodes, "--topology", topology]) == 1
    out = capsys.readouterr().out
    assert "verify: FAILED (every node reaches every other: NO" in out
