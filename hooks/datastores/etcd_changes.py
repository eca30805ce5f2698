"""The Calico documents a plan changes in etcd, computed from a snapshot of the keys: no I/O.

`desired_state` turns a topology decision into what one owner wants; `plan_changes` turns that and
the entries read from etcd into ordered compare-and-swap steps. Each step's change is a function of
the key's current entry, so the transport (`etcd.py`) can re-run it on the entry it finds after a
conflict. New documents get their uid and creation time from `Fresh`, given by the caller.

Every object written carries the uid of the topology it was written for, and each topology has an
owner record. The objects of an owner whose uid no sync shows as a live topology (neither the
parent nor a related topology) for `SWEEP_GRACE` are removed by the next sync that sees them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hooks.calico import label_value
from hooks.datastores.etcd_documents import (
    NODES_PREFIX,
    OWNED_PREFIX,
    OWNERS_PREFIX,
    PEERS_PREFIX,
    STATUSES_PREFIX,
    Entry,
    Fresh,
    Step,
    clear_steps,
    delete_peer,
    dump,
    owned_document,
    owned_record,
    peer_owner,
    put_owned,
    put_record,
    set_cluster_id,
)
from hooks.datastores.etcd_mesh import CONFIG_KEY, MESH_RECORD_KEY
from hooks.datastores.etcd_sweep import Liveness, MeshHeld, Orphan, other_owners, sweep
from hooks.decision import TopologyDecision
from hooks.node_status import render_node_statuses
from hooks.wire import BadRequest

__all__ = ["Changes", "DesiredState", "desired_state", "plan_changes"]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_UID = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]{0,62}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class DesiredState:
    """What one RouteReflectorTopology wants in etcd.

    `peers`: each `{"name": str, "spec": {...}}`, the spec as a Calico v3 BGPPeer spec.
    `cluster_ids`: node name -> cluster ID for every node whose ID we manage:
    a string sets it, None clears it.
    `statuses`: the CalicoNodeStatus requests, one per RR, each `{"name": str, "spec": {...}}`.
    """

    owner: str
    peers: tuple[Mapping[str, Any], ...]
    cluster_ids: Mapping[str, str | None]
    statuses: tuple[Mapping[str, Any], ...] = ()
    uid: str = ""  # the topology's metadata.uid, recorded on everything written for it
    name: str = ""  # the topology's name, in its owner record (the owner label may be hashed)
    liveness: Liveness | None = None  # None: no owner record is written and nothing is swept

    def __post_init__(self) -> None:
        if not (_LABEL_VALUE.match(self.owner) and len(self.owner) <= 63):
            raise ValueError(f"owner: {self.owner!r} is not a valid label value")
        if self.uid and not _UID.match(self.uid):
            raise ValueError(f"uid: {self.uid!r} is not a Kubernetes uid")
        if self.liveness is not None and not self.uid:
            raise ValueError("uid: required to record ownership")
        _check_documents("peers", self.peers)
        _check_documents("statuses", self.statuses)
        for node, cluster_id in self.cluster_ids.items():
            if not _is_object_name(node):
                raise ValueError(f"cluster_ids: {node!r} is not a valid node name")
            if cluster_id is not None:
                try:
                    ipaddress.IPv4Address(cluster_id)
                except ValueError:
                    raise ValueError(
                        f"cluster_ids[{node}]: {cluster_id!r} is not an IPv4 address"
                    ) from None


def _check_documents(field: str, documents: tuple[Mapping[str, Any], ...]) -> None:
    names: set[str] = set()
    for index, document in enumerate(documents):
        name = document.get("name")
        if not isinstance(name, str) or not _is_object_name(name):
            raise ValueError(f"{field}[{index}].name: {name!r} is not a valid object name")
        if name in names:
            raise ValueError(f"{field}[{index}].name: {name!r} appears twice")
        names.add(name)
        if not isinstance(document.get("spec"), Mapping):
            raise ValueError(f"{field}[{index}].spec: must be an object")


def desired_state(decision: TopologyDecision) -> DesiredState:
    """Every planned RR gets its cluster ID and a CalicoNodeStatus request; an RR of the previous
    plan that left, or a node still carrying the RR label (a lost status), is cleared."""
    plan, settings = decision.plan, decision.settings
    if plan is None or settings is None:
        raise ValueError("a decision without a plan has nothing to apply")
    peers = tuple(
        {"name": peer["metadata"]["name"], "spec": peer["spec"]} for peer in decision.bgp_peers
    )
    if not _UID.match(decision.owner_uid):
        found = "missing" if not decision.owner_uid else "not a Kubernetes uid"
        raise BadRequest(
            f"{found}: etcd objects are written only for a topology Metacontroller sends,"
            " which carries its uid",
            "parent.metadata.uid",
        )
    cluster_ids: dict[str, str | None] = {rr.node: None for rr in decision.previous.routeReflectors}
    cluster_ids.update({rr.node: rr.cluster_id for rr in plan.reflectors})
    live = decision.live_topologies
    statuses = tuple(
        {"name": status["metadata"]["name"], "spec": status["spec"]}
        for status in render_node_statuses(plan, decision.owner)
    )
    return DesiredState(
        owner=label_value(decision.owner),
        peers=peers,
        cluster_ids=cluster_ids,
        statuses=statuses,
        uid=decision.owner_uid,
        name=decision.owner,
        liveness=Liveness(
            uids=frozenset(uid for _, uid in live if uid),
            owners=frozenset(label_value(name) for name, _ in live),
            now=decision.now,
        ),
    )


@dataclass(frozen=True)
class Changes:
    """The steps of one apply, in order, and what holds them back or was found.

    `conflicts`: BGPPeer names we want that exist without our owner label (never overwritten);
    `missing`: nodes we were to give a cluster ID that have no Calico Node. While either is
    non-empty no step deletes a peer, clears a cluster ID or sweeps an orphan.
    `foreign`: BGPPeers carrying no owner label of this service; `orphans`: other owners no sync
    shows as live."""

    steps: tuple[Step, ...]
    wanted: frozenset[str]
    to_set: frozenset[str]
    conflicts: frozenset[str]
    missing: frozenset[str]
    foreign: int = 0
    orphans: tuple[Orphan, ...] = ()
    # Every entry read, by key: what each step's compare-and-swap starts from.
    snapshot: Mapping[str, Entry] = field(default_factory=dict)


def plan_changes(
    desired: DesiredState,
    peers: Mapping[str, Entry],
    nodes: Mapping[str, Entry],
    owned: Mapping[str, Entry],
    fresh: Fresh,
    others: Mapping[str, Mapping[str, Entry]] | None = None,
    owners: Mapping[str, Entry] | None = None,
    statuses: Mapping[str, Entry] | None = None,
    mesh: MeshHeld | None = None,
) -> Changes:
    """The steps that take etcd from the entries read to `desired`.

    `peers`: every BGPPeer; `nodes`: the Calico Nodes named by `desired` or by an ownership record;
    `owned`: this owner's ownership records, by node; `others`: the other owners' records, by owner
    then node; `owners`: the owner records, by owner; `statuses`: every CalicoNodeStatus; `mesh`:
    the mesh record and BGPConfiguration `default`, when an owner switched the mesh off. Only
    steps that change something are returned; a document we cannot edit raises DocumentError
    before any step is returned."""
    owner = desired.owner
    wanted = {str(peer["name"]): peer["spec"] for peer in desired.peers}
    conflicts = {
        name for name in wanted if name in peers and owned_document(peers[name], owner) is None
    }
    to_set = {node: cid for node, cid in desired.cluster_ids.items() if cid is not None}
    missing = {node for node in to_set if node not in nodes}
    others, owners, statuses = others or {}, owners or {}, statuses or {}
    snapshot = {
        **{PEERS_PREFIX + n: e for n, e in peers.items()},
        **{NODES_PREFIX + n: e for n, e in nodes.items()},
        **{OWNED_PREFIX + owner + "/" + n: e for n, e in owned.items()},
        **{e.key: e for records in others.values() for e in records.values()},
        **{OWNERS_PREFIX + n: e for n, e in owners.items()},
        **{STATUSES_PREFIX + n: e for n, e in statuses.items()},
    }
    if mesh is not None:
        snapshot[MESH_RECORD_KEY] = mesh.entry
        if mesh.config is not None:
            snapshot[CONFIG_KEY] = mesh.config
    steps = _make_steps(desired, to_set, missing, wanted, conflicts, snapshot, fresh)
    # A make that cannot happen (a foreign peer in the way, a reflector without a Calico Node)
    # holds every break: the old peerings and reflectors may be all that routes.
    held = bool(conflicts or missing)
    if not held:
        steps += _break_steps(desired, to_set, wanted, peers, nodes, owned)
    # The session reports route nothing: the ones no RR needs go whatever is held.
    reported = {str(status["name"]) for status in desired.statuses}
    steps += [
        Step(STATUSES_PREFIX + name, delete_peer(owner))
        for name, entry in sorted(statuses.items())
        if name not in reported and owned_document(entry, owner) is not None
    ]
    orphans: tuple[Orphan, ...] = ()
    if desired.liveness is not None:
        record = mesh.record if mesh is not None else None
        holdings = other_owners(owner, peers, others, owners, statuses, record)
        keep = set(to_set) | set(owned)
        swept, orphans = sweep(holdings, desired.liveness, held, keep, nodes, others, mesh)
        steps += swept
    return Changes(
        steps=tuple(step for step in steps if step.change(snapshot.get(step.key)) is not None),
        wanted=frozenset(wanted),
        to_set=frozenset(to_set),
        conflicts=frozenset(conflicts),
        missing=frozenset(missing),
        foreign=sum(1 for entry in peers.values() if peer_owner(entry) is None),
        orphans=orphans,
        snapshot=snapshot,
    )


def _make_steps(
    desired: DesiredState,
    to_set: Mapping[str, str],
    missing: set[str],
    wanted: Mapping[str, Any],
    conflicts: set[str],
    snapshot: Mapping[str, Entry],
    fresh: Fresh,
) -> list[Step]:
    """The owner record, then new reflectors, then their peerings (make before break), then the
    RRs' CalicoNodeStatus requests. A node's ownership record is written in the transaction that
    sets its cluster ID; alone only when the node needs no change."""
    owner = desired.owner
    owned_prefix = OWNED_PREFIX + owner + "/"
    steps: list[Step] = []
    if desired.liveness is not None:
        # The owner record comes first: no object is ever written for an owner without one.
        record = dump({"name": desired.name, "uid": desired.uid})
        steps.append(Step(OWNERS_PREFIX + owner, put_record(record)))
    for node, cluster_id in sorted(to_set.items()):
        if node in missing:
            continue
        record = owned_record(cluster_id, desired.uid)
        set_id = set_cluster_id(cluster_id)
        if set_id(snapshot.get(NODES_PREFIX + node)) is None:
            steps.append(Step(owned_prefix + node, put_record(record)))
        else:
            steps.append(Step(NODES_PREFIX + node, set_id, ((owned_prefix + node, record),)))
    for name, spec in sorted(wanted.items()):
        if name not in conflicts:
            put = put_owned("BGPPeer", name, spec, owner, fresh, desired.uid)
            steps.append(Step(PEERS_PREFIX + name, put))
    for status in sorted(desired.statuses, key=lambda s: str(s["name"])):
        name = str(status["name"])
        put = put_owned("CalicoNodeStatus", name, status["spec"], owner, fresh, desired.uid)
        steps.append(Step(STATUSES_PREFIX + name, put))
    return steps


def _break_steps(
    desired: DesiredState,
    to_set: Mapping[str, str],
    wanted: Mapping[str, Any],
    peers: Mapping[str, Entry],
    nodes: Mapping[str, Entry],
    owned: Mapping[str, Entry],
) -> list[Step]:
    """Old peerings, then old reflectors: a cluster ID is cleared (and its record dropped in the
    same transaction) on every node `desired` clears or this owner recorded and no longer sets."""
    owner = desired.owner
    steps = [
        Step(PEERS_PREFIX + name, delete_peer(owner))
        for name, entry in sorted(peers.items())
        if name not in wanted and owned_document(entry, owner) is not None
    ]
    to_clear = {node for node, cid in desired.cluster_ids.items() if cid is None}
    for node in sorted(to_clear | (set(owned) - set(to_set))):
        steps += clear_steps(node, OWNED_PREFIX + owner + "/", nodes.get(node), owned.get(node))
    return steps


def _is_object_name(name: str) -> bool:
    return len(name) <= 253 and _DNS_SUBDOMAIN.match(name) is not None
