"""Golden hook fixtures: small builders for Metacontroller-shaped requests, and the runner.

The request JSON under tests/fixtures/ is the source of truth; the builders here only wrote it
once (`python tests/golden.py write-requests`). Tests never regenerate requests. Responses are
what the code answers, rewritten only with UPDATE_GOLDEN=1 and reviewed before committing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from nodes import kube_node

from hooks import controllers, wire

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
ENVIRON: dict[str, str] = {}
HOOKS = ("topology-sync", "node-sync", "topology-customize", "node-customize")
ROUTES = {
    "topology-sync": "/topology/sync",
    "node-sync": "/node/sync",
    "topology-customize": "/topology/customize",
    "node-customize": "/node/customize",
}
ZONE = "topology.kubernetes.io/zone"

Json = dict[str, Any]


# --- running a hook --------------------------------------------------------------------------


def call_hook(hook: str, body: bytes, environ: Mapping[str, str] = ENVIRON) -> bytes:
    """The hook function's answer to `body`, encoded exactly as the service sends it."""
    if hook == "topology-sync":
        request = wire.decode(body, wire.TopologySyncRequest)
        return wire.encode(controllers.topology_sync(request, environ, NOW))
    if hook == "node-sync":
        return wire.encode(controllers.node_sync(wire.decode(body, wire.NodeSyncRequest), environ))
    customize: Callable[[wire.CustomizeRequest], wire.CustomizeResponse] = (
        controllers.topology_customize
        if hook == "topology-customize"
        else controllers.node_customize
    )
    return wire.encode(customize(wire.decode(body, wire.CustomizeRequest)))


def canonical(data: bytes | Any) -> str:
    """The stored form of a response: key order kept (it is part of byte stability), indented."""
    value = json.loads(data) if isinstance(data, bytes | str) else data
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def cases() -> list[tuple[str, str]]:
    found = []
    for hook in HOOKS:
        for case in sorted((FIXTURES / hook).glob("*/request.json")):
            found.append((hook, case.parent.name))
    return found


# --- builders --------------------------------------------------------------------------------


def node(
    name: str,
    zone: str | None = None,
    *,
    day: int = 1,
    ready: str = "True",
    unschedulable: bool = False,
    taints: Iterable[Json] = (),
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    deleting: bool = False,
) -> Json:
    """A Node created on day `day` of 2026-01; cordoned as `kubectl cordon` leaves it."""
    cordon = {
        "key": "node.kubernetes.io/unschedulable",
        "effect": "NoSchedule",
        "timeAdded": "2026-11-26T09:00:00Z",
    }
    return kube_node(
        name,
        zone,
        created=f"2026-01-{day:02d}T08:00:00Z",
        labels=labels,
        annotations={"node.alpha.kubernetes.io/ttl": "0"} | dict(annotations or {}),
        ready=ready,
        unschedulable=unschedulable,
        taints=[*taints, *([cordon] if unschedulable else [])],
        deleting=deleting,
        uid=f"00000000-0000-4000-8000-{sum(map(ord, name)):012d}",
    )


def as_reflector(n: Json, cluster_id: str, label: str = "calico-route-reflector") -> Json:
    """`n` as the node hook leaves an RR: RR label, reflector token, cluster ID, managed record."""
    n["metadata"]["labels"][label] = ""
    n["metadata"]["labels"]["route-reflector.dev/reflector"] = n["metadata"]["name"]
    n["metadata"]["annotations"]["projectcalico.org/RouteReflectorClusterID"] = cluster_id
    n["metadata"]["annotations"]["route-reflector.dev/managed"] = json.dumps(
        {
            "annotations": ["projectcalico.org/RouteReflectorClusterID"],
            "labels": [label, "route-reflector.dev/reflector"],
        },
        separators=(",", ":"),
    )
    return n


def topology(spec: Json, status: Json | None = None, name: str = "default") -> Json:
    obj: Json = {
        "apiVersion": "route-reflector.dev/v1alpha1",
        "kind": "RouteReflectorTopology",
        "metadata": {
            "name": name,
            "uid": "11111111-2222-4333-8444-555555555555",
            "generation": 1,
            "resourceVersion": "500",
            "creationTimestamp": "2026-11-26T09:00:00Z",
        },
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status | {"observedGeneration": 1}
    return obj


def _shipped_controllers() -> dict[str, Json]:
    """The two controllers by kind, as metacontroller/base/controllers.yaml ships them
    (Metacontroller sends its controller in every request)."""
    path = Path(__file__).resolve().parents[1] / "metacontroller" / "base" / "controllers.yaml"
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))}


COMPOSITE = _shipped_controllers()["CompositeController"]
DECORATOR = _shipped_controllers()["DecoratorController"]


def observed_peer(child: Json) -> Json:
    """A BGPPeer child as Metacontroller observes it after applying it."""
    observed: Json = json.loads(json.dumps(child))
    observed["metadata"] |= {
        "uid": "22222222-0000-4000-8000-000000000001",
        "resourceVersion": "700",
        "generation": 1,
        "creationTimestamp": "2026-11-26T09:30:00Z",
        "ownerReferences": [
            {
                "apiVersion": "route-reflector.dev/v1alpha1",
                "kind": "RouteReflectorTopology",
                "name": "default",
                "uid": "11111111-2222-4333-8444-555555555555",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    return observed


def topology_sync_request(
    spec: Json,
    nodes: Iterable[Json],
    status: Json | None = None,
    children: Iterable[Json] = (),
) -> Json:
    parent = topology(spec, status)
    return {
        "controller": COMPOSITE,
        "parent": parent,
        "children": {
            "BGPPeer.crd.projectcalico.org/v1": {
                c["metadata"]["name"]: observed_peer(c) for c in children
            }
        },
        "related": {
            "Node.v1": {n["metadata"]["name"]: n for n in nodes},
            "RouteReflectorTopology.route-reflector.dev/v1alpha1": {"default": parent},
        },
        "finalizing": False,
    }


def node_sync_request(n: Json, topologies: Iterable[Json]) -> Json:
    return {
        "controller": DECORATOR,
        "object": n,
        "attachments": {},
        "related": {
            "RouteReflectorTopology.route-reflector.dev/v1alpha1": {
                t["metadata"]["name"]: t for t in topologies
            }
        },
        "finalizing": False,
    }


def customize_request(controller: Json, parent: Json) -> Json:
    return {"controller": controller, "parent": parent}


def synced(spec: Json, nodes: list[Json]) -> Json:
    """The response of a first topology sync over `nodes` (used to write the previous status)."""
    body = json.dumps(topology_sync_request(spec, nodes)).encode()
    answer: Json = json.loads(call_hook("topology-sync", body))
    return answer


# --- the cases -------------------------------------------------------------------------------

SPEC_1_ZONE = {"topology": "simple", "min": 2, "max": 5, "ratio": 0.2}
SPEC_ZONES = {"topology": "simple", "zoneLabel": ZONE, "min": 2, "max": 5, "ratio": 0.1}
SPEC_SMALL = {"topology": "simple", "zoneLabel": ZONE, "min": 1, "max": 3, "ratio": 0.5}


def _zone(letter: str, count: int, first_day: int = 1) -> list[Json]:
    return [
        node(f"{letter}-{i:02d}", f"zone-{letter}", day=first_day + i - 1)
        for i in range(1, count + 1)
    ]


def _one_zone(count: int = 6) -> list[Json]:
    return [node(f"node-{i}", day=i) for i in range(1, count + 1)]


def _with_rrs(spec: Json, nodes: list[Json]) -> tuple[list[Json], Json, list[Json]]:
    """`nodes` after one converged round: RRs labelled, plus the status and children to feed."""
    answer = synced(spec, nodes)
    by_name = {n["metadata"]["name"]: n for n in nodes}
    for rr in answer["status"]["routeReflectors"]:
        as_reflector(by_name[rr["node"]], rr["clusterID"])
    status = synced_status(spec, nodes, answer)
    return nodes, status, answer["children"]


def synced_status(spec: Json, nodes: list[Json], first: Json) -> Json:
    """The status after the labels of `first` are on the nodes (so `actual` has caught up)."""
    body = json.dumps(
        topology_sync_request(spec, nodes, first["status"], first["children"])
    ).encode()
    status: Json = json.loads(call_hook("topology-sync", body))["status"]
    for condition in status["conditions"]:  # an hour old, to show which times a sync keeps
        condition["lastTransitionTime"] = "2026-11-26T09:00:00Z"
    return status


def topology_sync_cases() -> dict[str, Json]:
    out: dict[str, Json] = {}
    out["one-zone"] = topology_sync_request(SPEC_1_ZONE, _one_zone(12))
    out["three-uneven-zones"] = topology_sync_request(
        SPEC_ZONES, _zone("a", 40) + _zone("b", 10, 5) + _zone("c", 3, 9)
    )
    # zone-c has three ready nodes but none eligible: its two RRs spill over to the zone with
    # the most spare eligible nodes (a: 5 eligible, 2 placed; b: 3 eligible, 2 placed).
    short = _zone("a", 5) + _zone("b", 3)
    short += [
        node("c-01", "zone-c", day=1, unschedulable=True),
        node("c-02", "zone-c", day=2, labels={"example.com/no-rr": "true"}),
        node(
            "c-03",
            "zone-c",
            day=3,
            taints=[{"key": "gpu", "value": "a100", "effect": "NoSchedule"}],
        ),
    ]
    out["spill-over"] = topology_sync_request(
        SPEC_ZONES | {"incompatibleLabels": ["example.com/no-rr"]}, short
    )

    spec = SPEC_1_ZONE
    nodes, status, children = _with_rrs(spec, _one_zone(6))
    nodes[0]["spec"] |= {"unschedulable": True}
    nodes[0]["spec"]["taints"] = [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ]
    out["cordoned-reflector"] = topology_sync_request(spec, nodes, status, children)

    nodes, status, children = _with_rrs(spec, _one_zone(6))
    nodes[1]["status"]["conditions"][0] |= {"status": "False", "reason": "KubeletNotReady"}
    out["not-ready-reflector"] = topology_sync_request(spec, nodes, status, children)

    nodes, status, children = _with_rrs(spec, _one_zone(6))
    nodes[1]["metadata"]["deletionTimestamp"] = "2026-11-26T09:59:00Z"
    out["deleted-reflector"] = topology_sync_request(spec, nodes, status, children)

    taint = {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}
    tainted = _one_zone(5)
    tainted[0]["spec"]["taints"] = [taint]
    out["tainted-untolerated"] = topology_sync_request(spec, tainted)
    tolerated = {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}
    out["tainted-tolerated"] = topology_sync_request(spec | {"tolerations": [tolerated]}, tainted)

    incompatible = _one_zone(5)
    incompatible[0]["metadata"]["labels"]["node-role.kubernetes.io/edge"] = ""
    incompatible[2]["metadata"]["labels"]["example.com/no-rr"] = "true"
    out["incompatible-labels"] = topology_sync_request(
        spec | {"incompatibleLabels": ["node-role.kubernetes.io/edge=", "example.com/no-rr"]},
        incompatible,
    )

    preferred_spec = spec | {"preferredLabels": ["example.com/rr=preferred"]}
    fresh = _one_zone(6)
    fresh[4]["metadata"]["labels"]["example.com/rr"] = "preferred"
    out["preferred-new-candidate"] = topology_sync_request(preferred_spec, fresh)
    nodes, status, children = _with_rrs(preferred_spec, _one_zone(6))
    nodes[4]["metadata"]["labels"]["example.com/rr"] = "preferred"
    out["preferred-keeps-current"] = topology_sync_request(preferred_spec, nodes, status, children)

    nodes, status, children = _with_rrs(spec, _one_zone(6))
    out["converged"] = topology_sync_request(spec, nodes, status, children)
    out["invalid-min-above-max"] = topology_sync_request(
        spec | {"min": 4, "max": 2}, nodes, status, children
    )
    out["invalid-min-type"] = topology_sync_request(
        spec | {"min": "three"}, nodes, status, children
    )
    out["unknown-topology"] = topology_sync_request(
        spec | {"topology": "ring"}, nodes, status, children
    )
    out["paused"] = topology_sync_request(spec | {"paused": True}, nodes, status, children)
    stepped = {
        "topology": "simple",
        "zoneLabel": ZONE,
        "min": 1,
        "max": 4,
        "steps": [{"nodes": 10, "reflectors": 3}, {"nodes": 4, "reflectors": 2}],
    }
    out["stepped"] = topology_sync_request(
        stepped, _zone("a", 12) + _zone("b", 5, 3) + _zone("c", 2, 6)
    )
    return out


def node_sync_cases() -> dict[str, Json]:
    spec = SPEC_SMALL
    nodes = _zone("a", 3) + _zone("b", 2, 4)
    _, status, _ = _with_rrs(spec, [json.loads(json.dumps(n)) for n in nodes])
    rr_names = [rr["node"] for rr in status["routeReflectors"]]
    client_name = next(
        n["metadata"]["name"] for n in nodes if n["metadata"]["name"] not in rr_names
    )
    by_name = {n["metadata"]["name"]: n for n in nodes}
    rr = by_name[rr_names[0]]
    client = by_name[client_name]
    planned = topology(spec, status)
    out: dict[str, Json] = {}
    out["reflector"] = node_sync_request(rr, [planned])
    out["client"] = node_sync_request(client, [planned])
    former = as_reflector(json.loads(json.dumps(client)), "224.0.0.9")
    out["former-reflector"] = node_sync_request(former, [planned])
    labelled = as_reflector(json.loads(json.dumps(rr)), "224.0.0.1")
    out["uninstalled"] = node_sync_request(labelled, [])
    out["invalid-spec"] = node_sync_request(labelled, [topology(spec | {"min": 9}, status)])
    out["paused"] = node_sync_request(labelled, [topology(spec | {"paused": True}, status)])
    out["no-status-yet"] = node_sync_request(labelled, [topology(spec)])
    return out


def customize_cases() -> dict[str, dict[str, Json]]:
    return {
        "topology-customize": {
            "default": customize_request(COMPOSITE, topology(SPEC_ZONES)),
        },
        "node-customize": {
            "default": customize_request(DECORATOR, node("node-5", "zone-b", day=14)),
        },
    }


def write_requests() -> None:
    every = {"topology-sync": topology_sync_cases(), "node-sync": node_sync_cases()}
    every |= customize_cases()
    for hook, by_case in every.items():
        for case, request in by_case.items():
            folder = FIXTURES / hook / case
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "request.json").write_text(canonical(request))


if __name__ == "__main__":
    if sys.argv[1:] == ["write-requests"]:
        write_requests()
    else:
        raise SystemExit("usage: python tests/golden.py write-requests")


# --- multi, quorum and hierarchy cases -------------------------------------------------------
# Written once, like the rest, but on their own (`write_topology_requests()`, e.g.
# `cd tests && python -c 'import golden; golden.write_topology_requests()'`), so writing them
# never rewrites the older requests above.

RACK = "topology.example.com/rack"
SPEC_MULTI = {"topology": "multi", "zoneLabel": ZONE, "min": 2, "max": 4, "ratio": 0.2}
# Zones of 10, 8 and 3 ready nodes demand 5, 4 and 3 RRs: one cluster each, k = 5, 4 and 3.
SPEC_QUORUM = {"topology": "quorum", "zoneLabel": ZONE, "min": 3, "max": 5, "ratio": 0.5}
SPEC_HIERARCHY = {
    "topology": "hierarchy",
    "zoneLabel": ZONE,
    "rackLabel": RACK,
    "min": 2,
    "max": 4,
    "ratio": 0.1,
}


def _multi_nodes() -> list[Json]:
    """15 nodes in 3 zones; zone-c has one cordoned and one NotReady node."""
    nodes = _zone("a", 6) + _zone("b", 5, 3) + _zone("c", 2, 5)
    nodes.append(node("c-03", "zone-c", day=7, unschedulable=True))
    nodes.append(node("c-04", "zone-c", day=8, ready="False"))
    return nodes


def _quorum_nodes() -> list[Json]:
    return _zone("a", 10) + _zone("b", 8, 2) + _zone("c", 3, 4)


def _hierarchy_nodes() -> list[Json]:
    """Racks r1 (5 nodes, zone-a), r2 (4, zone-b), r3 (2, zone-c, one cordoned: fewer than two
    eligible, so the spine serves it) and 3 nodes without a rack label, one per zone."""
    nodes = [node(f"r1-{i:02d}", "zone-a", day=i, labels={RACK: "r1"}) for i in range(1, 6)]
    nodes += [node(f"r2-{i:02d}", "zone-b", day=i + 1, labels={RACK: "r2"}) for i in range(1, 5)]
    nodes.append(node("r3-01", "zone-c", day=2, labels={RACK: "r3"}))
    nodes.append(node("r3-02", "zone-c", day=3, labels={RACK: "r3"}, unschedulable=True))
    nodes += [node(f"edge-{z}", f"zone-{z}", day=9) for z in "abc"]
    return nodes


TOPOLOGY_CASES: dict[str, tuple[Json, Callable[[], list[Json]]]] = {
    "multi": (SPEC_MULTI, _multi_nodes),
    "quorum": (SPEC_QUORUM, _quorum_nodes),
    "hierarchy": (SPEC_HIERARCHY, _hierarchy_nodes),
}


def topology_cases() -> dict[str, dict[str, Json]]:
    """Per topology: a first topology sync, and node syncs of a client and an RR under the
    converged plan."""
    out: dict[str, dict[str, Json]] = {"topology-sync": {}, "node-sync": {}}
    for kind, (spec, make) in TOPOLOGY_CASES.items():
        case = {"multi": "three-zones", "quorum": "three-zones", "hierarchy": "three-racks"}[kind]
        out["topology-sync"][f"{kind}-{case}"] = topology_sync_request(spec, make())
        _, status, _ = _with_rrs(spec, make())
        planned = topology(spec, status)
        by_name = {n["metadata"]["name"]: n for n in make()}
        rrs = [rr["node"] for rr in status["routeReflectors"]]
        in_rack = [
            name
            for name, n in sorted(by_name.items())
            if name not in rrs and RACK in n["metadata"]["labels"]
        ]
        client = in_rack[0] if kind == "hierarchy" else next(n for n in by_name if n not in rrs)
        out["node-sync"][f"{kind}-client"] = node_sync_request(by_name[client], [planned])
        out["node-sync"][f"{kind}-reflector"] = node_sync_request(by_name[rrs[0]], [planned])
    return out


def write_topology_requests() -> None:
    for hook, by_case in topology_cases().items():
        for case, request in by_case.items():
            folder = FIXTURES / hook / case
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "request.json").write_text(canonical(request))
