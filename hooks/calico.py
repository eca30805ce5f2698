"""Render what Calico reads: BGPPeers, selector strings, node labels and annotations, names."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hooks.config import Settings
from hooks.model import AllReflectors, Clients, PeerSet, Plan, Reflectors
from hooks.spec import LABEL_VALUE
from hooks.wire import BGPPEER_API, CLUSTER_ID_ANNOTATION, MANAGED_ANNOTATION

GROUP_LABEL = "route-reflector.dev/group"
# While a client moves off a retiring group it carries the old group here too, so it keeps the
# old group's sessions until the new ones are up (make-before-break for clients).
PREVIOUS_GROUP_LABEL = "route-reflector.dev/previous-group"
REFLECTOR_LABEL = "route-reflector.dev/reflector"
OWNER_LABEL = "route-reflector.dev/owner"
SELECTOR_LIMIT = 1024  # Calico's CRD: nodeSelector/peerSelector maxLength
_NAME_OK = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _digest(text: str, size: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def label_value(text: str) -> str:
    """`text` as a label value: itself when valid, else a readable prefix plus a hash."""
    if LABEL_VALUE.match(text) and len(text) <= 63:
        return text
    readable = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:50].strip("-_.")
    return f"{readable}-{_digest(text)}" if readable else _digest(text)


def name_part(text: str) -> str:
    """`text` as a piece of an object name (lowercase DNS label); a hash keeps it unique."""
    if _NAME_OK.match(text) and len(text) <= 40:
        return text
    readable = re.sub(r"[^a-z0-9-]", "-", text.lower())[:30].strip("-")
    return f"{readable}-{_digest(text, 8)}" if readable else _digest(text, 8)


def reflector_token(node: str) -> str:
    return label_value(node)


def _quote(value: str) -> str:
    return "'" + value + "'"


def render_selector(peers: PeerSet, settings: Settings) -> str:
    if isinstance(peers, AllReflectors):
        key, value = settings.reflector_label
        return f"{key} == {_quote(value)}"
    if isinstance(peers, Clients):
        value = _quote(label_value(peers.group))
        if peers.retiring:
            return f"{GROUP_LABEL} == {value} || {PREVIOUS_GROUP_LABEL} == {value}"
        return f"{GROUP_LABEL} == {value}"
    tokens = ", ".join(_quote(reflector_token(name)) for name in peers.names)
    return f"{REFLECTOR_LABEL} in {{{tokens}}}"


def _split(peers: PeerSet, settings: Settings) -> list[PeerSet]:
    """Split an RR list whose selector is over Calico's length limit; the parts are disjoint."""
    if not isinstance(peers, Reflectors) or len(render_selector(peers, settings)) <= SELECTOR_LIMIT:
        return [peers]
    half = len(peers.names) // 2
    return _split(Reflectors(peers.names[:half]), settings) + _split(
        Reflectors(peers.names[half:]), settings
    )


def bgp_peer_name(owner: str, peering: str) -> str:
    return f"{name_part(owner)}-rr-{name_part(peering)}"


def render_bgp_peers(plan: Plan, settings: Settings, owner: str) -> list[dict[str, Any]]:
    """One BGPPeer per peering (split only where a selector would be too long), sorted by name."""
    peers: list[dict[str, Any]] = []
    for peering in plan.peerings:
        sides = [
            (n, p) for n in _split(peering.nodes, settings) for p in _split(peering.peers, settings)
        ]
        for index, (nodes, remote) in enumerate(sides):
            name = bgp_peer_name(owner, peering.name)
            if len(sides) > 1:
                name = f"{name}-{index + 1}"
            peers.append(
                bgp_peer(
                    name, owner, render_selector(nodes, settings), render_selector(remote, settings)
                )
            )
    return sorted(peers, key=lambda peer: peer["metadata"]["name"])


def bgp_peer(name: str, owner: str, node_selector: str, peer_selector: str) -> dict[str, Any]:
    return {
        "apiVersion": BGPPEER_API,
        "kind": "BGPPeer",
        "metadata": {"name": name, "labels": {OWNER_LABEL: label_value(owner)}},
        "spec": {"nodeSelector": node_selector, "peerSelector": peer_selector},
    }


# --- node labels -------------------------------------------------------------------------------


def managed_record(labels: Sequence[str], annotations: Sequence[str]) -> str:
    return json.dumps(
        {"annotations": sorted(annotations), "labels": sorted(labels)}, separators=(",", ":")
    )


def node_changes(
    desired_labels: Mapping[str, str],
    desired_annotations: Mapping[str, str],
    known_labels: set[str],
    known_annotations: set[str],
) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Set what is desired, `null` every other managed key, and record what we now manage."""
    labels: dict[str, str | None] = dict.fromkeys(sorted(known_labels - set(desired_labels)))
    labels.update(desired_labels)
    annotations: dict[str, str | None] = dict.fromkeys(
        sorted(known_annotations - set(desired_annotations))
    )
    annotations.update(desired_annotations)
    if desired_labels or desired_annotations:
        annotations[MANAGED_ANNOTATION] = managed_record(
            list(desired_labels), list(desired_annotations)
        )
    else:
        annotations[MANAGED_ANNOTATION] = None
    return dict(sorted(labels.items())), dict(sorted(annotations.items()))


__all__ = [
    "CLUSTER_ID_ANNOTATION",
    "GROUP_LABEL",
    "OWNER_LABEL",
    "REFLECTOR_LABEL",
    "bgp_peer",
    "bgp_peer_name",
    "label_value",
    "node_changes",
    "reflector_token",
    "render_bgp_peers",
    "render_selector",
]
