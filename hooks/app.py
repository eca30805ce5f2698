"""Starlette app: routes, error mapping, request metrics, logs; thin around the handlers. What
a request may hold is in intake.py, what each hook does with it in handlers.py, what the
service writes in writers.py."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hooks import wire
from hooks.handlers import Answer, Body, Handler, Handlers, MeshRestorer, Releaser
from hooks.intake import BodyTimeout, Busy, Limits, TooLarge, read_body
from hooks.metrics import DEFAULT_MAX_OWNERS, DEFAULT_MAX_ZONES, Metrics
from hooks.reconcile import Applier, Clock, LegacyRemover, MeshSwitcher, ReportReader
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
    handlers = Handlers(
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


def _routes(handlers: Handlers, limits: Limits, metrics: Metrics) -> list[Route]:
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
        buffer: bytearray | None = None

        async def finish(elapsed: float) -> None:
            """Work left after the answer (its slot still held), then the body's buffer (kept
            for a later request once nothing reads it), the slot, the body's bytes, the metrics
            and the log line."""
            nonlocal after, buffer
            try:
                if after is not None:
                    fields.update(await run_in_threadpool(after))
            finally:
                after = None  # what it held of the request goes before the buffer is given
                if buffer is not None:
                    limits.buffers.give(buffer)
                    buffer = None
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
            if threaded:
                buffer = limits.buffers.take()
                fields["body_buffer"] = "new" if buffer is None else "kept"
            body = await read_body(
                request,
                limits.body,
                limits.budget,
                limits.idle_timeout,
                limits.body_timeout,
                buffer,
            )
            if threaded:
                buffer = body
            received = time.perf_counter()
            metrics.request_bytes.labels(name).observe(len(body))
            answer = await run_in_threadpool(_paused, handler, body) if threaded else handler(body)
            if buffer is not None and limits.buffers.give(buffer):
                buffer = None  # decoded from it, the answer no longer reads it (a next request may)
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
