"""The node hook: a Node and the topologies in, the labels and annotations it should carry out,
read from the plan in the topology's status (parsed once per status)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec

from hooks.calico import (
    GROUP_LABEL,
    PREVIOUS_GROUP_LABEL,
    REFLECTOR_LABEL,
    label_value,
    node_changes,
    reflector_token,
)
from hooks.config import Settings, SpecError
from hooks.legacy import carries_reflector_label, is_legacy_value
from hooks.model import Group, NodeInfo
from hooks.selection import zone_of
from hooks.settings_cache import Environ, settings_for
from hooks.topologies import group_for
from hooks.wire import (
    CLUSTER_ID_ANNOTATION,
    MANAGED_ANNOTATION,
    LegacyOperatorWire,
    NodeSyncRequest,
    NodeSyncResponse,
    decode_topologies,
    read_status,
)

NO_CHANGE = NodeSyncResponse(labels={}, annotations={})


@dataclass(frozen=True)
class _PlanView:
    """What a node sync needs of the topology's status, parsed once per status: every Node is
    synced against the same one."""

    topology: str
    reflectors: Mapping[str, str]  # RR node → its cluster ID
    groups: tuple[Group, ...]  # the groups clients may join (retiring ones excluded)
    retiring: frozenset[str]  # label values of retiring groups
    keep_legacy_labels: bool  # RRs keep the original operator's label value for now
    complete: bool  # the status names a topology and lists its routeReflectors (maybe none)
    released: bool  # the topology is being deleted: every node gives its keys back


class _StatusShape(msgspec.Struct):
    """Which parts a status has at all: a missing `routeReflectors` is not an empty one."""

    topology: str | None = None
    routeReflectors: list[Any] | None = None
    released: bool = False


@lru_cache(maxsize=8)
def _plan_view(raw: bytes) -> _PlanView:
    status = read_status(raw)
    try:
        shape = msgspec.json.decode(raw, type=_StatusShape | None)
    except msgspec.ValidationError:
        shape = None
    return _PlanView(
        topology=status.topology,
        reflectors={rr.node: rr.clusterID for rr in status.routeReflectors},
        groups=tuple(
            Group(g.name, g.zone, tuple(g.reflectors), g.rack or None)
            for g in status.groups
            if not g.retiringSince
        ),
        retiring=frozenset(label_value(g.name) for g in status.groups if g.retiringSince),
        keep_legacy_labels=isinstance(status.legacyOperator, LegacyOperatorWire)
        and status.legacyOperator.keepLabels,
        complete=shape is not None
        and bool(shape.topology)
        and shape.routeReflectors is not None
        and status.topology == shape.topology,
        released=shape is not None and shape.released,
    )


@dataclass(frozen=True)
class NodeDecision:
    """A node sync's answer, and why it changes nothing when it must not (logged, counted)."""

    response: NodeSyncResponse
    skipped: str | None = None
    message: str = ""


# The keys this service sets under route-reflector.dev/; other keys there (a user's
# `route-reflector.dev/pool`, say) are not ours to remove.
OWNED_LABELS = frozenset({REFLECTOR_LABEL, GROUP_LABEL, PREVIOUS_GROUP_LABEL})
OWNED_ANNOTATIONS = frozenset({MANAGED_ANNOTATION, CLUSTER_ID_ANNOTATION})


def owned_keys(
    labels: Mapping[str, str], annotations: Mapping[str, str], node_label: tuple[str, str] | None
) -> tuple[set[str], set[str]]:
    """The keys this service may take back from a node: the route-reflector.dev/ labels and
    annotation it sets, the cluster-ID annotation, and the configured nodeLabel key only while
    it carries our value (or the original operator's form of it, `value-N`, which a migration
    takes over). Nothing else, whatever the managed-keys annotation lists."""
    owned_labels = set(OWNED_LABELS & labels.keys())
    if node_label is not None and carries_reflector_label(labels, *node_label):
        owned_labels.add(node_label[0])
    return owned_labels, set(OWNED_ANNOTATIONS & annotations.keys())


def _release(node: Any, node_label: tuple[str, str] | None) -> NodeSyncResponse:
    labels, annotations = owned_keys(node.labels, node.annotations, node_label)
    return NodeSyncResponse(
        labels=dict.fromkeys(sorted(labels)), annotations=dict.fromkeys(sorted(annotations))
    )


def decide_node(request: NodeSyncRequest, environ: Environ) -> NodeDecision:
    """The labels and annotations one Node should carry, by the plan in the topology's status.

    Missing information never takes a key back: with no topology, an unreadable or incomplete
    status, or an invalid spec the answer is empty (no change). Keys go back only when the
    topology's status says they are released (its finalizer is running)."""
    node = request.object.to_info()
    topologies = decode_topologies(request.related)
    if not topologies:
        return NodeDecision(NO_CHANGE, "no_topology", "no RouteReflectorTopology in the request")
    topology = topologies[0]
    view = _plan_view(bytes(topology.status))
    try:
        settings: Settings | None = settings_for(topology.spec, environ)
    except SpecError as error:
        settings = None
        invalid = f"{error.field}: {error.message}"
    if view.released:
        return NodeDecision(_release(node, settings.reflector_label if settings else None))
    if settings is None:
        return NodeDecision(NO_CHANGE, "invalid_spec", invalid)
    if settings.paused:
        return NodeDecision(NO_CHANGE, "paused", "spec.paused")
    if not view.complete:
        return NodeDecision(
            NO_CHANGE,
            "incomplete_status",
            f"RouteReflectorTopology {topology.metadata.name!r} has no plan in its status"
            " (absent, unreadable, or without routeReflectors)",
        )
    key, value = settings.reflector_label
    desired_labels: dict[str, str] = {}
    desired_annotations: dict[str, str] = {}
    cluster_id = view.reflectors.get(node.name)
    if cluster_id is not None:
        held = node.labels.get(key)
        keep = view.keep_legacy_labels and held is not None and is_legacy_value(held, value)
        desired_labels[key] = held if keep and held is not None else value
        desired_labels[REFLECTOR_LABEL] = reflector_token(node.name)
        if settings.datastore != "etcdv3":
            desired_annotations[CLUSTER_ID_ANNOTATION] = cluster_id
    else:
        group = client_group(node, settings, view.groups)
        if group is not None:
            desired_labels[GROUP_LABEL] = label_value(group.name)
        # A client leaving a retiring group keeps it as its previous group until it retires.
        for held in (node.labels.get(GROUP_LABEL), node.labels.get(PREVIOUS_GROUP_LABEL)):
            if held in view.retiring and held != desired_labels.get(GROUP_LABEL):
                desired_labels[PREVIOUS_GROUP_LABEL] = held
                break
    known_labels, known_annotations = owned_keys(
        node.labels, node.annotations, settings.reflector_label
    )
    known_annotations.discard(MANAGED_ANNOTATION)
    labels, annotations = node_changes(
        desired_labels, desired_annotations, known_labels, known_annotations
    )
    return NodeDecision(NodeSyncResponse(labels=labels, annotations=annotations))


def client_group(node: NodeInfo, settings: Settings, groups: tuple[Group, ...]) -> Group | None:
    rack = node.labels.get(settings.rack_label, "") if settings.rack_label else ""
    return group_for(node.name, zone_of(node, settings), rack, groups)


def node_sync(request: NodeSyncRequest, environ: Environ) -> NodeSyncResponse:
    """The node hook's answer (see decide_node)."""
    return decide_node(request, environ).response
