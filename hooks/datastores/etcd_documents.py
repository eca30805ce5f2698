"""Calico v3 documents and this service's records in etcd, as compare-and-swap changes: no I/O.

A change is a function of a key's current entry (None: absent) that returns the new bytes, DELETE,
or None when nothing is to change; the transport re-runs it on the entry it finds after a conflict,
so a foreign writer's value is judged again, never overwritten blindly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from hooks.calico import OWNER_LABEL

__all__ = [
    "CLUSTER_ID_FIELD",
    "DELETE",
    "NODES_PREFIX",
    "OWNED_PREFIX",
    "OWNERS_PREFIX",
    "OWNER_UID_ANNOTATION",
    "PEERS_PREFIX",
    "STATUSES_PREFIX",
    "Change",
    "Delete",
    "DocumentError",
    "Entry",
    "Fresh",
    "Step",
    "claimed_by",
    "clear_steps",
    "delete_peer",
    "drop_record",
    "dump",
    "owned_document",
    "owned_record",
    "peer_owner",
    "put_owned",
    "put_record",
    "rewrite_record",
    "set_cluster_id",
]

PEERS_PREFIX: Final = "/calico/resources/v3/projectcalico.org/bgppeers/"
NODES_PREFIX: Final = "/calico/resources/v3/projectcalico.org/nodes/"
# CalicoNodeStatus, where libcalico-go's etcdv3 backend keeps every cluster-scoped v3 resource
# (`/calico/resources/v3/projectcalico.org/<plural>/<name>`, model/resource.go): one per RR asks
# calico-node (Calico >= 3.21) to report its BGP sessions into the document's status.
STATUSES_PREFIX: Final = "/calico/resources/v3/projectcalico.org/caliconodestatuses/"
CLUSTER_ID_FIELD: Final = "routeReflectorClusterID"
# Ownership of cluster IDs: `OWNED_PREFIX + owner + "/" + node` is written before this service
# sets a node's cluster ID and deleted after it clears it, so an apply cut short (etcd down, a
# crash) leaves a record the next sync of that owner finds and clears, whatever its plan.
OWNED_PREFIX: Final = "/route-reflector.dev/v1/cluster-ids/"
# One record per topology (`OWNERS_PREFIX + owner`): its name and uid, written before its first
# object and deleted by its finalizer; `unseenSince` is added while no sync shows it as live.
OWNERS_PREFIX: Final = "/route-reflector.dev/v1/owners/"
OWNER_UID_ANNOTATION: Final = "route-reflector.dev/owner-uid"
_CLUSTER_ID_BYTES: Final = b'"routeReflectorClusterID"'


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


def set_cluster_id(cluster_id: str | None) -> Change:
    """Set or clear spec.bgp.routeReflectorClusterID, leaving every other field as it is."""

    def change(current: Entry | None) -> bytes | None:
        if current is None:
            return None  # no Calico Node: we never create one
        if cluster_id is None and _CLUSTER_ID_BYTES not in current.value:
            return None  # nothing to clear; skips parsing thousands of plain nodes
        document = load_object(current)
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
        return dump(document)

    return change


def put_owned(
    kind: str, name: str, spec: Mapping[str, Any], owner: str, fresh: Fresh, uid: str = ""
) -> Change:
    """Create our `kind` document (a BGPPeer, a CalicoNodeStatus), or bring ours to `spec` and
    `uid` keeping the rest (its metadata, the status calico-node writes); a foreign one is left
    as it is."""
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
            return dump(
                {
                    "kind": kind,
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
            and document.get("kind") == kind
            and document.get("apiVersion") == "projectcalico.org/v3"
            and document["metadata"].get("name") == name
            and (not uid or document["metadata"].get("annotations") == annotations)
        ):
            return None
        updated = dict(document)
        updated["kind"] = kind
        updated["apiVersion"] = "projectcalico.org/v3"
        updated["metadata"] = {**document["metadata"], "name": name}
        if uid:
            updated["metadata"]["annotations"] = annotations
        updated["spec"] = wanted_spec
        return dump(updated)

    return change


def delete_peer(owner: str) -> Change:
    """Delete our document (a BGPPeer, a CalicoNodeStatus); a foreign one (or one gone already)
    is left as it is."""

    def change(current: Entry | None) -> Delete | None:
        if current is None or owned_document(current, owner) is None:
            return None
        return DELETE

    return change


def owned_document(entry: Entry, owner: str) -> dict[str, Any] | None:
    """The parsed document if it carries our owner label, else None (foreign or unreadable)."""
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


def claimed_by(entry: Entry, owner: str) -> bool:
    """Whether `entry` may be `owner`'s: it carries its owner label, or it cannot be read as a
    document at all (nothing shows it is someone else's: its reader reports it)."""
    try:
        document = json.loads(entry.value)
    except ValueError:
        return True
    return not isinstance(document, dict) or owned_document(entry, owner) is not None


def peer_owner(entry: Entry) -> tuple[str, str] | None:
    """(owner label, owner uid or "") of a document this service wrote, None for any other."""
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


def owned_record(cluster_id: str, uid: str) -> bytes:
    return dump(
        {CLUSTER_ID_FIELD: cluster_id, "ownerUID": uid} if uid else {CLUSTER_ID_FIELD: cluster_id}
    )


def put_record(wanted: bytes) -> Change:
    """Write a record of ours (an owner record, a cluster-ID ownership record) as `wanted`."""

    def change(current: Entry | None) -> bytes | None:
        return None if current is not None and current.value == wanted else wanted

    return change


def drop_record(expected: bytes | None = None) -> Change:
    """Delete a record (only while it still reads `expected`, when given)."""

    def change(current: Entry | None) -> Delete | None:
        if current is None or (expected is not None and current.value != expected):
            return None
        return DELETE

    return change


def rewrite_record(expected: bytes | None, wanted: Mapping[str, Any]) -> Change:
    """Write an owner record as `wanted`, only while it still reads `expected` (None: absent)."""
    value = dump(wanted)

    def change(current: Entry | None) -> bytes | None:
        present = current.value if current is not None else None
        return value if present == expected and present != value else None

    return change


def clear_steps(
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
        return [Step(record_prefix + node, drop_record(), (), sweeps)]
    return []


def load_object(entry: Entry) -> dict[str, Any]:
    try:
        document = json.loads(entry.value)
    except ValueError as error:
        raise DocumentError(
            f"{entry.key}: value is not JSON ({error}); refusing to edit it"
        ) from None
    if not isinstance(document, dict):
        raise DocumentError(f"{entry.key}: value is not a JSON object; refusing to edit it")
    return document


def dump(document: Mapping[str, Any]) -> bytes:
    # Compact and in the original key order, as Calico's Go client writes it.
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
