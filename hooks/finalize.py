"""The finalize hook: a topology being deleted gives back every node key it set (the node hook
takes them back once its status says `released`), after the node-to-node mesh it switched off is
back on; it is finalized once no node carries a key."""

from __future__ import annotations

from datetime import datetime

from hooks.config import SpecError
from hooks.decision import echo_children, raw_status
from hooks.model import Condition
from hooks.node_hook import owned_keys
from hooks.settings_cache import Environ, settings_for
from hooks.status import render_conditions, status_document
from hooks.wire import (
    TopologyFinalizeResponse,
    TopologySyncRequest,
    decode_nodes,
    decode_topologies,
)

RELEASE_RESYNC_SECONDS = 10.0
# The finalize hook's answer when it has just turned the mesh back on (either datastore).
MESH_RESTORED = Condition(
    "Ready",
    "False",
    "RestoringMesh",
    "being deleted: the node-to-node mesh this topology switched off is back on; the route"
    " reflector keys are released on the next call, once its sessions are up",
)


def mesh_switch_asked(request: TopologySyncRequest, environ: Environ) -> bool:
    """Whether the topology being deleted may have switched the mesh off: its spec asks for
    DisableWhenReady, or its last status shows the switch's condition (the spec changed since)."""
    try:
        asked = settings_for(request.parent.spec, environ).node_to_node_mesh == "DisableWhenReady"
    except SpecError:
        asked = False
    shown = request.parent.read_status().conditions
    return asked or any(c.type == "NodeToNodeMesh" for c in shown)


def topology_finalize(
    request: TopologySyncRequest, environ: Environ, now: datetime, hold: Condition | None = None
) -> TopologyFinalizeResponse:
    """The topology is being deleted: its status says the node keys are released (the node hook
    then takes them back), its children stay until no node carries a key, then it is finalized.

    A topology superseded by an older one owns no key and is finalized at once. With `hold` (the
    node-to-node mesh was just turned back on) nothing is released yet: the status shows `hold`
    and the hook is called again after RELEASE_RESYNC_SECONDS, the mesh's sessions up by then."""
    parent = request.parent
    previous = parent.read_status()
    previous_raw = raw_status(parent.status)
    status = {
        k: v for k, v in previous_raw.items() if k not in ("conditions", "observedGeneration")
    }
    generation = parent.metadata.generation
    if hold is not None:
        status["conditions"] = status_document(
            render_conditions([hold], previous.conditions, now, generation)
        )
        return TopologyFinalizeResponse(
            status=status,
            children=list(echo_children(request)),
            finalized=False,
            resyncAfterSeconds=RELEASE_RESYNC_SECONDS,
        )
    holding = _holding(request, environ)
    status["released"] = True
    if holding:
        shown = ", ".join(holding[:10]) + (
            f" and {len(holding) - 10} more" if len(holding) > 10 else ""
        )
        wanted = Condition(
            "Ready",
            "False",
            "Releasing",
            f"being deleted: {len(holding)} node(s) still carry route reflector keys: {shown}",
        )
    else:
        wanted = Condition("Ready", "False", "Released", "being deleted: no node carries a key")
    status["conditions"] = status_document(
        render_conditions([wanted], previous.conditions, now, generation)
    )
    return TopologyFinalizeResponse(
        status=status,
        children=list(echo_children(request)) if holding else [],
        finalized=not holding,
        resyncAfterSeconds=RELEASE_RESYNC_SECONDS if holding else None,
    )


def _holding(request: TopologySyncRequest, environ: Environ) -> list[str]:
    """The nodes still carrying a key of the topology being deleted, by name; none when an
    older topology superseded it (it owns no key)."""
    parent = request.parent
    owner = parent.metadata.name
    mine = (parent.metadata.creationTimestamp or "", owner)
    if any(
        (t.metadata.creationTimestamp or "", t.metadata.name) < mine
        for t in decode_topologies(request.related)
        if t.metadata.name != owner
    ):
        return []
    try:
        node_label: tuple[str, str] | None = settings_for(parent.spec, environ).reflector_label
    except SpecError:
        node_label = None  # the node hook then takes back only route-reflector.dev/ keys
    holding = []
    for node in decode_nodes(request.related):
        info = node.to_info()
        labels, annotations = owned_keys(info.labels, info.annotations, node_label)
        if labels or annotations:
            holding.append(info.name)
    return sorted(holding)
