"""The CalicoNodeStatus requests (Calico >= 3.21): one rendered per RR (children in KDD mode,
documents in etcd in etcdv3 mode), and the BGP session state they report read back as `Sessions`
for the transitions, by one parser whichever datastore they came from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from hooks.calico import name_part
from hooks.model import Condition, Plan
from hooks.transitions import UPDATE_PERIOD_SECONDS, Sessions
from hooks.wire import BGPPEER_API


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


def read_sessions(reports: Mapping[str, Any]) -> Sessions:
    """Which RRs have Established BGP sessions, from CalicoNodeStatus documents by name (the
    children's raw JSON, or the bytes read from etcd). A document that does not decode as one is
    named in `unreadable` and trusted for nothing; it still shows session state exists."""
    observed = False
    established: set[str] = set()
    updated: dict[str, str] = {}
    unreadable: list[str] = []
    for name, raw in sorted(reports.items()):
        try:
            child = msgspec.json.decode(raw, type=_NodeStatusChild)
        except msgspec.DecodeError:
            unreadable.append(name)
            continue
        if child.status is None or child.status.bgp is None:
            continue
        observed = True
        if child.status.bgp.established():
            established.add(child.spec.node)
            stamped = child.status.lastUpdated
            updated[child.spec.node] = stamped if isinstance(stamped, str) else ""
    return Sessions(
        observed or bool(unreadable), frozenset(established), updated, tuple(unreadable)
    )


def unproven(failure: str) -> Sessions:
    """The reports could not be read: session state is taken to exist and nothing is proven, so
    no RR leaves Pending and the mesh stays until a read succeeds."""
    return Sessions(True, frozenset(), failure=failure)


def session_problem(sessions: Sessions, where: str) -> Condition | None:
    """The `SessionState` condition when reports could not be read (`where`: their datastore),
    else None."""
    if sessions.failure:
        return Condition(
            "SessionState",
            "Unknown",
            "ReadFailed",
            f"CalicoNodeStatus reports could not be read from {where} ({sessions.failure}):"
            " no RR counts as Established until they can",
        )
    if sessions.unreadable:
        shown = ", ".join(sessions.unreadable[:5]) + (
            f" and {len(sessions.unreadable) - 5} more" if len(sessions.unreadable) > 5 else ""
        )
        return Condition(
            "SessionState",
            "False",
            "ReportUnreadable",
            f"CalicoNodeStatus report(s) in {where} are not CalicoNodeStatus documents and are"
            f" not trusted: {shown}",
        )
    return None


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
