"""What mhmxs/calico-route-reflector-operator leaves behind: its RR labels and its BGPPeers.

Its single topology labels an RR `<key>=<value>` (our default, `calico-route-reflector=`); its
multi topology `<key>=<fnv32a(node UID)>`, or `<key>=<value>-<fnv32a(UID)>` when the value is set.
Its BGPPeers carry no labels: `rrs-to-rrs` (has(key) ↔ has(key)), `peer-to-rrs-1` (single:
!has(key) → has(key)) and, in multi, one `peer-to-rrs-<rr id>-<node UID>` per client and RR
(`kubernetes.io/hostname == '<node>'` → `<key> == '<rr id>'`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

MESH_PEER: Final = "rrs-to-rrs"
CLIENT_PEER_PREFIX: Final = "peer-to-rrs-"


def is_legacy_value(found: str, value: str) -> bool:
    """A value the old operator's multi topology gives an RR under our label key."""
    digits = r"[0-9]{1,10}"
    pattern = f"{re.escape(value)}-{digits}" if value else digits
    return re.fullmatch(pattern, found) is not None


def carries_reflector_label(labels: Mapping[str, str], key: str, value: str) -> bool:
    """The node is an RR now: our label, or the old operator's multi-topology form of it."""
    found = labels.get(key)
    return found is not None and (found == value or is_legacy_value(found, value))


@dataclass(frozen=True, slots=True, order=True)
class LegacyPeer:
    name: str
    uid: str


def _spec_matches(name: str, spec: Mapping[str, Any], key: str) -> bool:
    nodes = str(spec.get("nodeSelector", "")).replace(" ", "")
    peers = str(spec.get("peerSelector", "")).replace(" ", "")
    has = f"has({key})"
    if name == MESH_PEER:
        return nodes == has and peers == has
    if not name.startswith(CLIENT_PEER_PREFIX):
        return False
    if nodes == "!" + has and peers == has:
        return True  # single topology: every client to every RR
    return (
        nodes.startswith("kubernetes.io/hostname==")
        and re.fullmatch(re.escape(key) + r"==(['\"])[^'\"]*\1", peers) is not None
    )


def find_legacy_peers(observed: Iterable[Mapping[str, Any]], key: str) -> tuple[LegacyPeer, ...]:
    """The observed BGPPeers that the old operator created for RR label `key`: its names and
    selector shapes, no labels and no owner (a BGPPeer someone else made is never one)."""
    found = []
    for peer in observed:
        meta = peer.get("metadata") or {}
        name = str(meta.get("name", ""))
        if meta.get("labels") or meta.get("ownerReferences"):
            continue
        if _spec_matches(name, peer.get("spec") or {}, key):
            found.append(LegacyPeer(name, str(meta.get("uid", ""))))
    return tuple(sorted(found))
