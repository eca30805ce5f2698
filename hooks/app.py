"""Starlette app: routes, body limits, error mapping, metrics, logs. Thin around controllers."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hooks import controllers, wire
from hooks.controllers import Applied, TopologyDecision
from hooks.metrics import DEFAULT_MAX_OWNERS, DEFAULT_MAX_ZONES, Metrics
from hooks.model import Condition
from hooks.paths import count_paths

log = logging.getLogger("hooks")
DEFAULT_MAX_BODY = 512 * 1024 * 1024
Clock = Callable[[], datetime]
Applier = Callable[[TopologyDecision], Applied]
MeshSwitcher = Callable[[TopologyDecision], Condition]
LegacyRemover = Callable[[TopologyDecision], Condition]
Body = bytes | bytearray


class TooLarge(Exception):
    pass


class Unavailable(Exception):
    """A datastore the plan must be written to did not answer: 503, Metacontroller retries."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def error_response(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


async def read_body(request: Request, limit: int) -> bytearray:
    """The body, refused (413) before it is read whole when it is over `limit` bytes.

    With a Content-Length the chunks land in one preallocated buffer: a 300 MB request is
    never held twice."""
    declared = request.headers.get("content-length")
    size = int(declared) if declared is not None and declared.isdigit() else None
    if size is not None and size > limit:
        raise TooLarge(f"request body of {size} bytes is over MAX_BODY_BYTES ({limit})")
    buffer = bytearray(size) if size is not None else bytearray()
    view = memoryview(buffer)
    filled = 0
    async for chunk in request.stream():
        end = filled + len(chunk)
        if end > limit:
            raise TooLarge(f"request body is over MAX_BODY_BYTES ({limit})")
        if size is not None and end <= size:
            view[filled:end] = chunk
        else:
            view.release()
            del buffer[filled:]
            buffer += chunk
            view = memoryview(buffer)
        filled = end
    view.release()
    if filled < len(buffer):
        del buffer[filled:]
    return buffer


def _paused(
    handler: Callable[[Body], tuple[bytes, dict[str, Any]]], body: Body
) -> tuple[bytes, dict[str, Any]]:
    """Run a large sync with the cyclic collector paused (see wire.collector_paused)."""
    with wire.collector_paused:
        return handler(body)


def create_app(
    environ: Mapping[str, str] | None = None,
    clock: Clock = _utcnow,
    applier: Applier | None = None,
    mesh_switch: MeshSwitcher | None = None,
    legacy_remover: LegacyRemover | None = None,
) -> Starlette:
    """The hook service. `environ` defaults to the process environment, read once here."""
    env = dict(os.environ if environ is None else environ)
    limit = int(env.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY))
    metrics = Metrics(
        max_owners=int(env.get("METRICS_MAX_OWNERS", DEFAULT_MAX_OWNERS)),
        max_zones=int(env.get("METRICS_MAX_ZONES", DEFAULT_MAX_ZONES)),
    )
    last_plans: dict[str, tuple[str, ...]] = {}
    routing_digests: dict[str, str] = {}  # owner → what its route counts were made from
    if applier is None:
        applier = _etcd_applier(env)
    if mesh_switch is None:
        mesh_switch = _mesh_switch(env)
    switch_mesh = mesh_switch
    remove_legacy = legacy_remover or _legacy_remover(env)

    def topology_sync(body: Body) -> tuple[bytes, dict[str, Any]]:
        request = wire.decode(body, wire.TopologySyncRequest)
        now = clock()
        decision = controllers.decide_topology(request, env, now)
        applied = None
        settings = decision.settings
        if decision.applies and settings is not None and settings.datastore == "etcdv3":
            applied = applier(decision)
        mesh = None
        if (
            decision.applies
            and settings is not None
            and settings.node_to_node_mesh == "DisableWhenReady"
        ):
            mesh = switch_mesh(decision)
        legacy = None
        if (
            decision.applies
            and settings is not None
            and settings.legacy_bgp_peers == "RemoveWhenReady"
            and decision.legacy_removable
        ):
            legacy = remove_legacy(decision)
        response = controllers.render_topology(decision, applied, mesh, legacy)
        fields: dict[str, Any] = {"parent": decision.owner}
        # Series only for a bounded set of owners; what an owner no longer tracked left behind
        # (its last plan, its routing digest) goes with it.
        observed = metrics.admit(decision.owner, now)
        for gone in [owner for owner in last_plans if owner not in metrics.owners]:
            del last_plans[gone]
            routing_digests.pop(gone, None)
        if observed:
            metrics.observe_conditions(decision.owner, response.status.get("conditions", ()))
        if decision.plan is not None:
            rrs = tuple(rr.node for rr in decision.plan.reflectors)
            changed = last_plans.get(decision.owner) != rrs
            if observed:
                last_plans[decision.owner] = rrs
                metrics.observe_plan(
                    decision.owner,
                    decision.plan,
                    changed,
                    len(decision.bgp_peers),
                    settings.wait_seconds if settings is not None else 0,
                    decision.role_changes,
                )
            fields |= {
                "reflectors": len(rrs),
                "changed": changed,
                "children": len(response.children),
            }
            digest = controllers.routing_digest(decision)
            if observed and decision.applies and routing_digests.get(decision.owner) != digest:
                # counted only when the peerings or the RR set change: a steady sync costs nothing
                nodes = (node.to_info() for node in wire.decode_nodes(request.related))
                paths = count_paths(controllers.planned_nodes(decision, nodes), decision.bgp_peers)
                metrics.observe_paths(decision.owner, paths)
                routing_digests[decision.owner] = digest
                fields |= {
                    "paths_client_max": paths.paths_client_max,
                    "routes_per_node_max": paths.routes_per_node_max,
                    "paths_exploded": paths.exploded,
                }
        if decision.failure is not None:
            fields |= {"outcome": decision.failure.reason, "message": decision.failure.message}
        return wire.encode(response), fields

    def node_sync(body: Body) -> tuple[bytes, dict[str, Any]]:
        request = wire.decode(body, wire.NodeSyncRequest)
        response = controllers.node_sync(request, env)
        changes = response.labels | response.annotations
        return wire.encode(response), {
            "parent": request.object.metadata.name,
            "changes": len(changes),
        }

    def topology_customize(body: Body) -> tuple[bytes, dict[str, Any]]:
        request = wire.decode(body, wire.CustomizeRequest)
        return wire.encode(controllers.topology_customize(request)), {}

    def node_customize(body: Body) -> tuple[bytes, dict[str, Any]]:
        request = wire.decode(body, wire.CustomizeRequest)
        return wire.encode(controllers.node_customize(request)), {}

    def hook(
        name: str, handler: Callable[[Body], tuple[bytes, dict[str, Any]]], threaded: bool
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            outcome = "ok"
            fields: dict[str, Any] = {}
            try:
                body = await read_body(request, limit)
                metrics.request_bytes.labels(name).observe(len(body))
                answer, fields = (
                    await run_in_threadpool(_paused, handler, body) if threaded else handler(body)
                )
                return Response(answer, media_type="application/json")
            except TooLarge as error:
                outcome = "too_large"
                return error_response(413, str(error))
            except wire.BadRequest as error:
                outcome = "bad_request"
                fields["error"] = error.message
                return error_response(400, error.message, error.field)
            except Unavailable as error:
                outcome = "unavailable"
                fields["error"] = str(error)
                return error_response(503, str(error))
            except ClientDisconnect:
                outcome = "disconnected"
                return Response(status_code=499)
            except Exception as error:  # a bug: say so, with the stack, and never answer 200
                outcome = "internal_error"
                log.exception("hook %s failed", name)
                return error_response(500, f"internal error: {type(error).__name__}: {error}")
            finally:
                elapsed = time.perf_counter() - started
                metrics.duration.labels(name).observe(elapsed)
                if outcome != "ok":
                    metrics.errors.labels(name, outcome).inc()
                level = logging.INFO if outcome in ("ok",) else logging.WARNING
                if log.isEnabledFor(level):
                    log.log(
                        level,
                        json.dumps(
                            {
                                "hook": name,
                                "duration_ms": round(elapsed * 1000, 3),
                                "outcome": outcome,
                                **fields,
                            },
                            sort_keys=True,
                            default=str,
                        ),
                    )

        return endpoint

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route(
            "/topology/customize",
            hook("topology_customize", topology_customize, False),
            methods=["POST"],
        ),
        Route("/topology/sync", hook("topology_sync", topology_sync, True), methods=["POST"]),
        Route("/node/customize", hook("node_customize", node_customize, False), methods=["POST"]),
        Route("/node/sync", hook("node_sync", node_sync, False), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.metrics = metrics
    return app


def _etcd_applier(env: Mapping[str, str]) -> Applier:
    """Apply a decision to etcd; the connection is made on first use."""
    state: dict[str, Any] = {}

    def apply(decision: TopologyDecision) -> Applied:
        from hooks.datastores.etcd import (
            EtcdApplier,
            EtcdConflict,
            EtcdError,
            EtcdSettings,
            EtcdUnavailable,
        )
        from hooks.datastores.plan import desired_state

        if "applier" not in state:
            try:
                state["applier"] = EtcdApplier(EtcdSettings.from_environ(env))
            except ValueError as error:
                raise Unavailable(f"etcd settings: {error}") from None
        try:
            result = state["applier"].apply(desired_state(decision))
        except EtcdUnavailable as error:
            raise Unavailable(f"etcd unavailable: {error}") from None
        except EtcdConflict as error:
            raise Unavailable(f"etcd keys kept changing under us, will retry: {error}") from None
        except EtcdError as error:
            raise Unavailable(f"etcd refused the plan: {error}") from None
        return Applied(
            datastore="etcdv3",
            revision=result.revision,
            writes=result.writes,
            peers=result.peers,
            missing_nodes=tuple(result.missing_nodes),
            foreign_peers=tuple(result.foreign_conflicts),
        )

    return apply


def _mesh_switch(env: Mapping[str, str]) -> MeshSwitcher:
    """Turn the node-to-node mesh off once the decision proves the RRs carry every session.

    A failure is reported as a condition, never as a non-200: BGPPeer updates must go on."""
    state: dict[str, Any] = {}

    def switch(decision: TopologyDecision) -> Condition:
        if not decision.mesh_can_go:
            return Condition(
                "NodeToNodeMesh",
                "True",
                "WaitingForReflectors",
                "the mesh stays on until every RR is Active with Established BGP sessions",
            )
        from hooks.datastores.kubernetes import MeshSwitch, MeshSwitchError

        try:
            if "switch" not in state:
                state["switch"] = MeshSwitch.from_environ(env)
            state["switch"].disable()
        except MeshSwitchError as error:
            log.warning(json.dumps({"mesh_switch": "failed", "error": str(error)}))
            return Condition("NodeToNodeMesh", "True", "SwitchFailed", str(error))
        return Condition(
            "NodeToNodeMesh",
            "False",
            "Disabled",
            "node-to-node mesh is off in BGPConfiguration default; the RRs carry every route",
        )

    return switch


def _legacy_remover(env: Mapping[str, str]) -> LegacyRemover:
    """Delete the original operator's BGPPeers (the decision says ours carry every session).

    A failure is reported as a condition, never as a non-200: BGPPeer updates must go on."""
    state: dict[str, Any] = {}

    def remove(decision: TopologyDecision) -> Condition:
        from hooks.datastores.kubernetes import (
            KubernetesAPI,
            KubernetesAPIError,
            LegacyPeerRemoval,
        )

        try:
            if "removal" not in state:
                state["removal"] = LegacyPeerRemoval(KubernetesAPI.from_environ(env))
            removed = state["removal"].remove((p.name, p.uid) for p in decision.legacy_peers)
        except KubernetesAPIError as error:
            log.warning(json.dumps({"legacy_bgp_peers": "failed", "error": str(error)}))
            return Condition(controllers.LEGACY_CONDITION, "True", "RemoveFailed", str(error))
        log.info(json.dumps({"legacy_bgp_peers": "removed", "names": removed}))
        return Condition(
            controllers.LEGACY_CONDITION,
            "False",
            "Removed",
            f"deleted {len(removed)} BGPPeer(s) of the original operator; ours carry every session",
        )

    return remove
