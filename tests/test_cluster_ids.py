"""Too few cluster IDs: the topology sync refuses the plan, names spec.clusterID, keeps all."""

from __future__ import annotations

import json
from typing import Any

import pytest
from golden import call_hook, topology_sync_request
from scenario import ZONE, zoned_nodes

from hooks.config import load_settings
from hooks.topologies.common import PlanError, assign_cluster_ids

Json = dict[str, Any]
SPEC: Json = {"topology": "multi", "zoneLabel": ZONE}


def sync(spec: Json, nodes: list[Json], status: Json | None, children: list[Json]) -> Json:
    body = json.dumps(topology_sync_request(spec, nodes, status, children)).encode()
    answer: Json = json.loads(call_hook("topology-sync", body))
    return answer


def test_a_template_with_too_few_ids_is_refused_naming_the_field_and_nothing_changes() -> None:
    nodes = zoned_nodes({"a": 12, "b": 10, "c": 8})
    first = sync(SPEC | {"clusterID": "224.0.0.%d"}, nodes, None, [])
    assert first["children"], "the sound template plans BGPPeers"

    refused = sync(SPEC | {"clusterID": "224.0.0.1"}, nodes, first["status"], first["children"])

    conditions = {c["type"]: c for c in refused["status"]["conditions"]}
    ready = conditions["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ClusterIDsExhausted")
    assert ready["message"].startswith("spec.clusterID: the topology needs 3 cluster IDs")
    assert "gives 1" in ready["message"]
    assert conditions["Stalled"]["status"] == "True"
    assert refused["children"] == first["children"]  # the BGPPeers in place stay as they are


def test_assigning_more_ids_than_the_template_holds_raises_plan_error() -> None:
    template = load_settings({"clusterID": "224.0.0.1"}, {}).cluster_id

    assert assign_cluster_ids(["g1"], {}, template) == {"g1": "224.0.0.1"}
    with pytest.raises(PlanError) as caught:
        assign_cluster_ids(["g1", "g2"], {}, template)

    assert (caught.value.reason, caught.value.field) == ("ClusterIDsExhausted", "spec.clusterID")
