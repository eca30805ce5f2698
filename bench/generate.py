"""Realistic cloud Nodes (10-15 KB of JSON each), deterministic from a seed, and the hook request
bodies Metacontroller would send for them: a topology sync over every Node, a node sync per Node.

Nodes look like an EKS cluster's: deep managedFields, five conditions with heartbeats, 30+ images
with digests, CSI and Calico annotations, zone/region/instance-type/hostname labels and a rack
label (~40 nodes per rack) for the hierarchy topology. The bodies are assembled from per-node
JSON so a 20,000-node request (~250 MB) never exists as one Python object tree.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import orjson
import yaml

from hooks import controllers, wire
from hooks.calico import GROUP_LABEL, REFLECTOR_LABEL
from hooks.stamps import stamp

Json = dict[str, Any]

SIZES = (100, 1_000, 5_000, 10_000, 20_000)
TOPOLOGIES = ("simple", "multi", "quorum", "hierarchy")
REGION = "us-east-1"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
ZONE_LABEL = "topology.kubernetes.io/zone"
RACK_LABEL = "topology.example.com/rack"
NODES_PER_RACK = 40
NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
EPOCH = datetime(2025, 3, 1, 6, 0, 0, tzinfo=UTC)
CONTROLLERS = Path(__file__).resolve().parents[1] / "metacontroller" / "base" / "controllers.yaml"
ECR = f"602401143452.dkr.ecr.{REGION}.amazonaws.com"
APPS = "ghcr.io/acme-retail"
INSTANCE_TYPES = ("m6i.4xlarge", "m6i.8xlarge", "c6i.8xlarge", "r6i.4xlarge", "m7i.8xlarge")
# Most nodes run the same daemonsets; the rest of a node's images come from the apps it ran.
SYSTEM_IMAGES = (
    (f"{ECR}/eks/kube-proxy", "v1.30.6-minimal-eksbuild.3", 35_811_543),
    (f"{ECR}/eks/coredns", "v1.11.3-eksbuild.2", 18_534_722),
    (f"{ECR}/eks/aws-ebs-csi-driver", "v1.37.0", 29_402_417),
    (f"{ECR}/eks/csi-node-driver-registrar", "v2.12.0-eks-1-31-7", 8_213_764),
    (f"{ECR}/eks/livenessprobe", "v2.14.0-eks-1-31-7", 8_096_002),
    (f"{ECR}/eks/pause", "3.5", 299_010),
    ("quay.io/tigera/operator", "v1.36.2", 72_014_121),
    ("docker.io/calico/node", "v3.29.1", 146_338_106),
    ("docker.io/calico/cni", "v3.29.1", 94_823_552),
    ("docker.io/calico/pod2daemon-flexvol", "v3.29.1", 7_420_128),
    ("docker.io/calico/csi", "v3.29.1", 8_850_318),
    ("docker.io/calico/node-driver-registrar", "v3.29.1", 11_630_402),
    ("quay.io/prometheus/node-exporter", "v1.8.2", 11_532_214),
    ("public.ecr.aws/aws-observability/aws-for-fluent-bit", "2.32.4", 112_380_227),
    ("registry.k8s.io/kube-state-metrics/kube-state-metrics", "v2.13.0", 21_204_884),
    ("docker.io/datadog/agent", "7.59.0", 305_118_644),
)
APP_TEAMS = ("payments", "checkout", "search", "catalog", "identity", "ledger", "ml-serving")


def _hex(seed: int, *parts: object, size: int = 64) -> str:
    text = "\0".join(str(p) for p in (seed, *parts))
    return hashlib.blake2b(text.encode(), digest_size=32).hexdigest()[:size]


def _uuid(seed: int, *parts: object) -> str:
    h = _hex(seed, *parts, size=32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def _image(seed: int, repo: str, tag: str, size: int) -> Json:
    return {"names": [f"{repo}@sha256:{_hex(seed, repo, tag)}", f"{repo}:{tag}"], "sizeBytes": size}


@dataclass(frozen=True)
class ImagePool:
    system: tuple[Json, ...]
    apps: tuple[Json, ...]

    @classmethod
    def build(cls, seed: int) -> ImagePool:
        rng = random.Random(f"images:{seed}")
        system = tuple(_image(seed, r, t, s) for r, t, s in SYSTEM_IMAGES)
        apps = []
        for team in APP_TEAMS:
            for service in range(12):
                repo = f"{APPS}/{team}/svc-{service:02d}"
                month, day = rng.randint(1, 11), rng.randint(1, 28)
                tag = f"2026.{month:02d}.{day:02d}-{_hex(seed, repo, size=7)}"
                apps.append(_image(seed, repo, tag, rng.randint(40_000_000, 900_000_000)))
        return cls(system, tuple(apps))


def node_name(index: int) -> str:
    """EKS-style names from a unique private IPv4: unique for any index below 2**24."""
    ip = node_ip(index)
    return f"ip-{ip.replace('.', '-')}.ec2.internal"


def node_ip(index: int) -> str:
    value = (10 << 24) + (32 << 16) + index + 10
    return ".".join(str((value >> shift) & 255) for shift in (24, 16, 8, 0))


def _fields(*names: str) -> Json:
    """managedFields' set of owned fields: `f:name` → {} for each name."""
    return {f"f:{name}": {} for name in names}


def _condition_fields(*kinds: str) -> Json:
    owned = _fields(
        "lastHeartbeatTime", "lastTransitionTime", "message", "reason", "status", "type"
    )
    return {f'k:{{"type":"{kind}"}}': {".": {}, **owned} for kind in kinds}


def _manager(name: str, time: str, fields: Json, subresource: str | None = None) -> Json:
    """One managedFields entry: an Update by `name` at `time` owning `fields`."""
    entry: Json = {
        "manager": name,
        "operation": "Update",
        "apiVersion": "v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    return entry | ({"subresource": subresource} if subresource else {})


def _managed_fields(seed: int, index: int, created: str, heartbeat: str) -> list[Json]:
    resources = _fields(
        "attachable-volumes-aws-ebs",
        "cpu",
        "ephemeral-storage",
        "hugepages-1Gi",
        "hugepages-2Mi",
        "memory",
        "pods",
    )
    address = {".": {}, **_fields("address", "type")}
    kubelet = {
        "f:metadata": {
            "f:annotations": {
                ".": {},
                **_fields(
                    "alpha.kubernetes.io/provided-node-ip",
                    "node.alpha.kubernetes.io/ttl",
                    "volumes.kubernetes.io/controller-managed-attach-detach",
                ),
            },
            "f:labels": {
                ".": {},
                **_fields(
                    "beta.kubernetes.io/arch",
                    "beta.kubernetes.io/os",
                    "eks.amazonaws.com/capacityType",
                    "eks.amazonaws.com/nodegroup",
                    "eks.amazonaws.com/nodegroup-image",
                    "eks.amazonaws.com/sourceLaunchTemplateId",
                    "kubernetes.io/arch",
                    "kubernetes.io/hostname",
                    "kubernetes.io/os",
                    RACK_LABEL,
                ),
            },
        },
        "f:spec": _fields("providerID"),
    }
    kubelet_status = {
        "f:status": {
            "f:allocatable": resources,
            "f:capacity": resources,
            "f:conditions": _condition_fields(
                "DiskPressure", "MemoryPressure", "PIDPressure", "Ready"
            ),
            "f:images": {},
            "f:nodeInfo": _fields("bootID", "kernelVersion", "osImage"),
        }
    }
    controller_manager = {
        "f:metadata": {"f:annotations": _fields("node.alpha.kubernetes.io/ttl")},
        "f:spec": {
            "f:podCIDR": {},
            "f:podCIDRs": {".": {}, 'v:"' + _pod_cidr(index) + '"': {}},
        },
    }
    cloud_controller_manager = {
        "f:metadata": {
            "f:labels": _fields(
                "beta.kubernetes.io/instance-type",
                "failure-domain.beta.kubernetes.io/region",
                "failure-domain.beta.kubernetes.io/zone",
                "node.kubernetes.io/instance-type",
                "topology.k8s.aws/zone-id",
                "topology.kubernetes.io/region",
                "topology.kubernetes.io/zone",
            )
        },
        "f:status": {
            "f:addresses": {
                f'k:{{"type":"{kind}"}}': address
                for kind in ("Hostname", "InternalDNS", "InternalIP")
            }
        },
    }
    calico = {
        "f:metadata": {
            "f:annotations": _fields(
                "projectcalico.org/IPv4Address", "projectcalico.org/IPv4VXLANTunnelAddr"
            )
        },
        "f:status": {"f:conditions": _condition_fields("NetworkUnavailable")},
    }
    ebs = {
        "f:metadata": {
            "f:annotations": _fields("csi.volume.kubernetes.io/nodeid"),
            "f:labels": _fields("topology.ebs.csi.aws.com/zone"),
        }
    }
    return [
        _manager("kubelet", created, kubelet),
        _manager("kubelet", heartbeat, kubelet_status, "status"),
        _manager("kube-controller-manager", created, controller_manager),
        _manager("aws-cloud-controller-manager", created, cloud_controller_manager, "status"),
        _manager("calico-node", created, calico, "status"),
        _manager("ebs-csi-node", created, ebs),
    ]


def _pod_cidr(index: int) -> str:
    return f"100.{64 + (index >> 8) % 64}.{index & 255}.0/24"


@dataclass
class Generator:
    """Deterministic nodes for one seed; `node(i)` is the same dict for the same (seed, i)."""

    seed: int = 1
    zones: Sequence[str] = ZONES
    images: ImagePool = field(init=False)

    def __post_init__(self) -> None:
        self.images = ImagePool.build(self.seed)

    def zone_of(self, index: int) -> str:
        return self.zones[index % len(self.zones)]

    def rack_of(self, index: int, zone: str | None = None) -> str:
        zone = zone or self.zone_of(index)
        return f"{zone}-rack-{index // len(self.zones) // NODES_PER_RACK:03d}"

    def node(
        self,
        index: int,
        *,
        zone: str | None = None,
        created: datetime | None = None,
        ready: bool | None = None,
        unschedulable: bool | None = None,
        rack: str | None = None,
    ) -> Json:
        seed = self.seed
        # One Random per node, drawn from in a fixed order: the same node for the same (seed, i).
        rng = random.Random(seed * 1_000_003 + index)
        zone = zone or self.zone_of(index)
        name, ip = node_name(index), node_ip(index)
        instance = f"i-0{_hex(seed, 'instance', index, size=16)}"
        itype = INSTANCE_TYPES[rng.randrange(len(INSTANCE_TYPES))]
        born = created or EPOCH + timedelta(seconds=index * 37 + rng.randrange(30))
        created_at = stamp(born)
        heartbeat = stamp(NOW - timedelta(seconds=rng.randrange(40)))
        if ready is None:
            ready = rng.random() >= 0.005
        if unschedulable is None:
            unschedulable = rng.random() < 0.005
        capacity_type = "ON_DEMAND" if rng.random() < 0.7 else "SPOT"
        labels = self._labels(index, zone, itype, capacity_type, rack or self.rack_of(index, zone))
        capacity, allocatable = _resources(itype)
        images = list(self.images.system) + rng.sample(self.images.apps, 14 + rng.randrange(5))
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "uid": _uuid(seed, "node", index),
                "resourceVersion": str(40_000_000 + rng.randrange(9_000_000)),
                "creationTimestamp": created_at,
                "labels": labels,
                "annotations": _annotations(index, name, ip, instance),
                "managedFields": _managed_fields(seed, index, created_at, heartbeat),
            },
            "spec": _spec(index, zone, instance, ready, unschedulable, heartbeat),
            "status": {
                "capacity": capacity,
                "allocatable": allocatable,
                "conditions": _conditions(ready, heartbeat, created_at),
                "addresses": [
                    {"type": "InternalIP", "address": ip},
                    {"type": "InternalDNS", "address": name},
                    {"type": "Hostname", "address": name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": _node_info(seed, index),
                "images": images,
            },
        }

    def _labels(self, index: int, zone: str, itype: str, capacity_type: str, rack: str) -> Json:
        seed = self.seed
        nodegroup = f"workers-{zone[-1]}-{itype.split('.')[0]}-{_hex(seed, zone, itype, size=8)}"
        zone_id = self.zones.index(zone) + 1 if zone in self.zones else 9
        return {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/instance-type": itype,
            "beta.kubernetes.io/os": "linux",
            "eks.amazonaws.com/capacityType": capacity_type,
            "eks.amazonaws.com/nodegroup": nodegroup,
            "eks.amazonaws.com/nodegroup-image": f"ami-0{_hex(seed, 'ami', zone, size=16)}",
            "eks.amazonaws.com/sourceLaunchTemplateId": "lt-0"
            + _hex(seed, "lt", nodegroup, size=16),
            "failure-domain.beta.kubernetes.io/region": REGION,
            "failure-domain.beta.kubernetes.io/zone": zone,
            "k8s.io/cloud-provider-aws": _hex(seed, "cluster", size=32),
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": node_name(index),
            "kubernetes.io/os": "linux",
            "node.kubernetes.io/instance-type": itype,
            RACK_LABEL: rack,
            "topology.ebs.csi.aws.com/zone": zone,
            "topology.k8s.aws/zone-id": f"use1-az{zone_id}",
            "topology.kubernetes.io/region": REGION,
            ZONE_LABEL: zone,
        }

    def nodes(self, count: int) -> Iterator[Json]:
        return (self.node(i) for i in range(count))


def _annotations(index: int, name: str, ip: str, instance: str) -> Json:
    tunnel = f"{index % 251}.{index % 199 + 1}"
    return {
        "alpha.kubernetes.io/provided-node-ip": ip,
        "csi.volume.kubernetes.io/nodeid": orjson.dumps(
            {
                "csi.tigera.io": name,
                "ebs.csi.aws.com": instance,
                "efs.csi.aws.com": instance,
                "secrets-store.csi.k8s.io": name,
            }
        ).decode(),
        "node.alpha.kubernetes.io/ttl": "0",
        "projectcalico.org/IPv4Address": f"{ip}/19",
        "projectcalico.org/IPv4VXLANTunnelAddr": f"100.{64 + index % 64}.{tunnel}",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
    }


def _spec(
    index: int, zone: str, instance: str, ready: bool, unschedulable: bool, heartbeat: str
) -> Json:
    """The Node's spec: cordoned and unreachable nodes carry the taints Kubernetes puts on."""
    taints = [
        {"key": f"node.kubernetes.io/{key}", "effect": effect, "timeAdded": heartbeat}
        for key, effect, applies in (
            ("unschedulable", "NoSchedule", unschedulable),
            ("unreachable", "NoExecute", not ready),
        )
        if applies
    ]
    spec: Json = {
        "podCIDR": _pod_cidr(index),
        "podCIDRs": [_pod_cidr(index)],
        "providerID": f"aws:///{zone}/{instance}",
    }
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return spec


def _resources(itype: str) -> tuple[Json, Json]:
    """Capacity and allocatable of an instance type."""
    cpu = {"m6i.4xlarge": 16, "r6i.4xlarge": 16}.get(itype, 32)
    memory = cpu * (8 if itype.startswith("r") else 4) * 1024 * 1024
    capacity = {
        "attachable-volumes-aws-ebs": "39",
        "cpu": str(cpu),
        "ephemeral-storage": "104845292Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": f"{memory}Ki",
        "pods": "110",
    }
    allocatable = dict(capacity, cpu=f"{cpu * 1000 - 110}m", memory=f"{memory - 1_000_000}Ki")
    allocatable["ephemeral-storage"] = "95551679124"
    return capacity, allocatable


def _conditions(ready: bool, heartbeat: str, transition: str) -> list[Json]:
    kubelet = (
        ("NetworkUnavailable", "False", "CalicoIsUp", "Calico is running on this node"),
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status")
        if ready
        else ("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
    )
    return [
        {
            "type": kind,
            "status": status,
            "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": transition,
            "reason": reason,
            "message": message,
        }
        for kind, status, reason, message in kubelet
    ]


def _node_info(seed: int, index: int) -> Json:
    system_uuid = _uuid(seed, "sys", index)
    return {
        "machineID": _hex(seed, "machine", index, size=32),
        "systemUUID": "ec2" + _hex(seed, "sys", index, size=5) + system_uuid[8:],
        "bootID": _uuid(seed, "boot", index),
        "kernelVersion": "5.10.228-219.884.amzn2.x86_64",
        "osImage": "Amazon Linux 2",
        "containerRuntimeVersion": "containerd://1.7.23",
        "kubeletVersion": "v1.30.6-eks-94953ac",
        "kubeProxyVersion": "v1.30.6-eks-94953ac",
        "operatingSystem": "linux",
        "architecture": "amd64",
    }


# --- request bodies ----------------------------------------------------------------------------


def _shipped_controller(kind: str) -> Json:
    """The controller as `metacontroller/base/controllers.yaml` ships it (Metacontroller sends
    it in every request), never retyped here."""
    with CONTROLLERS.open(encoding="utf-8") as handle:
        documents = list(yaml.safe_load_all(handle))
    found: Json = next(d for d in documents if d["kind"] == kind)
    return found


def topology_controller() -> Json:
    return _shipped_controller("CompositeController")


def node_controller() -> Json:
    return _shipped_controller("DecoratorController")


def topology_spec(topology: str) -> Json:
    spec: Json = {"topology": topology, "zoneLabel": ZONE_LABEL}
    if topology == "hierarchy":
        # Two RRs per rack need one cluster ID per rack: 500 racks at 20,000 nodes is more than
        # the 254 IDs of the default template, so this one has two `%d`.
        spec |= {"rackLabel": RACK_LABEL, "clusterID": "10.%d.%d.1"}
    return spec


def topology_object(topology: str, status: Json | None = None) -> Json:
    parent: Json = {
        "apiVersion": wire.TOPOLOGY_API,
        "kind": "RouteReflectorTopology",
        "metadata": {
            "name": "default",
            "uid": "11111111-2222-4333-8444-555555555555",
            "generation": 1,
            "resourceVersion": "4812",
            "creationTimestamp": "2026-11-26T09:00:00Z",
        },
        "spec": topology_spec(topology),
    }
    if status is not None:
        parent["status"] = dict(status, observedGeneration=1)
    return parent


def bgp_peer_child(peer: Json, index: int) -> Json:
    """A BGPPeer as Metacontroller observes it: what we rendered, plus server-side metadata."""
    child = copy.deepcopy(peer)
    meta = child["metadata"]
    meta |= {
        "uid": _uuid(0, "peer", meta["name"]),
        "resourceVersion": str(5000 + index),
        "generation": 1,
        "creationTimestamp": "2026-11-26T09:00:05Z",
        "ownerReferences": [
            {
                "apiVersion": wire.TOPOLOGY_API,
                "kind": "RouteReflectorTopology",
                "name": "default",
                "uid": "11111111-2222-4333-8444-555555555555",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    meta.setdefault("labels", {})["controller-uid"] = "11111111-2222-4333-8444-555555555555"
    return child


def _name_key(name: str) -> bytes:
    return orjson.dumps(name)


def topology_sync_body(
    nodes: Iterable[bytes | Json], parent: Json, children: Sequence[Json] = ()
) -> bytes:
    """The CompositeController sync request for `parent` with every Node related (bytes: each
    node is encoded on its own and joined, so huge bodies stay cheap to build)."""
    encoded: list[bytes] = []
    for node in nodes:
        raw = node if isinstance(node, bytes) else orjson.dumps(node)
        name = msgspec.json.decode(raw, type=_NameOnly).metadata.name
        encoded.append(_name_key(name) + b":" + raw)
    peers = {c["metadata"]["name"]: bgp_peer_child(c, i) for i, c in enumerate(children)}
    head = orjson.dumps(
        {
            "controller": topology_controller(),
            "parent": parent,
            "children": {wire.BGPPEER_KEY: peers},
        }
    )
    topologies = orjson.dumps({parent["metadata"]["name"]: parent})
    return b"".join(
        [
            head[:-1],
            b',"related":{',
            _name_key(wire.NODE_KEY),
            b":{",
            b",".join(encoded),
            b"},",
            _name_key(wire.TOPOLOGY_KEY),
            b":",
            topologies,
            b'},"finalizing":false}',
        ]
    )


def node_sync_body(node: bytes | Json, parent: Json) -> bytes:
    """The DecoratorController sync request for one Node, the topology (with status) related."""
    raw = node if isinstance(node, bytes) else orjson.dumps(node)
    head = orjson.dumps({"controller": node_controller()})
    related = orjson.dumps({wire.TOPOLOGY_KEY: {parent["metadata"]["name"]: parent}})
    return b"".join(
        [
            head[:-1],
            b',"object":',
            raw,
            b',"attachments":{},"related":',
            related,
            b',"finalizing":false}',
        ]
    )


class _NameMeta(msgspec.Struct):
    name: str


class _NameOnly(msgspec.Struct):
    metadata: _NameMeta


# --- steady state ------------------------------------------------------------------------------


def apply_changes(
    node: Json, labels: Mapping[str, str | None], annotations: Mapping[str, str | None]
) -> Json:
    """`node` with a node-sync answer merged (shallow copies: the big parts stay shared)."""
    meta = dict(node["metadata"])
    for key, changes in (("labels", labels), ("annotations", annotations)):
        merged = dict(meta.get(key) or {})
        for k, v in changes.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        meta[key] = merged
    return dict(node, metadata=meta)


def slim(node: Json) -> Json:
    """Only what the plan reads (name, age, labels, our annotations, cordon, taints, Ready):
    same plan, a fraction of the bytes, for the steps that build state rather than time it."""
    meta = node["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in OUR_ANNOTATIONS}
    spec = {k: v for k, v in (node.get("spec") or {}).items() if k in ("unschedulable", "taints")}
    conditions = [
        {"type": c["type"], "status": c["status"]}
        for c in (node.get("status") or {}).get("conditions", [])
        if c.get("type") == "Ready"
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": meta["name"],
            "creationTimestamp": meta.get("creationTimestamp"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": annotations,
        },
        "spec": spec,
        "status": {"conditions": conditions},
    }


OUR_LABELS = (REFLECTOR_LABEL, GROUP_LABEL, "calico-route-reflector")
OUR_ANNOTATIONS = (wire.CLUSTER_ID_ANNOTATION, wire.MANAGED_ANNOTATION)


def strip_ours(node: Json) -> Json:
    """`node` without any label or annotation the hooks manage: a cluster never planned."""
    meta = dict(node["metadata"])
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k not in OUR_LABELS}
    meta["annotations"] = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in OUR_ANNOTATIONS
    }
    return dict(node, metadata=meta)


@dataclass
class SteadyState:
    """A converged cluster for one topology: labelled nodes, the topology with its status, the
    BGPPeers it owns; the bodies Metacontroller sends for it."""

    topology: str
    parent: Json  # with status
    children: list[Json]
    nodes: list[Json]  # labelled as the node hook left them
    reflectors: list[str]

    def topology_body(self) -> bytes:
        return topology_sync_body(self.nodes, self.parent, self.children)

    def node_body(self, index: int) -> bytes:
        return node_sync_body(self.nodes[index], self.parent)


def sync_once(
    nodes: Sequence[Json], parent: Json, children: Sequence[Json], environ: Mapping[str, str]
) -> wire.TopologySyncResponse:
    body = topology_sync_body((slim(n) for n in nodes), parent, children)
    request = wire.decode(body, wire.TopologySyncRequest)
    return controllers.topology_sync(request, environ, NOW)


def label_nodes(nodes: Sequence[Json], parent: Json, environ: Mapping[str, str]) -> list[Json]:
    """Every node with the node hook's answer for it applied (requests go through the bytes, as
    the route reads them, so the wire types stay the hooks' own business)."""
    out = []
    for node in nodes:
        body = node_sync_body(slim(node), parent)
        answer = controllers.node_sync(wire.decode(body, wire.NodeSyncRequest), environ)
        out.append(apply_changes(node, answer.labels, answer.annotations))
    return out


def steady_state(
    nodes: Sequence[Json], topology: str, environ: Mapping[str, str] | None = None
) -> SteadyState:
    """Sync the topology once on the unlabelled cluster, apply the node hook's labels, sync again
    (so `actual` has caught up): the state every later heartbeat-driven sync sees."""
    env = dict(environ or {})
    parent = topology_object(topology)
    children: list[Json] = []
    labelled = list(nodes)
    for _ in range(2):
        response = sync_once(labelled, parent, children, env)
        parent = topology_object(topology, response.status)
        children = response.children
        labelled = label_nodes(labelled, parent, env)
    reflectors = [rr["node"] for rr in parent["status"].get("routeReflectors", [])]
    return SteadyState(topology, parent, children, labelled, reflectors)
