"""The hooks behind the routes: a request body in, the encoded answer and its log fields out.

A topology sync goes through `reconcile` with the service's etcd applier, mesh switch, legacy
remover and session reports; each sync's metrics and route counts are observed here. No web
framework: app.py runs these in its routes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from hooks import controllers, wire
from hooks.controllers import TopologyDecision
from hooks.metrics import Metrics
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
from hooks.writers import Etcd

Releaser = Callable[[str], None]  # removes a deleted topology's objects from the datastore
MeshRestorer = Callable[[str], bool]  # KDD: the mesh back on if that topology switched it off
Body = bytes | bytearray


class Answer(NamedTuple):
    """A handler's answer and its log fields; `after`, when set, is work left once the answer is
    sent (in the thread pool, the request's sync slot still held), returning more log fields."""

    body: bytes
    fields: dict[str, Any]
    after: Callable[[], dict[str, Any]] | None = None


Handler = Callable[[Body], Answer]


def _ms(seconds: float) -> float:
    """Milliseconds for a log field."""
    return round(seconds * 1e3, 3)


class Handlers:
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
        self.node_texts = wire.NodeTexts()  # the last large request's Nodes, not decoded again

    def topology_sync(self, body: Body) -> Answer:
        """The request's Nodes are let go of once the answer is sent, its slot held till then:
        those `node_texts` does not keep (a body decoded whole) cost ~0.1 s to free at 20,000;
        kept ones stay for the next sync."""
        began, cpu = time.perf_counter(), time.thread_time()
        request = wire.decode_topology_request(body, self.node_texts)
        decoded, decode_cpu = time.perf_counter(), time.thread_time() - cpu
        try:
            answer, fields = self.sync_decoded(request)
        except BaseException:
            wire.release(request)
            raise

        held = [request]  # let go of by `release`: a thread that ran it may keep it a while

        def release() -> dict[str, Any]:
            freeing = time.perf_counter()
            wire.release(held.pop())  # once nothing else holds the Nodes (see wire.release)
            return {"release_ms": _ms(time.perf_counter() - freeing)}

        spent = {
            "decode_ms": _ms(decoded - began),
            "decode_cpu_ms": _ms(decode_cpu),
            "nodes_kept": self.node_texts.reused,
        }
        return Answer(answer, fields | spent, release)

    def sync_decoded(self, request: wire.TopologySyncRequest) -> tuple[bytes, dict[str, Any]]:
        decoded, cpu = time.perf_counter(), time.thread_time()
        done = reconcile(
            request,
            self.env,
            self.clock,
            self.applier,
            self.mesh_switch,
            self.legacy_remover,
            self.reports,
        )
        planned, plan_cpu = time.perf_counter(), time.thread_time() - cpu
        fields = self.observe(done, request)
        counted = time.perf_counter()
        answer = wire.encode(done.response)
        return answer, fields | {
            "plan_ms": _ms(planned - decoded),
            "plan_cpu_ms": _ms(plan_cpu),
            "metrics_ms": _ms(counted - planned),
            "encode_ms": _ms(time.perf_counter() - counted),
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
        request = wire.decode_topology_request(body, self.node_texts)
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
