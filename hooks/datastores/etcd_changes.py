"""The Calico documents a plan changes in etcd, computed from a snapshot of the keys: no I/O.

`desired_state` turns a topology decision into what one owner wants; `plan_changes` turns that and
the entries read from etcd into ordered compare-and-swap steps. Each step's change is a function of
the key's current entry, so the transport (`etcd.py`) can re-run it on the entry it finds after a
conflict. New documents get their uid and creation time from `Fresh`, given by the caller.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from hooks.calico import OWNER_LABEL, label_value
from hooks.controllers import TopologyDecision

__all__ = [
    "CLUSTER_ID_FIELD",
    "DELETE",
    "NODES_PREFIX",
    "OWNED_PREFIX",
    "PEERS_PREFIX",
    "Change",
    "Changes",
    "Delete",
    "DesiredState",
    "DocumentError",
    "Entry",
    "Fresh",
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
_CLUSTER_ID_BYTES: Final = b'"routeReflectorClusterID"'

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


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

    def __post_init__(self) -> None:
        if not (_LABEL_VALUE.match(self.owner) and len(self.owner) <= 63):
            raise ValueError(f"owner: {self.owner!r} is not a valid label value")
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
    cluster_ids: dict[str, str | None] = {rr.node: None for rr in decision.previous.routeReflectors}
    cluster_ids.update({rr.node: rr.cluster_id for rr in plan.reflectors})
    return DesiredState(owner=label_value(decision.owner), peers=peers, cluster_ids=cluster_ids)


@dataclass(frozen=True)
class Changes:
    """The steps of one apply, in order, and what holds them back.

    `conflicts`: BGPPeer names we want that exist without our owner label (never overwritten);
    `missing`: nodes we were to give a cluster ID that have no Calico Node. While either is
    non-empty no step deletes a peer or clears a cluster ID."""

    steps: tuple[Step, ...]
    wanted: frozenset[str]
    to_set: frozenset[str]
    conflicts: frozenset[str]
    missing: frozenset[str]


def plan_changes(
    desired: DesiredState,
    peers: Mapping[str, Entry],
    nodes: Mapping[str, Entry],
    owned: Mapping[str, Entry],
    fresh: Fresh,
) -> Changes:
    """The steps that take etcd from the entries read (BGPPeers, the Calico Nodes named by
    `desired` or by an ownership record, this owner's ownership records; each by name) to
    `desired`. Only steps that change something are returned; a document we cannot edit raises
    DocumentError before any step is returned."""
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
    snapshot = {
        **{PEERS_PREFIX + n: e for n, e in peers.items()},
        **{NODES_PREFIX + n: e for n, e in nodes.items()},
        **{owned_prefix + n: e for n, e in owned.items()},
    }
    # Make before break: new reflectors, then their peerings, then drop old peerings, then old
    # reflectors. A node's ownership record is written in the transaction that sets its cluster
    # ID and deleted in the one that clears it; alone only when the node itself needs no change.
    steps: list[Step] = []
    for node, cluster_id in sorted(to_set.items()):
        if node in missing:
            continue
        record = _owned_record(cluster_id)
        set_id = set_cluster_id(cluster_id)
        if set_id(snapshot.get(NODES_PREFIX + node)) is None:
            steps.append(Step(owned_prefix + node, _mark_owned(record)))
        else:
            steps.append(Step(NODES_PREFIX + node, set_id, ((owned_prefix + node, record),)))
    for name, spec in sorted(wanted.items()):
        if name not in conflicts:
            steps.append(Step(PEERS_PREFIX + name, put_peer(name, spec, owner, fresh)))
    # A make that cannot happen (a foreign peer in the way, a reflector without a Calico Node)
    # holds every break: the old peerings and reflectors may be all that routes.
    if not conflicts and not missing:
        for name, entry in sorted(peers.items()):
            if name not in wanted and owned_document(entry, owner) is not None:
                steps.append(Step(PEERS_PREFIX + name, delete_peer(owner)))
        for node in to_clear:
            clear = set_cluster_id(None)
            if node in nodes and clear(snapshot[NODES_PREFIX + node]) is not None:
                unmark: tuple[tuple[str, bytes | Delete], ...] = (
                    ((owned_prefix + node, DELETE),) if node in owned else ()
                )
                steps.append(Step(NODES_PREFIX + node, clear, unmark))
            elif node in owned:
                steps.append(Step(owned_prefix + node, _unmark_owned()))
    return Changes(
        steps=tuple(step for step in steps if step.change(snapshot.get(step.key)) is not None),
        wanted=frozenset(wanted),
        to_set=frozenset(to_set),
        conflicts=frozenset(conflicts),
        missing=frozenset(missing),
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


def put_peer(name: str, spec: Mapping[str, Any], owner: str, fresh: Fresh) -> Change:
    """Create our BGPPeer, or bring ours to `spec` keeping its metadata; a foreign one is left."""
    wanted_spec = json.loads(json.dumps(spec))

    def change(current: Entry | None) -> bytes | None:
        if current is None:
            return _dump(
                {
                    "kind": "BGPPeer",
                    "apiVersion": "projectcalico.org/v3",
                    "metadata": {
                        "name": name,
                        "uid": fresh.new_uid(),
                        "creationTimestamp": fresh.created,
                        "labels": {OWNER_LABEL: owner},
                    },
                    "spec": wanted_spec,
                }
            )
        document = owned_document(current, owner)
        if document is None:
            return None  # foreign: never overwritten
        if (
            document.get("spec") == wanted_spec
            and document.get("kind") == "BGPPeer"
            and document.get("apiVersion") == "projectcalico.org/v3"
            and document["metadata"].get("name") == name
        ):
            return None
        updated = dict(document)
        updated["kind"] = "BGPPeer"
        updated["apiVersion"] = "projectcalico.org/v3"
        updated["metadata"] = {**document["metadata"], "name": name}
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


def _owned_record(cluster_id: str) -> bytes:
    return _dump({CLUSTER_ID_FIELD: cluster_id})


def _mark_owned(wanted: bytes) -> Change:
    """Record that this owner set the node's cluster ID (a node that already carries it)."""

    def change(current: Entry | None) -> bytes | None:
        return None if current is not None and current.value == wanted else wanted

    return change


def _unmark_owned() -> Change:
    """Drop the record once the node's cluster ID is cleared (or the node is gone)."""

    def change(current: Entry | None) -> Delete | None:
        return None if current is None else DELETE

    return change


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
