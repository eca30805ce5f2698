"""Hypothesis strategies: random clusters of Nodes (as the API server shows them) and specs."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from nodes import kube_node

from hooks.stamps import stamp

ZONE = "topology.kubernetes.io/zone"
INCOMPATIBLE = "example.com/no-rr"
PREFERRED = "example.com/rr"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
# How a node is unusual; "plain" dominates so most clusters have enough eligible nodes.
KINDS = ("plain",) * 12 + (
    "not-ready",
    "unknown",
    "cordoned",
    "tainted",
    "tainted-hard",
    "unfit-taint",
    "incompatible",
    "preferred",
    "deleting",
    "no-zone",
)

Json = dict[str, Any]


TAINTS: dict[str, Json] = {
    "tainted": {"key": "dedicated", "value": "infra", "effect": "NoSchedule"},
    "tainted-hard": {"key": "gpu", "value": "a100", "effect": "NoExecute"},
    "unfit-taint": {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"},
}
KIND_LABELS = {"incompatible": {INCOMPATIBLE: "true"}, "preferred": {PREFERRED: "preferred"}}


def make_node(name: str, zone: str | None, kind: str, created_hours: int) -> Json:
    """A Node of one of KINDS, created `created_hours` after EPOCH."""
    return kube_node(
        name,
        None if kind == "no-zone" else zone,
        created=stamp(EPOCH + timedelta(hours=created_hours)),
        labels=KIND_LABELS.get(kind),
        ready={"not-ready": "False", "unknown": "Unknown"}.get(kind, "True"),
        unschedulable=kind == "cordoned",
        taints=[TAINTS[kind]] if kind in TAINTS else [],
        deleting=kind == "deleting",
    )


@st.composite
def clusters(draw: st.DrawFn, max_nodes: int = 300, max_zones: int = 5) -> list[Json]:
    """1-5 zones, 1..max_nodes nodes; creation times collide on purpose (name breaks ties)."""
    zones = [f"zone-{chr(ord('a') + i)}" for i in range(draw(st.integers(1, max_zones)))]
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(zones),
                st.sampled_from(KINDS),
                st.integers(0, 50),
            ),
            min_size=1,
            max_size=max_nodes,
        )
    )
    return [
        make_node(f"node-{i:03d}", zone, kind, hours) for i, (zone, kind, hours) in enumerate(rows)
    ]


@st.composite
def specs(draw: st.DrawFn) -> Json:
    """A simple-topology spec with zones; ratio or steps; sometimes tolerations."""
    low = draw(st.integers(0, 3))
    spec: Json = {
        "topology": "simple",
        "zoneLabel": ZONE,
        "min": low,
        "max": draw(st.integers(max(low, 1), 6)),
        "incompatibleLabels": [INCOMPATIBLE],
        "preferredLabels": [f"{PREFERRED}=preferred"],
    }
    if draw(st.booleans()):
        spec["ratio"] = draw(st.sampled_from([0.01, 0.05, 0.1, 0.25, 0.5, 1.0]))
    else:
        spec["steps"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"nodes": st.integers(0, 60), "reflectors": st.integers(0, 6)}
                ),
                min_size=1,
                max_size=3,
            )
        )
    if draw(st.booleans()):
        spec["tolerations"] = [
            {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}
        ]
    return spec


def random_sessions(
    rng: random.Random,
    reflectors: list[str],
    clients: list[str],
    *,
    rr_pair: float,
    in_group: float,
) -> frozenset[tuple[str, str]]:
    """BGP sessions among small drawn topologies: each RR pair at `rr_pair`; 1-3 groups, each RR
    in a group at `in_group`, each client peering with the RRs of one group; a few
    client-client sessions."""
    edges = {pair for pair in itertools.combinations(reflectors, 2) if rng.random() < rr_pair}
    groups = [[r for r in reflectors if rng.random() < in_group] for _ in range(rng.randint(1, 3))]
    for client in clients:
        edges.update((client, r) for r in rng.choice(groups))
    edges.update(pair for pair in itertools.combinations(clients, 2) if rng.random() < 0.2)
    return frozenset(edges)
