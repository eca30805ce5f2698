"""A cluster in a test: Metacontroller, Kubernetes and Calico played in-process around the real
topology and node hooks, one step at a time, with the routing invariants checked after each step.

A step is: the fake calico-node fills in the CalicoNodeStatus children it is asked about; the
topology sync runs on a request shaped as Metacontroller sends it (JSON through the wire types);
its children replace the observed set by name and its status becomes the parent's; then every
Node is decorated and its labels and annotations merged (`null` deletes); the clock advances.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from golden import COMPOSITE, DECORATOR
from nodes import kube_node

from hooks import controllers, wire
from hooks.config import load_settings
from hooks.legacy import carries_reflector_label
from hooks.paths import PathReport, count_paths
from hooks.selectors import parse_selector
from hooks.sessions import CLUSTER_ID_ANNOTATION, nodes_from_objects
from hooks.stamps import stamp
from hooks.verify import verify

Json = dict[str, Any]

ZONE = "topology.kubernetes.io/zone"
START = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
BORN = datetime(2026, 1, 1, tzinfo=UTC)
BGPPEER_KEY = wire.BGPPEER_KEY
NODESTATUS_KEY = wire.NODESTATUS_KEY


def make_node(
    name: str,
    zone: str | None = None,
    *,
    index: int = 0,
    ready: bool = True,
    labels: Mapping[str, str] | None = None,
) -> Json:
    """A Node; `index` orders creation (older first) and makes its uid."""
    return kube_node(
        name,
        zone,
        created=stamp(BORN + timedelta(minutes=index)),
        labels=labels,
        annotations={"node.alpha.kubernetes.io/ttl": "0"},
        ready="True" if ready else "Unknown",
        uid=f"00000000-0000-4000-8000-{index:012d}",
        address=f"10.0.{index // 256}.{index % 256}",
    )


def largest_cluster(status: Json) -> int:
    """The most RRs in `status` sharing one cluster ID (the one they carry or change to)."""
    sizes = Counter(rr.get("nextClusterID") or rr["clusterID"] for rr in status["routeReflectors"])
    return max(sizes.values())


def zoned_nodes(zones: Mapping[str, int], *, start: int = 0, prefix: str = "") -> list[Json]:
    """`count` nodes per zone, named `<prefix><zone>-<n>`, interleaved in creation order."""
    nodes = []
    index = start
    longest = max(zones.values(), default=0)
    for number in range(longest):
        for zone, count in sorted(zones.items()):
            if number < count:
                nodes.append(make_node(f"{prefix}{zone}-{number:03d}", zone, index=index))
                index += 1
    return nodes


def is_live(node: Json) -> bool:
    """Up and running BIRD: Ready and not being deleted."""
    if node["metadata"].get("deletionTimestamp"):
        return False
    for condition in node.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


class InvariantError(AssertionError):
    """A step broke routing or make-before-break; the message names the step and the nodes."""


@dataclass
class Record:
    """What one step observed and answered."""

    step: int
    now: datetime
    request: bytes  # the topology sync request, exactly as Metacontroller would send it
    response: bytes  # the topology sync's answer, exactly as the service would send it
    status: Json
    children: dict[str, dict[str, Json]]
    decision: controllers.TopologyDecision
    reflectors: dict[str, str]  # node → state, from status
    labelled: frozenset[str]  # nodes carrying the RR label after the step
    peers_of: dict[str, frozenset[str]]  # live client → the live RRs it has sessions with


@dataclass
class Scenario:
    """Nodes, the RouteReflectorTopology, its children and a clock: a cluster for the hooks."""

    spec: Json
    nodes: list[Json]
    calico_status: bool = True  # Calico >= 3.21: the controller owns CalicoNodeStatus children
    establish_after: int | None = 1  # steps an RR carries its label before sessions establish
    undated: bool = False  # calico-node's reports carry no lastUpdated
    tick: timedelta = timedelta(seconds=10)
    environ: dict[str, str] = field(default_factory=dict)
    check: bool = True
    now: datetime = START
    name: str = "default"
    generation: int = 1

    def __post_init__(self) -> None:
        self.node_map: dict[str, Json] = {}
        for node in self.nodes:
            self.add(node)
        self.children: dict[str, dict[str, Json]] = {BGPPEER_KEY: {}}
        if self.calico_status:
            self.children[NODESTATUS_KEY] = {}
        self.status: Json | None = None
        self.labelled_steps: dict[str, int] = {}
        self.history: list[Record] = []
        self.settings = load_settings(self.spec, self.environ)
        self.hidden: set[str] = set()  # nodes missing from the topology request (a broken cache)
        self.shuffle: random.Random | None = None  # list related Nodes in a random order
        self.foreign_peers: dict[str, Json] = {}  # BGPPeers not ours (e.g. the old operator's)
        self.frozen: set[str] = set()  # nodes whose calico-node stopped updating its report
        # A new cluster ID restarts every BGP session of the RR: nodes whose ID changed and whose
        # sessions are not Established again yet.
        self.restarting: set[str] = set()

    # --- the cluster's nodes -----------------------------------------------------------------

    def add(self, *nodes: Json) -> None:
        for node in nodes:
            self.node_map[node["metadata"]["name"]] = copy.deepcopy(node)

    def remove(self, *names: str) -> None:
        for name in names:
            del self.node_map[name]

    def node(self, name: str) -> Json:
        return self.node_map[name]

    def cordon(self, name: str) -> None:
        self.node(name).setdefault("spec", {})["unschedulable"] = True

    def set_ready(self, name: str, ready: bool) -> None:
        for condition in self.node(name)["status"]["conditions"]:
            if condition["type"] == "Ready":
                condition["status"] = "True" if ready else "Unknown"

    def label(self, name: str, **labels: str) -> None:
        self.node(name)["metadata"].setdefault("labels", {}).update(labels)

    def set_spec(self, **changes: Any) -> None:
        self.spec = {**self.spec, **changes}
        self.generation += 1
        self.settings = load_settings(self.spec, self.environ)

    # --- reading the state -------------------------------------------------------------------

    @property
    def last(self) -> Record:
        return self.history[-1]

    def labelled(self) -> frozenset[str]:
        key, value = self.settings.reflector_label
        return frozenset(
            name
            for name, node in self.node_map.items()
            if carries_reflector_label(node["metadata"].get("labels", {}), key, value)
        )

    def reflectors(self) -> dict[str, str]:
        """Node → state (Active, Pending, Draining), as the last status says."""
        return {rr["node"]: rr["state"] for rr in (self.status or {}).get("routeReflectors", [])}

    def condition(self, kind: str) -> Json:
        for condition in (self.status or {}).get("conditions", []):
            if condition["type"] == kind:
                return dict(condition)
        raise KeyError(kind)

    def bgp_peers(self) -> list[Json]:
        return [self.children[BGPPEER_KEY][n] for n in sorted(self.children[BGPPEER_KEY])]

    def group_of(self, name: str) -> str | None:
        value = self.node(name)["metadata"].get("labels", {}).get("route-reflector.dev/group")
        return value if isinstance(value, str) else None

    # --- one step ----------------------------------------------------------------------------

    def topology(self) -> Json:
        topology: Json = {
            "apiVersion": wire.TOPOLOGY_API,
            "kind": "RouteReflectorTopology",
            "metadata": {
                "name": self.name,
                "uid": "11111111-2222-4333-8444-555555555555",
                "generation": self.generation,
                "resourceVersion": str(500 + len(self.history)),
                "creationTimestamp": "2026-11-26T09:00:00Z",
            },
            "spec": copy.deepcopy(self.spec),
        }
        if self.status is not None:
            topology["status"] = copy.deepcopy(self.status)
        return topology

    def topology_request(self) -> bytes:
        names = sorted(set(self.node_map) - self.hidden)
        if self.shuffle is not None:
            self.shuffle.shuffle(names)
        request = {
            "controller": COMPOSITE,
            "parent": self.topology(),
            "children": self.children,
            "related": {
                wire.NODE_KEY: {name: self.node_map[name] for name in names},
                **({BGPPEER_KEY: self.foreign_peers} if self.foreign_peers else {}),
            },
            "finalizing": False,
        }
        return wire.encode(request)

    def step(self, count: int = 1) -> Record:
        for _ in range(count):
            self._step()
        return self.last

    def run_until_still(self, limit: int = 20) -> Record:
        """Step until a step changes nothing (same response bytes, same labels)."""
        for _ in range(limit):
            before = self.history[-1].response if self.history else None
            labels_before = self._label_snapshot()
            record = self._step()
            if record.response == before and self._label_snapshot() == labels_before:
                return record
        raise AssertionError(f"not still after {limit} steps: {self.reflectors()}")

    def _label_snapshot(self) -> dict[str, tuple[tuple[str, str], ...]]:
        return {
            name: tuple(sorted(node["metadata"].get("labels", {}).items()))
            + tuple(sorted(node["metadata"].get("annotations", {}).items()))
            for name, node in self.node_map.items()
        }

    def _step(self) -> Record:
        before = self._rr_view()
        self._fill_node_statuses()
        request_body = self.topology_request()
        request = wire.decode(request_body, wire.TopologySyncRequest)
        decision = controllers.decide_topology(request, self.environ, self.now)
        response = controllers.render_topology(decision)
        body = wire.encode(response)
        answer = wire.decode(body, dict[str, Any])
        self._apply_children(answer["children"])
        status = dict(answer["status"])
        status["observedGeneration"] = self.generation  # Metacontroller adds it
        self.status = status
        ids_before = self.cluster_ids()
        self._decorate_nodes()
        restarted = {
            name
            for name, cid in self.cluster_ids().items()
            if ids_before.get(name) and ids_before[name] != cid
        }
        labelled = self.labelled()
        for name in self.node_map:
            if name in restarted:
                self.labelled_steps[name] = 0
            if name in labelled:
                self.labelled_steps[name] = self.labelled_steps.get(name, 0) + 1
            else:
                self.labelled_steps.pop(name, None)
        self.restarting = {
            name for name in self.restarting | restarted if name in labelled and not self.up(name)
        } | restarted
        after = self._rr_view()
        record = Record(
            step=len(self.history) + 1,
            now=self.now,
            request=request_body,
            response=body,
            status=status,
            children=copy.deepcopy(self.children),
            decision=decision,
            reflectors=self.reflectors(),
            labelled=self.labelled(),
            peers_of=after.peers_of,
        )
        self.history.append(record)
        if self.check:
            self.check_invariants(before, after, record)
        self.now += self.tick
        return record

    def _apply_children(self, children: Iterable[Json]) -> None:
        """Metacontroller: the answer's children are the new set, by name (the rest deleted);
        status subresources (CalicoNodeStatus, filled in by Calico) survive an update."""
        fresh: dict[str, dict[str, Json]] = {key: {} for key in self.children}
        for child in children:
            key = f"{child['kind']}.{child['apiVersion']}"
            assert key in fresh, f"child kind {key} is not a child resource of the controller"
            name = child["metadata"]["name"]
            assert name not in fresh[key], f"two children named {name}"
            applied = copy.deepcopy(child)
            old = self.children[key].get(name)
            meta = applied["metadata"]
            meta["uid"] = (old or {}).get("metadata", {}).get("uid", f"uid-{key}-{name}")
            meta["resourceVersion"] = str(1000 + len(self.history))
            meta["ownerReferences"] = [
                {
                    "apiVersion": wire.TOPOLOGY_API,
                    "kind": "RouteReflectorTopology",
                    "name": self.name,
                    "uid": "11111111-2222-4333-8444-555555555555",
                    "controller": True,
                }
            ]
            if old is not None and "status" in old:
                applied["status"] = old["status"]
            fresh[key][name] = applied
        self.children = fresh

    def finalize_step(self) -> wire.TopologyFinalizeResponse:
        """One round of deleting the topology: its finalize hook, then every node's sync."""
        self.now += self.tick
        request = wire.decode(self.topology_request(), wire.TopologySyncRequest)
        response = controllers.topology_finalize(request, self.environ, self.now)
        answer = wire.decode(wire.encode(response), dict[str, Any])
        self._apply_children(answer["children"])
        self.status = dict(answer["status"])
        self._decorate_nodes()
        return response

    def _decorate_nodes(self) -> None:
        topology = self.topology()
        for name in sorted(self.node_map):
            node = self.node_map[name]
            body = wire.encode(
                {
                    "controller": DECORATOR,
                    "object": node,
                    "attachments": {},
                    "related": {wire.TOPOLOGY_KEY: {self.name: topology}},
                    "finalizing": False,
                }
            )
            answer = wire.decode(
                wire.encode(
                    controllers.node_sync(wire.decode(body, wire.NodeSyncRequest), self.environ)
                ),
                dict[str, Any],
            )
            assert answer["status"] is None, "the node decorator must never set a Node status"
            meta = node["metadata"]
            for kind in ("labels", "annotations"):
                target = meta.setdefault(kind, {})
                for key, value in answer[kind].items():
                    if value is None:
                        target.pop(key, None)
                    else:
                        target[key] = value

    # --- the fake calico-node ----------------------------------------------------------------

    def sessions_of(self, name: str) -> list[str]:
        """The nodes `name` has BGP sessions with under the applied BGPPeers (live nodes)."""
        nodes = {n: node for n, node in self.node_map.items() if is_live(node)}
        me = nodes.get(name)
        if me is None:
            return []
        mine = me["metadata"].get("labels", {})
        found: set[str] = set()
        for peer in self.bgp_peers():
            spec = peer["spec"]
            left = parse_selector(spec.get("nodeSelector", ""))
            right = parse_selector(spec["peerSelector"])
            for side, other in ((left, right), (right, left)):
                if side.matches(mine):
                    found.update(
                        n for n, node in nodes.items() if other.matches(node["metadata"]["labels"])
                    )
        found.discard(name)
        return sorted(found)

    def paths(self) -> PathReport:
        """Paths per remote prefix every node holds with the current labels and BGPPeers."""
        return count_paths(nodes_from_objects(self.node_map.values()), self.bgp_peers())

    def cluster_ids(self) -> dict[str, str]:
        """Node → the cluster-ID annotation it carries (nodes carrying one)."""
        found = {}
        for name, node in self.node_map.items():
            cid = (node["metadata"].get("annotations") or {}).get(CLUSTER_ID_ANNOTATION)
            if cid:
                found[name] = cid
        return found

    def up(self, name: str) -> bool:
        """The fake calico-node's sessions on `name` are Established."""
        return (
            self.establish_after is not None
            and self.labelled_steps.get(name, 0) >= self.establish_after
        )

    def _fill_node_statuses(self) -> None:
        for child in self.children.get(NODESTATUS_KEY, {}).values():
            name = child["spec"]["node"]
            node = self.node_map.get(name)
            if node is None or not is_live(node):
                continue  # calico-node is not running there: the status goes stale
            if name in self.frozen and "status" in child:
                continue  # its calico-node stopped reporting: the last report stays
            up = self.up(name)
            peers = [
                {
                    "peerIP": self.node_map[p]["status"]["addresses"][0]["address"],
                    "type": "NodePeer",
                    "state": "Established" if up else "Connect",
                    "since": stamp(self.now),
                }
                for p in self.sessions_of(name)
            ]
            established = sum(1 for p in peers if p["state"] == "Established")
            child["status"] = {
                **({} if self.undated else {"lastUpdated": stamp(self.now)}),
                "agent": {"birdV4": {"state": "Ready", "version": "v0.3.3"}},
                "bgp": {
                    "numberEstablishedV4": established,
                    "numberEstablishedV6": 0,
                    "numberNotEstablishedV4": len(peers) - established,
                    "numberNotEstablishedV6": 0,
                    "peersV4": peers,
                },
            }

    # --- invariants --------------------------------------------------------------------------

    @dataclass(frozen=True)
    class View:
        rrs: frozenset[str]  # live nodes carrying the RR label
        peers_of: dict[str, frozenset[str]]  # live client → live RRs it peers with
        serving: dict[str, frozenset[str]]  # zone → live RRs serving it (by status)

    def _rr_view(self) -> Scenario.View:
        labelled = self.labelled()
        live = {n for n, node in self.node_map.items() if is_live(node)}
        rrs = frozenset(labelled & live)
        peers_of = {
            name: frozenset(p for p in self.sessions_of(name) if p in rrs)
            for name in sorted(live - labelled)
        }
        serving: dict[str, set[str]] = {}
        for rr in (self.status or {}).get("routeReflectors", []):
            if rr["node"] in rrs:
                serving.setdefault(rr.get("serves") or rr["zone"], set()).add(rr["node"])
        return Scenario.View(rrs, peers_of, {z: frozenset(s) for z, s in serving.items()})

    def check_invariants(self, before: View, after: View, record: Record) -> None:
        where = f"step {record.step} ({stamp(record.now)})"
        live = [node for node in self.node_map.values() if is_live(node)]
        report = verify(nodes_from_objects(live), self.bgp_peers(), mesh=False, failures=False)
        if not report.reachable:
            raise InvariantError(
                f"{where}: {report.unreachable_pairs} live node pairs have no route,"
                f" e.g. {', '.join(report.unreachable_examples)}"
            )
        for name, node in self.node_map.items():
            annotated = CLUSTER_ID_ANNOTATION in node["metadata"].get("annotations", {})
            if annotated != (name in record.labelled):
                raise InvariantError(f"{where}: {name} has the RR label xor the cluster ID")
        if after.rrs:
            lonely = sorted(n for n, rrs in after.peers_of.items() if not rrs)
            if lonely:
                raise InvariantError(f"{where}: clients without any RR session: {lonely[:10]}")
        live_names = self._live_names()
        for name, rrs in after.peers_of.items():
            old = before.peers_of.get(name)
            if old is None:
                continue
            # Losing an RR that failed is not the controller's choice; losing a live one, or
            # having a second one restart its sessions for a new cluster ID, is.
            lost = sorted(rr for rr in old - rrs if rr in live_names)
            down = sorted(set(lost) | (rrs & self.restarting))
            if len(down) > 1:
                raise InvariantError(
                    f"{where}: client {name} lost {len(down)} of its RRs at once: {down}"
                    f" (had {sorted(old)}, has {sorted(rrs)}, restarting for a new cluster ID:"
                    f" {sorted(rrs & self.restarting)})"
                )
        for zone, rrs in before.serving.items():
            still_live = {rr for rr in rrs if rr in live_names}
            if still_live and not after.serving.get(zone) and not (still_live & after.rrs):
                raise InvariantError(
                    f"{where}: zone {zone or '<none>'} lost its last healthy RR(s) {sorted(rrs)}"
                )
        if before.rrs and not after.rrs and any(rr in live_names for rr in before.rrs):
            raise InvariantError(f"{where}: the cluster lost its last healthy RR")

    def _live_names(self) -> set[str]:
        return {n for n, node in self.node_map.items() if is_live(node)}


def mesh_switch_request(converged: bool) -> bytes:
    """A topology request with `nodeToNodeMesh: DisableWhenReady` over 12 nodes in two zones;
    `converged`: after the scenario ran still (every RR Active with Established sessions)."""
    spec = {
        "zoneLabel": "topology.kubernetes.io/zone",
        "min": 2,
        "nodeToNodeMesh": "DisableWhenReady",
    }
    scenario = Scenario(spec, zoned_nodes({"a": 6, "b": 6}))
    if converged:
        scenario.run_until_still()
    return scenario.topology_request()
