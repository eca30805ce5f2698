"""spec.nodeSelector: a node outside it is never eligible, and the plan never picks it; a
spill-over RR keeps serving its zone when a node joins a zone with more spare nodes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from scenario import ZONE, zoned_nodes

from hooks.config import load_settings
from hooks.model import NodeInfo
from hooks.offline import run_plan
from hooks.selection import ineligibility, select_reflectors

NOW = datetime(2026, 11, 28, tzinfo=UTC)
POOL = "example.com/pool"


def info(labels: dict[str, str]) -> NodeInfo:
    return NodeInfo("n1", labels, {}, "2026-01-01T00:00:00Z", True, False, False)


@pytest.mark.parametrize(
    ("selector", "labels", "eligible"),
    [
        ({"matchLabels": {POOL: "infra"}}, {POOL: "infra"}, True),
        ({"matchLabels": {POOL: "infra"}}, {POOL: "apps"}, False),
        ({"matchLabels": {POOL: "infra"}}, {}, False),
        (
            {"matchExpressions": [{"key": POOL, "operator": "In", "values": ["a", "b"]}]},
            {POOL: "b"},
            True,
        ),
        (
            {"matchExpressions": [{"key": POOL, "operator": "In", "values": ["a"]}]},
            {POOL: "b"},
            False,
        ),
        ({"matchExpressions": [{"key": POOL, "operator": "In", "values": ["a"]}]}, {}, False),
        (
            {"matchExpressions": [{"key": POOL, "operator": "NotIn", "values": ["a"]}]},
            {POOL: "b"},
            True,
        ),
        ({"matchExpressions": [{"key": POOL, "operator": "NotIn", "values": ["a"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": POOL, "operator": "NotIn", "values": ["a"]}]},
            {POOL: "a"},
            False,
        ),
        ({"matchExpressions": [{"key": POOL, "operator": "Exists"}]}, {POOL: ""}, True),
        ({"matchExpressions": [{"key": POOL, "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": POOL, "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": POOL, "operator": "DoesNotExist"}]}, {POOL: "x"}, False),
        (
            {
                "matchLabels": {"zone": "a"},
                "matchExpressions": [{"key": POOL, "operator": "Exists"}],
            },
            {"zone": "a"},
            False,
        ),
        (
            {
                "matchLabels": {"zone": "a"},
                "matchExpressions": [{"key": POOL, "operator": "Exists"}],
            },
            {"zone": "a", POOL: "x"},
            True,
        ),
        ({}, {}, True),
    ],
)
def test_a_node_is_eligible_only_inside_the_node_selector(
    selector: dict[str, Any], labels: dict[str, str], eligible: bool
) -> None:
    settings = load_settings({"nodeSelector": selector}, {})

    reason = ineligibility(info(labels), settings)

    assert reason is None if eligible else reason == "outside nodeSelector"


def test_the_plan_picks_reflectors_only_inside_the_node_selector() -> None:
    nodes = zoned_nodes({"a": 12, "b": 10, "c": 8})
    inside = {n["metadata"]["name"] for i, n in enumerate(nodes) if i % 3 == 0}
    for node in nodes:
        if node["metadata"]["name"] in inside:
            node["metadata"]["labels"][POOL] = "infra"
    document = {
        "apiVersion": "route-reflector.dev/v1alpha1",
        "kind": "RouteReflectorTopology",
        "metadata": {"name": "default"},
        "spec": {"zoneLabel": ZONE, "nodeSelector": {"matchLabels": {POOL: "infra"}}},
    }

    result = run_plan({"items": nodes}, document, {}, NOW)

    chosen = {rr["node"] for rr in result.status["routeReflectors"]}
    assert chosen
    assert chosen <= inside


def zone_nodes(zone: str, count: int) -> list[NodeInfo]:
    return [
        NodeInfo(f"{zone}-{i}", {ZONE: zone}, {}, "2026-01-01T00:00:00Z", True, False, False)
        for i in range(count)
    ]


def test_a_spill_over_rr_keeps_serving_its_zone_when_a_node_joins_a_zone_with_more_spare() -> None:
    # Zone a needs 3 RRs and has 2 nodes; c and d have one spare node each, so a borrowed d's
    # (c before d by name, a tie broken the other way by today's status). A node joining c
    # gives c the most spare nodes; the borrowed RR must stay where it is all the same.
    settings = load_settings({"zoneLabel": ZONE, "min": 3, "max": 3}, {})
    before = [*zone_nodes("a", 2), *zone_nodes("c", 4), *zone_nodes("d", 4)]
    current = {n.name: n.name.split("-")[0] for n in before if not n.name.endswith("-3")}
    current["d-3"] = "a"

    joined = select_reflectors([*before, *zone_nodes("c", 6)[4:]], settings, current)

    chosen = {choice.node: choice.serves for choice in joined.choices}
    assert chosen == current
