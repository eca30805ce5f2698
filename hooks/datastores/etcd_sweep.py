"""Orphans in etcd: owners whose objects no sync shows as a live topology, marked then swept.

An owner is live while a uid it recorded is the parent's or a related topology's in the sync (for
objects written before uids were recorded: while its owner label names one). A sync marks an owner
it does not see (`unseenSince` in its owner record, cleared once it is seen again) and sweeps it
after `SWEEP_GRACE`, the owner record first, so an owner seen again meanwhile stops its sweep.
An owner that switched the node-to-node mesh off gets it back on first, alone: the rest of its
sweep waits for a later sync, once the mesh sessions had time to come up (make before break).

The mesh record can outlive everything else of its owner (the rest deleted by hand, or released
by its finalize while a last sync of it, still in flight, switched the mesh off again). Its owner
is then an owner like any other, holding only that record: the first sync that finds it writes
its owner record again to carry `unseenSince` (the owner record is where every owner's mark
lives, shared by every replica and kept across restarts, and what the rest of the sweep already
guards: cleared when the owner is seen again, dropped only while it still reads as unseen); after
`SWEEP_GRACE` the mesh goes back on, and that record goes on the next sync.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from hooks.calico import label_value
from hooks.datastores.etcd_documents import (
    DELETE,
    OWNED_PREFIX,
    OWNERS_PREFIX,
    PEERS_PREFIX,
    STATUSES_PREFIX,
    DocumentError,
    Entry,
    Step,
    clear_steps,
    delete_peer,
    drop_record,
    peer_owner,
    rewrite_record,
)
from hooks.datastores.etcd_mesh import CONFIG_KEY, MESH_RECORD_KEY, MeshRecord, mesh_on
from hooks.stamps import parse_stamp, stamp

__all__ = [
    "HELD_BY_OUR_MAKE",
    "SWEEP_GRACE",
    "Holdings",
    "Liveness",
    "MeshHeld",
    "Orphan",
    "other_owners",
    "sweep",
]

# How long an owner must stay unseen before its objects are swept: ten of Metacontroller's
# one-minute resyncs, so a topology created while another's request was in flight is never taken.
SWEEP_GRACE: Final = timedelta(minutes=10)
HELD_BY_OUR_MAKE: Final = "this topology's own changes are held (see its Degraded condition)"


@dataclass(frozen=True)
class Liveness:
    """The topologies Metacontroller showed this sync (the parent and every related one), and when.

    An owner is live while a uid it recorded is among `uids`, or, for objects that carry no uid
    (written before uids were recorded), while its owner label is among `owners`."""

    uids: frozenset[str]
    owners: frozenset[str]
    now: datetime


@dataclass(frozen=True)
class Orphan:
    """Objects of an owner no sync shows as live: reported, and swept once `SWEEP_GRACE` passed;
    `held`: why a sweep that is due waits ("" when none is due or it goes on)."""

    owner: str
    uid: str
    peers: int
    cluster_ids: int
    unseen_since: str
    swept: bool
    held: str = ""


@dataclass
class Holdings:
    """What one other owner has in etcd."""

    peers: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)  # its CalicoNodeStatus requests
    uids: set[str] = field(default_factory=set)
    record: dict[str, Any] | None = None
    record_entry: Entry | None = None


@dataclass(frozen=True)
class MeshHeld:
    """The mesh record (`record`, read as `entry`) and BGPConfiguration `default` (`config`, None
    when absent) as read: which owner switched the node-to-node mesh off."""

    record: MeshRecord
    entry: Entry
    config: Entry | None


def other_owners(
    owner: str,
    peers: Mapping[str, Entry],
    others: Mapping[str, Mapping[str, Entry]],
    owners: Mapping[str, Entry],
    statuses: Mapping[str, Entry] | None = None,
    mesh: MeshRecord | None = None,
) -> dict[str, Holdings]:
    """Every owner but `owner` with a BGPPeer, a CalicoNodeStatus, a cluster-ID record, an
    owner record or the mesh record in etcd."""
    found: dict[str, Holdings] = {}
    for documents, kept in ((peers, "peers"), (statuses or {}, "statuses")):
        for name, entry in sorted(documents.items()):
            written = peer_owner(entry)
            if written is not None and written[0] != owner:
                held = found.setdefault(written[0], Holdings())
                getattr(held, kept).append(name)
                held.uids.add(written[1])
    for label in others:
        if label != owner:
            found.setdefault(label, Holdings())
    if mesh is not None and mesh.owner not in ("", owner) and label_value(mesh.owner) == mesh.owner:
        found.setdefault(mesh.owner, Holdings()).uids.add(mesh.uid)
    for label, entry in owners.items():
        if label == owner:
            continue
        held = found.setdefault(label, Holdings())
        held.record_entry = entry
        try:
            record = json.loads(entry.value)
        except ValueError:
            record = None
        if isinstance(record, dict):
            held.record = record
            held.uids.add(str(record.get("uid", "")))
    return dict(sorted(found.items()))


def sweep(
    holdings: Mapping[str, Holdings],
    liveness: Liveness,
    held: bool,
    keep: set[str],
    nodes: Mapping[str, Entry],
    others: Mapping[str, Mapping[str, Entry]],
    mesh: MeshHeld | None = None,
) -> tuple[list[Step], tuple[Orphan, ...]]:
    """Mark owners no sync shows as live, and sweep those unseen for SWEEP_GRACE; unmark any seen
    again. A cluster ID is cleared only on a node no live owner holds a record for; nothing is
    swept while this sync's own make is held. An owner `mesh` says switched the mesh off gets
    it back on, and only that, in the sync that would sweep it."""
    now = liveness.now
    live = {label for label, h in holdings.items() if _is_live(label, h, liveness)}
    keep = keep | {node for label in live for node in others.get(label, {})}
    steps: list[Step] = []
    orphans: list[Orphan] = []
    for label, h in holdings.items():
        record = h.record or {}
        since = record.get("unseenSince")
        if label in live:
            if since is not None and h.record_entry is not None:
                seen = {k: v for k, v in record.items() if k != "unseenSince"}
                steps.append(
                    Step(OWNERS_PREFIX + label, rewrite_record(h.record_entry.value, seen))
                )
            continue
        uid = str(record.get("uid") or min(h.uids - {""}, default=""))
        marked = parse_stamp(since) if isinstance(since, str) else None
        due = marked is not None and now - marked >= SWEEP_GRACE
        why = HELD_BY_OUR_MAKE if due and held else ""
        due = due and not held
        try:
            restore = _mesh_steps(label, mesh) if due else []
        except DocumentError as error:  # a BGPConfiguration we cannot edit: all stays until we can
            due, restore = False, []
            why = f"the node-to-node mesh it switched off stays off: {error}"
        swept = due and not restore
        first = str(since) if marked is not None else stamp(now)
        records = others.get(label, {})
        orphans.append(Orphan(label, uid, len(h.peers), len(records), first, swept, why))
        if marked is None:
            unseen = {"name": record.get("name", label), "uid": uid, "unseenSince": first}
            expected = h.record_entry.value if h.record_entry is not None else None
            steps.append(Step(OWNERS_PREFIX + label, rewrite_record(expected, unseen)))
        elif restore:
            steps += restore
        elif swept and h.record_entry is not None:
            steps += _sweep_steps(label, h, h.record_entry, records, nodes, keep, mesh)
    return steps, tuple(orphans)


def _mesh_steps(label: str, mesh: MeshHeld | None) -> list[Step]:
    """The mesh back on (its record dropped in the same transaction) if `label` switched it off
    and it is still off; else nothing (a record of `label` left is dropped with its sweep)."""
    if mesh is None or mesh.record.owner != label:
        return []
    change = mesh_on(mesh.record)
    if change(mesh.config) is None:
        return []
    return [Step(CONFIG_KEY, change, ((MESH_RECORD_KEY, DELETE),), label)]


def _is_live(label: str, holdings: Holdings, liveness: Liveness) -> bool:
    """Any uid the owner recorded is live; with none recorded, its label names a live topology."""
    uids = holdings.uids - {""}
    return bool(uids & liveness.uids) or (not uids and label in liveness.owners)


def _sweep_steps(
    label: str,
    holdings: Holdings,
    record: Entry,
    records: Mapping[str, Entry],
    nodes: Mapping[str, Entry],
    keep: set[str],
    mesh: MeshHeld | None,
) -> list[Step]:
    """The owner record first (only while it still reads as unseen), then its mesh record if it
    left one (the mesh is on again), its peers and session requests, then its cluster IDs (a
    node some live owner holds keeps its ID; only the record goes)."""
    steps = [Step(OWNERS_PREFIX + label, drop_record(record.value), (), label)]
    if mesh is not None and mesh.record.owner == label:
        steps.append(Step(MESH_RECORD_KEY, drop_record(mesh.entry.value), (), label))
    for name in holdings.peers:
        steps.append(Step(PEERS_PREFIX + name, delete_peer(label), (), label))
    for name in holdings.statuses:
        steps.append(Step(STATUSES_PREFIX + name, delete_peer(label), (), label))
    prefix = OWNED_PREFIX + label + "/"
    for node, entry in sorted(records.items()):
        if node in keep:
            steps.append(Step(entry.key, drop_record(), (), label))
        else:
            steps += clear_steps(node, prefix, nodes.get(node), entry, label)
    return steps
