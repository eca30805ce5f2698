"""Domain types in the problem's words: nodes as observed, the plan as decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import msgspec

Topology = Literal["simple", "multi", "quorum", "hierarchy"]
Datastore = Literal["incluster", "kubernetes", "etcdv3"]


class ReflectorState(StrEnum):
    ACTIVE = "Active"
    DRAINING = "Draining"
    PENDING = "Pending"


class Taint(msgspec.Struct, frozen=True, gc=False):
    key: str
    value: str
    effect: str


class NodeInfo(msgspec.Struct, frozen=True, gc=False):
    """One Kubernetes Node, reduced to what the plan reads.

    A frozen msgspec struct rather than a dataclass: 20,000 are built per topology sync, and a
    frozen dataclass costs ten times as much to construct."""

    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    created: str
    ready: bool
    deleting: bool
    unschedulable: bool
    taints: tuple[Taint, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteReflector:
    node: str
    zone: str
    cluster_id: str
    state: ReflectorState = ReflectorState.ACTIVE
    role: str = ""  # hierarchy: "spine" or "rack"; empty elsewhere
    # The zone (hierarchy: the rack) it serves when that is not its own zone; None when it is.
    # "" is a zone of its own (nodes without the zone label), so None is the only "not set".
    serves: str | None = None
    since: str = ""  # when it entered its current state (Draining, Pending), for timeouts
    # Planes and rolling cluster-ID changes: the plane it is on (1.., 0 for none) and, while
    # it waits its turn (one RR at a time, transitions._roll), the ID it will change to.
    plane: int = 0
    hub: bool = False  # the hub of its plane: every other RR of the plane peers with it
    next_cluster_id: str = ""

    def served(self) -> str:
        """The zone (hierarchy: rack) this RR serves."""
        return self.serves if self.serves is not None else self.zone


@dataclass(frozen=True, slots=True)
class Group:
    """A named set of RRs that clients peer with; `zone` is the zone whose clients it serves."""

    name: str
    zone: str
    reflectors: tuple[str, ...]
    rack: str | None = None
    retiring_since: str = ""  # set while a group that left the plan keeps its moving clients


@dataclass(frozen=True, slots=True)
class ZoneSummary:
    """One zone's counts: the selection fills all but `actual`, which the plan reads off the
    previous status."""

    name: str
    nodes: int
    ready: int
    eligible: int
    demand: int  # RRs this zone's clients need
    expected: int  # RRs planned on this zone's nodes (its own, plus spill-over it hosts)
    actual: int = 0  # nodes here carrying the RR label (and, in KDD, the cluster-ID annotation)


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class AllReflectors:
    """Every node carrying the RR label."""


@dataclass(frozen=True, slots=True)
class Reflectors:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Clients:
    """Nodes labelled with the group; a retiring group also keeps those that just left it."""

    group: str
    retiring: bool = False


PeerSet = AllReflectors | Reflectors | Clients


@dataclass(frozen=True, slots=True)
class Peering:
    """One BGPPeer: sessions between every node of `nodes` and every node of `peers`."""

    name: str
    nodes: PeerSet
    peers: PeerSet


@dataclass(frozen=True, slots=True)
class Plan:
    """What the topology sync decided: RRs, the groups clients peer with, per-zone figures."""

    topology: Topology
    reflectors: tuple[RouteReflector, ...]
    groups: tuple[Group, ...]
    zones: tuple[ZoneSummary, ...]
    peerings: tuple[Peering, ...] = ()
    problems: tuple[Condition, ...] = field(default=())
    resync_after: float | None = None
