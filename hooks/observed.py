"""The edge between what the cluster shows and the core: the parent's status and the nodes'
labels become one domain `Previous` (hooks/previous.py), built once per sync, so the topologies
and transitions read no wire struct and no Calico label rendering."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hooks.calico import GROUP_LABEL, label_value
from hooks.config import Settings
from hooks.legacy import carries_reflector_label
from hooks.model import Group, NodeInfo, ReflectorState, RouteReflector
from hooks.previous import Previous
from hooks.wire import CLUSTER_ID_ANNOTATION, GroupWire, ReflectorWire, TopologyStatusWire

_STATES = {state.value: state for state in ReflectorState}


def labelled_reflectors(nodes: Iterable[NodeInfo], settings: Settings) -> dict[str, str]:
    """Nodes carrying the RR label now (or the original operator's form of it), with the
    cluster ID annotation they carry ("" if none)."""
    key, value = settings.reflector_label
    return {
        node.name: node.annotations.get(CLUSTER_ID_ANNOTATION, "")
        for node in nodes
        if carries_reflector_label(node.labels, key, value)
    }


def reflector(wire: ReflectorWire) -> RouteReflector:
    """One RR as the last status recorded it. A state this service never writes (a hand edit)
    reads as Pending with no start, which is how the transitions treat an unknown one: a fresh
    Pending (or Draining) since now."""
    state = _STATES.get(wire.state)
    return RouteReflector(
        wire.node,
        wire.zone,
        wire.clusterID,
        state or ReflectorState.PENDING,
        wire.role,
        wire.serves,
        wire.since if state is not None else "",
        plane=wire.plane if wire.plane > 0 else 0,
        hub=wire.hub,
        next_cluster_id=wire.nextClusterID,
    )


def group(wire: GroupWire) -> Group:
    return Group(
        wire.name, wire.zone, tuple(wire.reflectors), wire.rack or None, wire.retiringSince
    )


def previous_from(
    status: TopologyStatusWire, nodes: Sequence[NodeInfo], settings: Settings
) -> Previous:
    """The last plan from `status`, with the RR and group labels the nodes carry now."""
    carried = {node.labels[GROUP_LABEL] for node in nodes if GROUP_LABEL in node.labels}
    return Previous(
        reflectors={rr.node: reflector(rr) for rr in status.routeReflectors},
        groups=tuple(group(g) for g in status.groups),
        labelled=labelled_reflectors(nodes, settings),
        unlabelled_groups=frozenset(
            g.name for g in status.groups if label_value(g.name) not in carried
        ),
        ready=sum(zone.ready for zone in status.zones),
    )
