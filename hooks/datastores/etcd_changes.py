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
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from hooks.calico import OWNER_LABEL, label_value
from hooks.controllers import TopologyDecision
from hooks.transitions import parse_stamp
from hooks.wire import BadRequest

__all__ = [
    "CLUSTER_ID_FIELD",
    "DELETE",
    "NODES_PREFIX",
    "OWNED_PREFIX",
    "OWNERS_PREFIX",
    "OWNER_UID_ANNOTATION",
    "PEERS_PREFIX",
    "SWEEP_GRACE",
    "Change",
    "Changes",
    "Delete",
    "DesiredState",
    "DocumentError",
    "Entry",
    "Fresh",
    "Liveness",
    "Orphan",
    "Step",
    "desired_state",
    "owned_document",
    "plan_changes",
]

PEERS_PREFIX: Final = "/calico/resources/v3/projectcalico.org/bgppeers/"
NODES_PREFIX: Final = "/calico/resources/v3/projectcalico.org/nodes/"
CLUSTER_ID_FIELD: Final = "routeReflectorClusterID"
# Ownership of cluster IDs: `OWNED_PREFIX + owner + "/" + node` is written before this service
# sets a node's cluster ID and deleted after it clears it, so an apply cut short (etcd down, a
# crash) leaves a record the next sync of that owner finds and clears, whatever its plan.
OWNED_PREFIX: Final = "/route-reflector.dev/v1/cluster-ids/"
# One record per topology (`OWNERS_PREFIX + owner`): its name and uid, written before its first
# object and deleted by its finalizer; `unseenSince` is added while no sync shows it as live.
OWNERS_PREFIX: Final = "/route-reflector.dev/v1/owners/"
OWNER_UID_ANNOTATION: Final = "route-reflector.dev/owner-uid"
# How long an owner must stay unseen before its objects are swept: ten of Metacontroller's
# one-minute resyncs, so a topology created while another's request was in flight is never taken.
SWEEP_GRACE: Final = timedelta(minutes=10)
_CLUSTER_ID_BYTES: Final = b'"routeReflectorClusterID"'

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_UID = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]{0,62}[A-Za-z0-9])?$")


class DocumentError(Exception):
    """A document we must edit cannot be read as one; nothing is written."""


@dataclass(frozen=True)
class Entry:
    """One etcd key as read: its value and the revision it was last changed at."""

    key: str
    value: bytes
    mod_revision: int


class Delete:
    """Marker: the change is to delete the key."""


DELETE: Final = Delete()
# A change maps the key's current entry (None: absent) to new bytes, DELETE, or None (no-op).
Change = Callable[[Entry | None], bytes | Delete | None]


@dataclass(frozen=True)
class Fresh:
    """What a document created now carries: a new uid (called once per document) and the time."""

    new_uid: Callable[[], str]
    created: str


@dataclass(frozen=True)
class Step:
    """Change `key` by compare-and-swap; `also`, (key, bytes or DELETE) pairs, go in the same
    transaction."""

    key: str
    change: Change
    also: tuple[tuple[str, bytes | Delete], ...] = ()
    # The owner being swept: once its owner record could not be deleted (the owner was seen
    # again), the rest of its sweep is skipped.
    sweeps: str = ""


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
    """Objects of an owner no sync shows as live: reported, and swept once `SWEEP_GRACE` passed."""

    owner: str
    uid: str
    peers: int
    cluster_ids: int
    unseen_since: str
    swept: bool


@dataclass(frozen=True)
class DesiredState:
    """What one RouteReflectorTopology wants in etcd.

    `peers`: each `{"name": str, "spec": {...}}`, the spec as a Calico v3 BGPPeer spec.
    `cluster_ids`: node name -> cluster ID for every node whose ID we manage:
    a string sets it, None clears it.
    """

    owner: str
    peers: tuple[Mapping[str, Any], ...]
    cluster_ids: Mapping[str, str | None]
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
        names: set[str] = set()
        for index, peer in enumerate(self.peers):
            name = peer.get("name")
            if not isinstance(name, str) or not _is_object_name(name):
                raise ValueError(f"peers[{index}].name: {name!r} is not a valid object name")
            if name in names:
                raise ValueError(f"peers[{index}].name: {name!r} appears twice")
            names.add(name)
            if not isinstance(peer.get("spec"), Mapping):
                raise ValueError(f"peers[{index}].spec: must be an object")
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


def desired_state(decision: TopologyDecision) -> DesiredState:
    """Every planned RR gets its cluster ID; an RR of the previous plan that left, or a node still
    carrying the RR label (a lost status), is cleared."""
    plan, settings = decision.plan, decision.settings
    if plan is None or settings is None:
        raise ValueError("a decision without a plan has nothing to apply")
    peers = tuple(
        {"name": peer["metadata"]["name"], "spec": peer["spec"]} for peer in decision.bgp_peers
    )
    if not _UID.match(decision.owner_uid):
        raise BadRequest(
            "etcd objects are written only for a topology Metacontroller shows: it must carry"
            " its uid",
            "parent.metadata.uid",
        )
    cluster_ids: dict[str, str | None] = {rr.node: None for rr in decision.previous.routeReflectors}
    cluster_ids.update({rr.node: rr.cluster_id for rr in plan.reflectors})
    live = decision.live_topologies
    return DesiredState(
        owner=label_value(decision.owner),
        peers=peers,
        cluster_ids=cluster_ids,
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


@dataclass
class _Holdings:
    """What one other owner has in etcd."""

    peers: list[str] = field(default_factory=list)
    uids: set[str] = field(default_factory=set)
    record: dict[str, Any] | None = None
    record_entry: Entry | None = None


def plan_changes(
    desired: DesiredState,
    peers: Mapping[str, Entry],
    nodes: Mapping[str, Entry],
    owned: Mapping[str, Entry],
    fresh: Fresh,
    others: Mapping[str, Mapping[str, Entry]] | None = None,
    owners: Mapping[str, Entry] | None = None,
) -> Changes:
    """The steps that take etcd from the entries read to `desired`.

    `peers`: every BGPPeer; `nodes`: the Calico Nodes named by `desired` or by an ownership record;
    `owned`: this owner's ownership records, by node; `others`: the other owners' records, by owner
    then node; `owners`: the owner records, by owner. Only steps that change something are
    returned; a document we cannot edit raises DocumentError before any step is returned."""
    owner = desired.owner
    owned_prefix = OWNED_PREFIX + owner + "/"
    wanted = {str(peer["name"]): peer["spec"] for peer in desired.peers}
    conflicts = {
        name for name in wanted if name in peers and owned_document(peers[name], owner) is None
    }
    to_set = {node: cid for node, cid in desired.cluster_ids.items() if cid is not None}
    to_clear = sorted(
        {node for node, cid in desired.cluster_ids.items() if cid is None}
        | (set(owned) - set(to_set))
    )
    missing = {node for node in to_set if node not in nodes}
    others, owners = others or {}, owners or {}
    snapshot = {
        **{PEERS_PREFIX + n: e for n, e in peers.items()},
        **{NODES_PREFIX + n: e for n, e in nodes.items()},
        **{owned_prefix + n: e for n, e in owned.items()},
        **{e.key: e for records in others.values() for e in records.values()},
        **{OWNERS_PREFIX + n: e for n, e in owners.items()},
    }
    steps: list[Step] = []
    if desired.liveness is not None:
        # The owner record comes first: no object is ever written for an owner without one.
        record = _dump({"name": desired.name, "uid": desired.uid})
        steps.append(Step(OWNERS_PREFIX + owner, _put_record(record)))
    # Make before break: new reflectors, then their peerings, then drop old peerings, then old
    # reflectors. A node's ownership record is written in the transaction that sets its cluster
    # ID and deleted in the one that clears it; alone only when the node itself needs no change.
    for node, cluster_id in sorted(to_set.items()):
        if node in missing:
            continue
        record = _owned_record(cluster_id, desired.uid)
        set_id = set_cluster_id(cluster_id)
        if set_id(snapshot.get(NODES_PREFIX + node)) is None:
            steps.append(Step(owned_prefix + node, _put_record(record)))
        else:
            steps.append(Step(NODES_PREFIX + node, set_id, ((owned_prefix + node, record),)))
    for name, spec in sorted(wanted.items()):
        if name not in conflicts:
            steps.append(Step(PEERS_PREFIX + name, put_peer(name, spec, owner, fresh, desired.uid)))
    # A make that cannot happen (a foreign peer in the way, a reflector without a Calico Node)
    # holds every break: the old peerings and reflectors may be all that routes.
    held = bool(conflicts or missing)
    if not held:
        for name, entry in sorted(peers.items()):
            if name not in wanted and owned_document(entry, owner) is not None:
                steps.append(Step(PEERS_PREFIX + name, delete_peer(owner)))
        for node in to_clear:
            steps += _clear_steps(node, owned_prefix, nodes.get(node), owned.get(node))
    orphans: tuple[Orphan, ...] = ()
    if desired.liveness is not None:
        holdings = _other_owners(owner, peers, others, owners)
        keep = set(to_set) | set(owned)
        sweep, orphans = _sweep(holdings, desired.liveness, held, keep, nodes, others)
        steps += sweep
    return Changes(
        steps=tuple(step for step in steps if step.change(snapshot.get(step.key)) is not None),
        wanted=frozenset(wanted),
        to_set=frozenset(to_set),
        conflicts=frozenset(conflicts),
        missing=frozenset(missing),
        foreign=sum(1 for entry in peers.values() if _peer_owner(entry) is None),
        orphans=orphans,
        snapshot=snapshot,
    )


def set_cluster_id(cluster_id: str | None) -> Change:
    """Set or clear spec.bgp.routeReflectorClusterID, leaving every other field as it is."""

    def change(current: Entry | None) -> bytes | None:
        if current is None:
            return None  # no Calico Node: we never create one
        if cluster_id is None and _CLUSTER_ID_BYTES not in current.value:
            return None  # nothing to clear; skips parsing thousands of plain nodes
        document = _load_object(current)
        spec = document.get("spec")
        if spec is None:
            spec = document["spec"] = {}
        bgp = spec.get("bgp") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(bgp, (dict, type(None))):
            raise DocumentError(f"{current.key}: spec.bgp is not an object; refusing to edit it")
        present = (bgp or {}).get(CLUSTER_ID_FIELD) or None
        if present == cluster_id:
            return None
        if cluster_id is None:
            assert bgp is not None
            del bgp[CLUSTER_ID_FIELD]
        else:
            spec.setdefault("bgp", {})[CLUSTER_ID_FIELD] = cluster_id
        return _dump(document)

    return change


def put_peer(name: str, spec: Mapping[str, Any], owner: str, fresh: Fresh, uid: str = "") -> Change:
    """Create our BGPPeer, or bring ours to `spec` and `uid` keeping the rest of its metadata;
    a foreign one is left as it is."""
    wanted_spec = json.loads(json.dumps(spec))

    def change(current: Entry | None) -> bytes | None:
        if current is None:
            metadata: dict[str, Any] = {
                "name": name,
                "uid": fresh.new_uid(),
                "creationTimestamp": fresh.created,
                "labels": {OWNER_LABEL: owner},
            }
            if uid:
                metadata["annotations"] = {OWNER_UID_ANNOTATION: uid}
            return _dump(
                {
                    "kind": "BGPPeer",
                    "apiVersion": "projectcalico.org/v3",
                    "metadata": metadata,
                    "spec": wanted_spec,
                }
            )
        document = owned_document(current, owner)
        if document is None:
            return None  # foreign: never overwritten
        annotations = document["metadata"].get("annotations")
        annotations = dict(annotations) if isinstance(annotations, dict) else {}
        if uid:
            annotations[OWNER_UID_ANNOTATION] = uid
        if (
            document.get("spec") == wanted_spec
            and document.get("kind") == "BGPPeer"
            and document.get("apiVersion") == "projectcalico.org/v3"
            and document["metadata"].get("name") == name
            and (not uid or document["metadata"].get("annotations") == annotations)
        ):
            return None
        updated = dict(document)
        updated["kind"] = "BGPPeer"
        updated["apiVersion"] = "projectcalico.org/v3"
        updated["metadata"] = {**document["metadata"], "name": name}
        if uid:
            updated["metadata"]["annotations"] = annotations
        updated["spec"] = wanted_spec
        return _dump(updated)

    return change


def delete_peer(owner: str) -> Change:
    """Delete our BGPPeer; a foreign one (or one gone already) is left as it is."""

    def change(current: Entry | None) -> Delete | None:
        if current is None or owned_document(current, owner) is None:
            return None
        return DELETE

    return change


def owned_document(entry: Entry, owner: str) -> dict[str, Any] | None:
    """The parsed BGPPeer if it carries our owner label, else None (foreign or unreadable)."""
    try:
        document = json.loads(entry.value)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    metadata = document.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    if isinstance(labels, dict) and labels.get(OWNER_LABEL) == owner:
        return document
    return None


def _owned_record(cluster_id: str, uid: str) -> bytes:
    return _dump(
        {CLUSTER_ID_FIELD: cluster_id, "ownerUID": uid} if uid else {CLUSTER_ID_FIELD: cluster_id}
    )


def _put_record(wanted: bytes) -> Change:
    """Write a record of ours (an owner record, a cluster-ID ownership record) as `wanted`."""

    def change(current: Entry | None) -> bytes | None:
        return None if current is not None and current.value == wanted else wanted

    return change


def _drop_record(expected: bytes | None = None) -> Change:
    """Delete a record (only while it still reads `expected`, when given)."""

    def change(current: Entry | None) -> Delete | None:
        if current is None or (expected is not None and current.value != expected):
            return None
        return DELETE

    return change


def _clear_steps(
    node: str, record_prefix: str, entry: Entry | None, record: Entry | None, sweeps: str = ""
) -> list[Step]:
    """Clear the cluster ID an owner set on `node` and drop its record, in one transaction."""
    clear = set_cluster_id(None)
    if entry is not None and clear(entry) is not None:
        unmark: tuple[tuple[str, bytes | Delete], ...] = (
            ((record_prefix + node, DELETE),) if record is not None else ()
        )
        return [Step(NODES_PREFIX + node, clear, unmark, sweeps)]
    if record is not None:
        return [Step(record_prefix + node, _drop_record(), (), sweeps)]
    return []


def _peer_owner(entry: Entry) -> tuple[str, str] | None:
    """(owner label, owner uid or "") of a BGPPeer this service wrote, None for any other."""
    try:
        document = json.loads(entry.value)
    except ValueError:
        return None
    metadata = document.get("metadata") if isinstance(document, dict) else None
    if not isinstance(metadata, dict):
        return None
    labels, annotations = metadata.get("labels"), metadata.get("annotations")
    label = labels.get(OWNER_LABEL) if isinstance(labels, dict) else None
    if not isinstance(label, str):
        return None
    uid = annotations.get(OWNER_UID_ANNOTATION) if isinstance(annotations, dict) else None
    return label, uid if isinstance(uid, str) else ""


def _other_owners(
    owner: str,
    peers: Mapping[str, Entry],
    others: Mapping[str, Mapping[str, Entry]],
    owners: Mapping[str, Entry],
) -> dict[str, _Holdings]:
    """Every owner but `owner` with a BGPPeer, a cluster-ID record or an owner record in etcd."""
    found: dict[str, _Holdings] = {}
    for name, entry in sorted(peers.items()):
        written = _peer_owner(entry)
        if written is not None and written[0] != owner:
            held = found.setdefault(written[0], _Holdings())
            held.peers.append(name)
            held.uids.add(written[1])
    for label in others:
        if label != owner:
            found.setdefault(label, _Holdings())
    for label, entry in owners.items():
        if label == owner:
            continue
        held = found.setdefault(label, _Holdings())
        held.record_entry = entry
        try:
            record = json.loads(entry.value)
        except ValueError:
            record = None
        if isinstance(record, dict):
            held.record = record
            held.uids.add(str(record.get("uid", "")))
    return dict(sorted(found.items()))


def _sweep(
    holdings: Mapping[str, _Holdings],
    liveness: Liveness,
    held: bool,
    keep: set[str],
    nodes: Mapping[str, Entry],
    others: Mapping[str, Mapping[str, Entry]],
) -> tuple[list[Step], tuple[Orphan, ...]]:
    """Mark owners no sync shows as live, and sweep those unseen for SWEEP_GRACE; unmark any seen
    again. A cluster ID is cleared only on a node no live owner holds a record for; nothing is
    swept while this sync's own make is held."""
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
                steps.append(Step(OWNERS_PREFIX + label, _rewrite(h.record_entry.value, seen)))
            continue
        uid = str(record.get("uid") or min(h.uids - {""}, default=""))
        marked = parse_stamp(since) if isinstance(since, str) else None
        swept = marked is not None and now - marked >= SWEEP_GRACE and not held
        stamp = str(since) if marked is not None else _stamp(now)
        records = others.get(label, {})
        orphans.append(Orphan(label, uid, len(h.peers), len(records), stamp, swept))
        if marked is None:
            unseen = {"name": record.get("name", label), "uid": uid, "unseenSince": stamp}
            expected = h.record_entry.value if h.record_entry is not None else None
            steps.append(Step(OWNERS_PREFIX + label, _rewrite(expected, unseen)))
        elif swept and h.record_entry is not None:
            steps += _sweep_steps(label, h, h.record_entry, records, nodes, keep)
    return steps, tuple(orphans)


def _is_live(label: str, holdings: _Holdings, liveness: Liveness) -> bool:
    """Any uid the owner recorded is live; with none recorded, its label names a live topology."""
    uids = holdings.uids - {""}
    return bool(uids & liveness.uids) or (not uids and label in liveness.owners)


def _sweep_steps(
    label: str,
    holdings: _Holdings,
    record: Entry,
    records: Mapping[str, Entry],
    nodes: Mapping[str, Entry],
    keep: set[str],
) -> list[Step]:
    """The owner record first (only while it still reads as unseen), then its peers, then its
    cluster IDs (a node some live owner holds keeps its ID; only the record goes)."""
    steps = [Step(OWNERS_PREFIX + label, _drop_record(record.value), (), label)]
    for name in holdings.peers:
        steps.append(Step(PEERS_PREFIX + name, delete_peer(label), (), label))
    prefix = OWNED_PREFIX + label + "/"
    for node, entry in sorted(records.items()):
        if node in keep:
            steps.append(Step(entry.key, _drop_record(), (), label))
        else:
            steps += _clear_steps(node, prefix, nodes.get(node), entry, label)
    return steps


def _rewrite(expected: bytes | None, wanted: Mapping[str, Any]) -> Change:
    """Write an owner record as `wanted`, only while it still reads `expected` (None: absent)."""
    value = _dump(wanted)

    def change(current: Entry | None) -> bytes | None:
        present = current.value if current is not None else None
        return value if present == expected and present != value else None

    return change


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load_object(entry: Entry) -> dict[str, Any]:
    try:
        document = json.loads(entry.value)
    except ValueError as error:
        raise DocumentError(
            f"{entry.key}: value is not JSON ({error}); refusing to edit it"
        ) from None
    if not isinstance(document, dict):
        raise DocumentError(f"{entry.key}: value is not a JSON object; refusing to edit it")
    return document


def _dump(document: Mapping[str, Any]) -> bytes:
    # Compact and in the original key order, as Calico's Go client writes it.
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _is_object_name(name: str) -> bool:
    return len(name) <= 253 and _DNS_SUBDOMAIN.match(name) is not None
