"""The CalicoNodeStatus children (Calico >= 3.21): one rendered per RR, and the BGP session state
they report read back as `Sessions` for the transitions."""

from __future__ import annotations

from typing import Any

import msgspec

from hooks.calico import name_part
from hooks.model import Plan
from hooks.transitions import UPDATE_PERIOD_SECONDS, Sessions
from hooks.wire import BGPPEER_API, NODESTATUS_KEY, TopologySyncRequest


class _BGPStatus(msgspec.Struct):
    numberEstablishedV4: int = 0
    numberEstablishedV6: int = 0
    numberNotEstablishedV4: int = 0
    numberNotEstablishedV6: int = 0
    peersV4: list[dict[str, Any]] | None = None
    peersV6: list[dict[str, Any]] | None = None

    def established(self) -> bool:
        peers = (self.peersV4 or []) + (self.peersV6 or [])
        if peers:
            # Only sessions from BGPPeers count: the mesh comes and goes with RR changes.
            ours = [p for p in peers if p.get("type") != "NodeMesh"]
            return bool(ours) and all(p.get("state") == "Established" for p in ours)
        up = self.numberEstablishedV4 + self.numberEstablishedV6
        down = self.numberNotEstablishedV4 + self.numberNotEstablishedV6
        return up > 0 and down == 0


class _NodeStatusStatus(msgspec.Struct):
    bgp: _BGPStatus | None = None
    lastUpdated: Any = None  # a stamp; anything else counts as undated


class _NodeStatusSpec(msgspec.Struct):
    node: str = ""


class _NodeStatusChild(msgspec.Struct):
    spec: _NodeStatusSpec = msgspec.field(default_factory=_NodeStatusSpec)
    status: _NodeStatusStatus | None = None


def read_sessions(request: TopologySyncRequest) -> Sessions:
    """Which RRs have Established BGP sessions, from the CalicoNodeStatus children."""
    observed = False
    established: set[str] = set()
    updated: dict[str, str] = {}
    for raw in (request.children or {}).get(NODESTATUS_KEY, {}).values():
        try:
            child = msgspec.json.decode(raw, type=_NodeStatusChild)
        except msgspec.ValidationError:
            continue
        if child.status is None or child.status.bgp is None:
            continue
        observed = True
        if child.status.bgp.established():
            established.add(child.spec.node)
            stamped = child.status.lastUpdated
            updated[child.spec.node] = stamped if isinstance(stamped, str) else ""
    return Sessions(observed, frozenset(established), updated)


def render_node_statuses(plan: Plan, owner: str) -> list[dict[str, Any]]:
    """A CalicoNodeStatus per RR (Calico >= 3.21 fills in its BGP sessions), sorted by name."""
    return [
        {
            "apiVersion": BGPPEER_API,
            "kind": "CalicoNodeStatus",
            "metadata": {"name": f"{name_part(owner)}-rr-{name_part(rr.node)}"},
            "spec": {
                "node": rr.node,
                "classes": ["BGP"],
                "updatePeriodSeconds": UPDATE_PERIOD_SECONDS,
            },
        }
        for rr in sorted(plan.reflectors, key=lambda r: name_part(r.node))
    ]
