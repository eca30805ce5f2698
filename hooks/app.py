"""Starlette app: routes, body limits, error mapping, metrics, logs. Thin around controllers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
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
from hooks.reconcile import (
    Applier,
    Clock,
    LegacyRemover,
    MeshSwitcher,
    Reconciled,
    mesh_waiting,
    reconcile,
)
from hooks.server import byte_count, count, seconds

log = logging.getLogger("hooks")
DEFAULT_MAX_BODY = 512 * 1024 * 1024
DEFAULT_INFLIGHT_BODY = 1024 * 1024 * 1024
DEFAULT_BODY_IDLE_TIMEOUT = 30.0
DEFAULT_BODY_TIMEOUT = 300.0
DEFAULT_SYNC_SLOTS = 2
DEFAULT_SYNC_QUEUE = 16
RETRY_AFTER_SECONDS = 5
PREALLOCATE = 1024 * 1024
LOG_TEXT = 500  # characters of an error or a name kept in a log line
Releaser = Callable[[str], None]  # removes a deleted topology's objects from the datastore
Body = bytes | bytearray


class TooLarge(Exception):
    pass


class Unavailable(Exception):
    """A datastore the plan must be written to did not answer: 503, Metacontroller retries.

    `reason` is what the caller is told (short, no endpoint, no exception text); `detail` goes
    to the log only."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


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


class BodyTimeout(Exception):
    pass


class Busy(Exception):
    """Other requests hold the byte budget for bodies in memory: 503, Metacontroller retries."""


class ByteBudget:
    """Bytes of request bodies held in memory at once, across requests.

    Taken as bytes arrive (a client that declares 500 MB and stalls holds what it sent, not
    what it declared) and given back when its request is answered. Only the event loop thread
    touches it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.total:
            raise Busy(
                f"request bodies in memory would exceed MAX_INFLIGHT_BODY_BYTES ({self.total})"
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


class SyncSlots:
    """Topology requests read and computed at once (`running`), and how many may wait their turn
    (`queued`, first come first served); one more is Busy (503). A slot is taken before the body
    is read: a waiting request's body stays in its socket (uvicorn stops reading past 64 KiB), so
    memory grows with `running` bodies and their decoding, not with how many clients send at once.

    Not bound to an event loop until used (tests run one app under several loops); only the
    event loop thread touches it."""

    def __init__(self, running: int, queued: int) -> None:
        self.running_max = running
        self.queued_max = queued
        self.running = 0
        self._turns: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return sum(1 for turn in self._turns if not turn.done())

    async def take(self) -> None:
        if self.running < self.running_max and not self.queued:
            self.running += 1
            return
        if self.queued >= self.queued_max:
            raise Busy(
                f"{self.running_max} topology requests are being computed and {self.queued_max}"
                " wait (MAX_CONCURRENT_SYNCS, MAX_QUEUED_SYNCS)"
            )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.give()  # handed a slot as we were cancelled: pass it on
            elif turn in self._turns:
                self._turns.remove(turn)
            raise

    def give(self) -> None:
        """A running request is done: its slot goes to the first still waiting, if any."""
        while self._turns:
            turn = self._turns.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1


async def read_body(
    request: Request,
    limit: int,
    budget: ByteBudget | None = None,
    idle_timeout: float | None = None,
    total_timeout: float | None = None,
) -> bytearray:
    """The body, refused (413) before it is read whole when it is over `limit` bytes.

    Memory grows with the bytes that arrived, never with the declared Content-Length: at most
    PREALLOCATE bytes are reserved up front. Each chunk must arrive within `idle_timeout` and the
    whole body within `total_timeout` (BodyTimeout, 408): a Content-Length longer than the body
    ends there. Every byte held is taken from `budget` (Busy when it is spent) and counted in
    `request.state.body_bytes`: the caller gives that back once the request is answered."""
    declared = request.headers.get("content-length")
    size = int(declared) if declared is not None and declared.isdigit() else None
    if size is not None and size > limit:
        raise TooLarge(f"request body of {size} bytes is over MAX_BODY_BYTES ({limit})")
    buffer = bytearray(min(size, PREALLOCATE)) if size is not None else bytearray()
    request.state.body_bytes = 0
    loop = asyncio.get_running_loop()
    deadline = None if total_timeout is None else loop.time() + total_timeout
    filled = 0
    stream = request.stream().__aiter__()
    while True:
        wait = idle_timeout
        if deadline is not None:
            left = deadline - loop.time()
            wait = left if wait is None else min(wait, left)
        try:
            async with asyncio.timeout(wait):
                chunk = await anext(stream)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise BodyTimeout(f"request body not received in time ({filled} bytes read)") from None
        end = filled + len(chunk)
        if end > limit:
            raise TooLarge(f"request body is over MAX_BODY_BYTES ({limit})")
        if budget is not None and end > request.state.body_bytes:
            budget.take(end - request.state.body_bytes)
            request.state.body_bytes = end
        if end <= len(buffer):
            buffer[filled:end] = chunk
        else:
            del buffer[filled:]
            buffer += chunk
        filled = end
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
    serve_metrics: bool = True,
    releaser: Releaser | None = None,
) -> Starlette:
    """The hook service. `environ` defaults to the process environment, read once here.

    With `serve_metrics` false /metrics is left to `create_metrics_app` on a port of its own, so
    a NetworkPolicy can admit the scraper to the metrics and nothing else."""
    env = dict(os.environ if environ is None else environ)
    metrics = Metrics(
        max_owners=int(env.get("METRICS_MAX_OWNERS", DEFAULT_MAX_OWNERS)),
        max_zones=int(env.get("METRICS_MAX_ZONES", DEFAULT_MAX_ZONES)),
    )
    etcd = _Etcd(env)
    handlers = _Handlers(
        env,
        clock,
        metrics,
        applier=applier or etcd.apply,
        mesh_switch=mesh_switch or _mesh_switch(env, etcd),
        legacy_remover=legacy_remover or _legacy_remover(env),
        releaser=releaser or etcd.release,
        etcd=etcd,
    )
    routes = _routes(handlers, _Limits.from_environ(env), metrics)
    if serve_metrics:
        routes.append(Route("/metrics", _metrics_endpoint(metrics), methods=["GET"]))
    app = Starlette(routes=routes, lifespan=_warmed)
    app.state.metrics = metrics
    return app


Handler = Callable[[Body], tuple[bytes, dict[str, Any]]]  # body → answer, log fields


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
        etcd: _Etcd,
    ) -> None:
        self.env = env
        self.clock = clock
        self.metrics = metrics
        self.applier = applier
        self.mesh_switch = mesh_switch
        self.legacy_remover = legacy_remover
        self.releaser = releaser
        self.etcd = etcd
        self.last_plans: dict[str, tuple[str, ...]] = {}
        self.routing_digests: dict[str, str] = {}  # owner → what its route counts were made from

    def topology_sync(self, body: Body) -> tuple[bytes, dict[str, Any]]:
        began = time.perf_counter()
        request = wire.decode_topology_request(body)
        decoded = time.perf_counter()
        try:
            answer, fields = self.sync_decoded(request)
        finally:
            freeing = time.perf_counter()
            wire.release(request)  # once nothing else holds the Nodes (see wire.release)
        return answer, fields | {
            "decode_ms": round((decoded - began) * 1e3, 3),
            "release_ms": round((time.perf_counter() - freeing) * 1e3, 3),
        }

    def sync_decoded(self, request: wire.TopologySyncRequest) -> tuple[bytes, dict[str, Any]]:
        decoded = time.perf_counter()
        done = reconcile(
            request, self.env, self.clock, self.applier, self.mesh_switch, self.legacy_remover
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

    def node_sync(self, body: Body) -> tuple[bytes, dict[str, Any]]:
        request = wire.decode(body, wire.NodeSyncRequest)
        decision = controllers.decide_node(request, self.env)
        response = decision.response
        changes = response.labels | response.annotations
        fields: dict[str, Any] = {"parent": request.object.metadata.name, "changes": len(changes)}
        if decision.skipped is not None:
            self.metrics.node_sync_skipped.labels(decision.skipped).inc()
            fields |= {"skipped": decision.skipped, "message": decision.message}
        return wire.encode(response), fields

    def topology_finalize(self, body: Body) -> tuple[bytes, dict[str, Any]]:
        request = wire.decode_topology_request(body)
        try:
            name = request.parent.metadata.name
            in_etcd = controllers.datastore_of(request.parent.spec, self.env) == "etcdv3"
            # The mesh goes back on before any key is released (etcd down: 503, keys stay).
            restored = in_etcd and self.etcd.mesh_restore(name)
            hold = controllers.MESH_RESTORED if restored else None
            response = controllers.topology_finalize(request, self.env, self.clock(), hold)
            if response.finalized and in_etcd:
                self.releaser(name)  # etcd down: 503, the finalizer stays
            fields = {"parent": name, "finalized": response.finalized}
            return wire.encode(response), fields | ({"mesh_restored": True} if hold else {})
        finally:
            wire.release(request)

    def topology_customize(self, body: Body) -> tuple[bytes, dict[str, Any]]:
        request = wire.decode(body, wire.CustomizeRequest)
        return wire.encode(controllers.topology_customize(request)), {}

    def node_customize(self, body: Body) -> tuple[bytes, dict[str, Any]]:
        request = wire.decode(body, wire.CustomizeRequest)
        return wire.encode(controllers.node_customize(request)), {}


@dataclass(frozen=True)
class _Limits:
    """What one request may hold: its body's size and time, the bodies in memory at once, the
    topology requests computed and queued at once."""

    body: int
    budget: ByteBudget
    idle_timeout: float
    body_timeout: float
    slots: SyncSlots

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> _Limits:
        return cls(
            body=int(env.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY)),
            budget=ByteBudget(byte_count(env, "MAX_INFLIGHT_BODY_BYTES", DEFAULT_INFLIGHT_BODY)),
            idle_timeout=seconds(env, "BODY_IDLE_TIMEOUT_SECONDS", DEFAULT_BODY_IDLE_TIMEOUT),
            body_timeout=seconds(env, "BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT),
            slots=SyncSlots(
                count(env, "MAX_CONCURRENT_SYNCS", DEFAULT_SYNC_SLOTS),
                count(env, "MAX_QUEUED_SYNCS", DEFAULT_SYNC_QUEUE, least=0),
            ),
        )


def _routes(handlers: _Handlers, limits: _Limits, metrics: Metrics) -> list[Route]:
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
    name: str, handler: Handler, threaded: bool, limits: _Limits, metrics: Metrics
) -> Callable[[Request], Awaitable[Response]]:
    """One hook's route: a slot (threaded ones), the body within its limits, the handler (in
    the thread pool when threaded), every failure mapped to its status, a metric and a log line."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        outcome = "ok"
        fields: dict[str, Any] = {}
        slotted = False
        body: Body = b""
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
            answer, fields = (
                await run_in_threadpool(_paused, handler, body) if threaded else handler(body)
            )
            fields |= {
                "wait_ms": round((waited - started) * 1e3, 3),
                "receive_ms": round((received - waited) * 1e3, 3),
            }
            return Response(answer, media_type="application/json")
        except Exception as error:
            outcome, response = _failure(name, error, body, fields)
            return response
        finally:
            if slotted:
                limits.slots.give()
            limits.budget.give(getattr(request.state, "body_bytes", 0))
            elapsed = time.perf_counter() - started
            metrics.duration.labels(name).observe(elapsed)
            if outcome != "ok":
                metrics.errors.labels(name, outcome).inc()
            _log(name, outcome, elapsed, fields)

    return endpoint


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


class _Etcd:
    """The etcd datastore of the hook service: applies a decision, releases a deleted topology's
    objects. The connection is made on first use; every etcd failure is a 503 (retried)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._applier: Any = None

    def apply(self, decision: TopologyDecision) -> Applied:
        from hooks.datastores.etcd_changes import desired_state

        desired = desired_state(decision)  # a parent Metacontroller did not send: 400, no write
        result = self._run(lambda applier: applier.apply(desired))
        return Applied(
            datastore="etcdv3",
            revision=result.revision,
            writes=result.writes,
            peers=result.peers,
            missing_nodes=tuple(result.missing_nodes),
            foreign_peers=tuple(result.foreign_conflicts),
            foreign_count=result.foreign_peers,
            orphaned=tuple(
                {
                    "owner": o.owner,
                    "uid": o.uid,
                    "bgpPeers": o.peers,
                    "clusterIDs": o.cluster_ids,
                    "unseenSince": o.unseen_since,
                    "removed": o.swept,
                }
                for o in result.orphans
            ),
        )

    def release(self, owner: str) -> None:
        from hooks.calico import label_value

        self._run(lambda applier: applier.release(label_value(owner)))

    def mesh_off(self, decision: TopologyDecision) -> None:
        from hooks.calico import label_value

        owner, uid = label_value(decision.owner), decision.owner_uid
        self._run(lambda applier: applier.mesh_off(owner, uid))

    def mesh_restore(self, owner: str) -> bool:
        """Turn the mesh back on if `owner` switched it off; True when it was written."""
        from hooks.calico import label_value

        restored: bool = self._run(lambda applier: applier.mesh_restore(label_value(owner)))
        return restored

    def _run(self, action: Callable[[Any], Any]) -> Any:
        from hooks.datastores.etcd import (
            EtcdApplier,
            EtcdConflict,
            EtcdError,
            EtcdSettings,
            EtcdUnavailable,
        )

        if self._applier is None:
            try:
                self._applier = EtcdApplier(EtcdSettings.from_environ(self._env))
            except ValueError as error:
                raise Unavailable("etcd settings are invalid", str(error)) from None
        try:
            return action(self._applier)
        except EtcdUnavailable as error:
            raise Unavailable("etcd unavailable, will retry", str(error)) from None
        except EtcdConflict as error:
            raise Unavailable("etcd keys kept changing under us, will retry", str(error)) from None
        except EtcdError as error:
            raise Unavailable("etcd refused the plan", str(error)) from None


def _mesh_switch(env: Mapping[str, str], etcd: _Etcd) -> MeshSwitcher:
    """Turn the node-to-node mesh off (reconcile calls it once the decision proves the RRs carry
    every session), in the datastore Calico reads: etcd in etcdv3 mode, else the Kubernetes API.

    A failure is reported as a condition, never as a non-200: BGPPeer updates must go on."""
    state: dict[str, Any] = {}

    def switch(decision: TopologyDecision) -> Condition:
        if not decision.mesh_can_go:  # reconcile asks only then; never act on less, whoever asks
            return mesh_waiting(decision)
        from hooks.datastores.kubernetes import MeshSwitch, MeshSwitchError

        in_etcd = decision.settings is not None and decision.settings.datastore == "etcdv3"
        try:
            if in_etcd:
                etcd.mesh_off(decision)
            else:
                if "switch" not in state:
                    state["switch"] = MeshSwitch.from_environ(env)
                state["switch"].disable()
        except (MeshSwitchError, Unavailable) as error:
            said = error.detail if isinstance(error, Unavailable) else str(error)
            log.warning(json.dumps({"mesh_switch": "failed", "error": said}))
            return Condition("NodeToNodeMesh", "True", "SwitchFailed", said)
        return Condition(
            "NodeToNodeMesh",
            "False",
            "Disabled",
            "node-to-node mesh is off in BGPConfiguration default"
            + (" (etcd)" if in_etcd else "")
            + "; the RRs carry every route",
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
