"""Starlette app: routes, error mapping, metrics, logs; thin around reconcile and the hook
functions. What a request may hold is in intake.py, what the service writes in writers.py."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hooks import controllers, wire
from hooks.controllers import TopologyDecision
from hooks.intake import BodyTimeout, Busy, Limits, TooLarge, read_body
from hooks.metrics import DEFAULT_MAX_OWNERS, DEFAULT_MAX_ZONES, Metrics
from hooks.paths import count_paths
from hooks.reconcile import (
    Applier,
    Clock,
    LegacyRemover,
    MeshSwitcher,
    Reconciled,
    ReportReader,
    reconcile,
)
from hooks.writers import (
    Etcd,
    Unavailable,
    legacy_remover_for,
    mesh_restorer_for,
    mesh_switch_for,
)

log = logging.getLogger("hooks")
RETRY_AFTER_SECONDS = 5
LOG_TEXT = 500  # characters of an error or a name kept in a log line
Releaser = Callable[[str], None]  # removes a deleted topology's objects from the datastore
MeshRestorer = Callable[[str], bool]  # KDD: the mesh back on if that topology switched it off
Body = bytes | bytearray


class Answer(NamedTuple):
    """A handler's answer and its log fields; `after`, when set, is work left once the answer is
    sent (in the thread pool, the request's sync slot still held), returning more log fields."""

    body: bytes
    fields: dict[str, Any]
    after: Callable[[], dict[str, Any]] | None = None


def clip(text: object, size: int = LOG_TEXT) -> str:
    """`text` cut to `size` characters for a log line, saying how much was cut."""
    value = str(text)
    return value if len(value) <= size else f"{value[:size]}...[{len(value) - size} more]"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def _paused(handler: Callable[[Body], Answer], body: Body) -> Answer:
    """Run a large sync with the cyclic collector paused (see wire.collector_paused)."""
    with wire.collector_paused:
        return handler(body)


def create_app(
    environ: Mapping[str, str] | None = None,
    clock: Clock = _utcnow,
    applier: Applier | None = None,
    mesh_switch: MeshSwitcher | None = None,
    legacy_remover: LegacyRemover | None = None,
    serve_metrics: bool = True,
    releaser: Releaser | None = None,
    reports: ReportReader | None = None,
    mesh_restorer: MeshRestorer | None = None,
) -> Starlette:
    """The hook service. `environ` defaults to the process environment, read once here.

    With `serve_metrics` false /metrics is left to `create_metrics_app` on a port of its own, so
    a NetworkPolicy can admit the scraper to the metrics and nothing else."""
    env = dict(os.environ if environ is None else environ)
    metrics = Metrics(
        max_owners=int(env.get("METRICS_MAX_OWNERS", DEFAULT_MAX_OWNERS)),
        max_zones=int(env.get("METRICS_MAX_ZONES", DEFAULT_MAX_ZONES)),
    )
    etcd = Etcd(env)
    handlers = _Handlers(
        env,
        clock,
        metrics,
        applier=applier or etcd.apply,
        mesh_switch=mesh_switch or mesh_switch_for(env, etcd),
        legacy_remover=legacy_remover or legacy_remover_for(env),
        releaser=releaser or etcd.release,
        reports=reports or etcd.sessions,
        mesh_restorer=mesh_restorer or mesh_restorer_for(env),
        etcd=etcd,
    )
    routes = _routes(handlers, Limits.from_environ(env), metrics)
    if serve_metrics:
        routes.append(Route("/metrics", _metrics_endpoint(metrics), methods=["GET"]))
    app = Starlette(routes=routes, lifespan=_warmed)
    app.state.metrics = metrics
    return app


Handler = Callable[[Body], Answer]


class _Handlers:
    """The hooks behind the routes: a body in, the answer and its log fields out."""

    def __init__(
        self,
        env: Mapping[str, str],
        clock: Clock,
        metrics: Metrics,
        *,
        applier: Applier,
        mesh_switch: MeshSwitcher,
        legacy_remover: LegacyRemover,
        releaser: Releaser,
        reports: ReportReader,
        mesh_restorer: MeshRestorer,
        etcd: Etcd,
    ) -> None:
        self.env = env
        self.clock = clock
        self.metrics = metrics
        self.applier = applier
        self.mesh_switch = mesh_switch
        self.legacy_remover = legacy_remover
        self.releaser = releaser
        self.reports = reports
        self.mesh_restorer = mesh_restorer
        self.etcd = etcd
        self.last_plans: dict[str, tuple[str, ...]] = {}
        self.routing_digests: dict[str, str] = {}  # owner → what its route counts were made from

    def topology_sync(self, body: Body) -> Answer:
        """The decoded Nodes are freed once the answer is sent (freeing 20,000 of them takes
        ~0.1 s the caller need not wait for)."""
        began = time.perf_counter()
        request = wire.decode_topology_request(body)
        decoded = time.perf_counter()
        try:
            answer, fields = self.sync_decoded(request)
        except BaseException:
            wire.release(request)
            raise

        def release() -> dict[str, Any]:
            freeing = time.perf_counter()
            wire.release(request)  # once nothing else holds the Nodes (see wire.release)
            return {"release_ms": round((time.perf_counter() - freeing) * 1e3, 3)}

        return Answer(answer, fields | {"decode_ms": round((decoded - began) * 1e3, 3)}, release)

    def sync_decoded(self, request: wire.TopologySyncRequest) -> tuple[bytes, dict[str, Any]]:
        decoded = time.perf_counter()
        done = reconcile(
            request,
            self.env,
            self.clock,
            self.applier,
            self.mesh_switch,
            self.legacy_remover,
            self.reports,
        )
        planned = time.perf_counter()
        fields = self.observe(done, request)
        counted = time.perf_counter()
        answer = wire.encode(done.response)
        return answer, fields | {
            "plan_ms": round((planned - decoded) * 1e3, 3),
            "metrics_ms": round((counted - planned) * 1e3, 3),
            "encode_ms": round((time.perf_counter() - counted) * 1e3, 3),
        }

    def observe(self, done: Reconciled, request: wire.TopologySyncRequest) -> dict[str, Any]:
        """Metrics of one sync, and its log fields."""
        decision, applied, response, metrics = (
            done.decision,
            done.applied,
            done.response,
            self.metrics,
        )
        fields: dict[str, Any] = {"parent": decision.owner}
        # Series only for a bounded set of owners; what an owner no longer tracked left behind
        # (its last plan, its routing digest) goes with it.
        observed = metrics.admit(decision.owner, done.now)
        for gone in [owner for owner in self.last_plans if owner not in metrics.owners]:
            del self.last_plans[gone]
            self.routing_digests.pop(gone, None)
        if observed:
            metrics.observe_conditions(decision.owner, response.status.get("conditions", ()))
            if applied is not None:
                metrics.observe_datastore(
                    decision.owner, applied.foreign_count, len(applied.orphaned)
                )
        if decision.plan is not None:
            fields |= self.observe_plan(decision, request, observed, len(response.children))
        if decision.failure is not None:
            fields |= {"outcome": decision.failure.reason, "message": decision.failure.message}
        return fields

    def observe_plan(
        self,
        decision: TopologyDecision,
        request: wire.TopologySyncRequest,
        observed: bool,
        children: int,
    ) -> dict[str, Any]:
        plan, settings, metrics = decision.plan, decision.settings, self.metrics
        assert plan is not None
        rrs = tuple(rr.node for rr in plan.reflectors)
        changed = self.last_plans.get(decision.owner) != rrs
        if observed:
            self.last_plans[decision.owner] = rrs
            metrics.observe_plan(
                decision.owner,
                plan,
                changed,
                len(decision.bgp_peers),
                settings.wait_seconds if settings is not None else 0,
                decision.role_changes,
            )
        fields: dict[str, Any] = {"reflectors": len(rrs), "changed": changed, "children": children}
        digest = controllers.routing_digest(decision)
        if observed and decision.applies and self.routing_digests.get(decision.owner) != digest:
            # counted only when the peerings or the RR set change: a steady sync costs nothing
            nodes = (node.to_info() for node in wire.decode_nodes(request.related))
            paths = count_paths(controllers.planned_nodes(decision, nodes), decision.bgp_peers)
            metrics.observe_paths(decision.owner, paths, plan)
            self.routing_digests[decision.owner] = digest
            fields |= {
                "paths_client_max": paths.paths_client_max,
                "routes_per_node_max": paths.routes_per_node_max,
                "paths_exploded": paths.exploded,
            }
        return fields

    def node_sync(self, body: Body) -> Answer:
        request = wire.decode(body, wire.NodeSyncRequest)
        decision = controllers.decide_node(request, self.env)
        response = decision.response
        changes = response.labels | response.annotations
        fields: dict[str, Any] = {"parent": request.object.metadata.name, "changes": len(changes)}
        if decision.skipped is not None:
            self.metrics.node_sync_skipped.labels(decision.skipped).inc()
            fields |= {"skipped": decision.skipped, "message": decision.message}
        return Answer(wire.encode(response), fields)

    def topology_finalize(self, body: Body) -> Answer:
        request = wire.decode_topology_request(body)
        try:
            name = request.parent.metadata.name
            in_etcd = controllers.datastore_of(request.parent.spec, self.env) == "etcdv3"
            # The mesh goes back on before any key is released (etcd or the API down: 503, keys
            # stay), in the datastore Calico reads; in KDD only where the switch was asked for.
            if in_etcd:
                restored = self.etcd.mesh_restore(name)
            else:
                asked = controllers.mesh_switch_asked(request, self.env)
                restored = asked and self.mesh_restorer(name)
            hold = controllers.MESH_RESTORED if restored else None
            response = controllers.topology_finalize(request, self.env, self.clock(), hold)
            if response.finalized and in_etcd:
                self.releaser(name)  # etcd down: 503, the finalizer stays
            fields = {"parent": name, "finalized": response.finalized}
            return Answer(wire.encode(response), fields | ({"mesh_restored": True} if hold else {}))
        finally:
            wire.release(request)

    def topology_customize(self, body: Body) -> Answer:
        request = wire.decode(body, wire.CustomizeRequest)
        return Answer(wire.encode(controllers.topology_customize(request)), {})

    def node_customize(self, body: Body) -> Answer:
        request = wire.decode(body, wire.CustomizeRequest)
        return Answer(wire.encode(controllers.node_customize(request)), {})


def _routes(handlers: _Handlers, limits: Limits, metrics: Metrics) -> list[Route]:
    def hook(name: str, handler: Handler, threaded: bool) -> Route:
        path = "/" + name.replace("_", "/", 1)
        return Route(path, _endpoint(name, handler, threaded, limits, metrics), methods=["POST"])

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return [
        hook("topology_customize", handlers.topology_customize, False),
        hook("topology_sync", handlers.topology_sync, True),
        hook("topology_finalize", handlers.topology_finalize, True),
        hook("node_customize", handlers.node_customize, False),
        hook("node_sync", handlers.node_sync, False),
        Route("/healthz", healthz, methods=["GET"]),
    ]


def _endpoint(
    name: str, handler: Handler, threaded: bool, limits: Limits, metrics: Metrics
) -> Callable[[Request], Awaitable[Response]]:
    """One hook's route: a slot (threaded ones), the body within its limits, the handler (in
    the thread pool when threaded), every failure mapped to its status, a metric and a log line."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        outcome = "ok"
        fields: dict[str, Any] = {}
        slotted = False
        after: Callable[[], dict[str, Any]] | None = None
        body: Body = b""

        async def finish(elapsed: float) -> None:
            """Work left after the answer (its slot still held), then the slot, the body's
            bytes, the metrics and the log line."""
            try:
                if after is not None:
                    fields.update(await run_in_threadpool(after))
            finally:
                if slotted:
                    limits.slots.give()
                limits.budget.give(getattr(request.state, "body_bytes", 0))
                metrics.duration.labels(name).observe(elapsed)
                if outcome != "ok":
                    metrics.errors.labels(name, outcome).inc()
                _log(name, outcome, elapsed, fields)

        try:
            if threaded:  # the large ones: a slot first, then the body (see SyncSlots)
                await limits.slots.take()
                slotted = True
            waited = time.perf_counter()
            body = await read_body(
                request, limits.body, limits.budget, limits.idle_timeout, limits.body_timeout
            )
            received = time.perf_counter()
            metrics.request_bytes.labels(name).observe(len(body))
            answer = await run_in_threadpool(_paused, handler, body) if threaded else handler(body)
            fields |= answer.fields | {
                "wait_ms": round((waited - started) * 1e3, 3),
                "receive_ms": round((received - waited) * 1e3, 3),
            }
            after = answer.after
            if after is not None:
                return _AnswerThen(answer.body, finish, time.perf_counter() - started)
            return Response(answer.body, media_type="application/json")
        except Exception as error:
            outcome, response = _failure(name, error, body, fields)
            return response
        finally:
            if after is None:
                await finish(time.perf_counter() - started)

    return endpoint


class _AnswerThen(Response):
    """A JSON answer sent, then `then(elapsed)` awaited whatever happened to the sending (the
    client may be gone): it holds the request's slot until the work left after it is done."""

    media_type = "application/json"

    def __init__(
        self, body: bytes, then: Callable[[float], Awaitable[None]], elapsed: float
    ) -> None:
        super().__init__(body)
        self.then, self.elapsed = then, elapsed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.then(self.elapsed)


def _failure(
    name: str, error: Exception, body: Body, fields: dict[str, Any]
) -> tuple[str, Response]:
    """The outcome and the answer for a request that failed with `error` (while it is being
    handled); what the log line should say goes into `fields`."""
    if isinstance(error, TooLarge):
        return "too_large", error_response(413, str(error))
    if isinstance(error, BodyTimeout):
        fields["error"] = str(error)
        return "body_timeout", error_response(408, str(error))
    if isinstance(error, Busy):
        headers = {"retry-after": str(RETRY_AFTER_SECONDS)}
        return "busy", error_response(503, str(error), headers=headers)
    if isinstance(error, wire.BadRequest):
        fields["error"] = clip(error.message)
        return "bad_request", error_response(400, error.message, error.field)
    if isinstance(error, UnicodeDecodeError | RecursionError):
        # A part decoded after the envelope (a child, a status) that is not UTF-8 or is
        # nested too deep: the client's fault, named; anything else is a bug.
        bad = wire.unreadable(body, error)
        if bad is None:
            log.exception("hook %s failed", name)
            return "internal_error", error_response(500, f"internal error: {type(error).__name__}")
        fields["error"] = bad.message
        return "bad_request", error_response(400, bad.message, bad.field)
    if isinstance(error, Unavailable):
        fields["error"] = clip(error.detail)
        return "unavailable", error_response(503, error.reason)
    if isinstance(error, ClientDisconnect):
        return "disconnected", Response(status_code=499)
    # a bug: say so in the log, and never answer 200
    fields["error"] = clip(f"{type(error).__name__}: {error}")
    fields["trace"] = clip(traceback.format_exc(limit=-3), 2000)
    return "internal_error", error_response(500, "internal error")


def _log(name: str, outcome: str, elapsed: float, fields: dict[str, Any]) -> None:
    if "parent" in fields:
        fields["parent"] = clip(fields["parent"], 253)
    level = {"ok": logging.INFO, "internal_error": logging.ERROR}.get(outcome, logging.WARNING)
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


def _warm() -> None:
    """Nothing to compute: the topology modules load with hooks.topologies (its face imports
    them); the call through the thread pool is what warms."""


@contextlib.asynccontextmanager
async def _warmed(app: Starlette) -> AsyncIterator[None]:
    """Before the first request, one call through the thread pool: it loads anyio's worker
    thread machinery (on first use it is imported on the event loop's thread, and /healthz
    waited 0.3-0.4 s behind the first large sync of a fresh server)."""
    await run_in_threadpool(_warm)
    yield


def _metrics_endpoint(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return endpoint


def create_metrics_app(hooks: Starlette) -> Starlette:
    """GET /metrics of the hook service `hooks`, and nothing else."""
    metrics: Metrics = hooks.state.metrics
    return Starlette(routes=[Route("/metrics", _metrics_endpoint(metrics), methods=["GET"])])
