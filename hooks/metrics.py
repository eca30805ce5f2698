"""Prometheus metrics of the hook service, on a registry of its own (one per app).

Label values come only from topologies seen in syncs, and they are bounded: at most
`max_owners` owners and `max_zones` zone series in all; an owner not synced for `owner_idle`
is forgotten (its series removed), a zone gone from its owner's latest sync loses its series,
and whatever did not fit is counted in `rr_metrics_rejected_total{kind}` instead. A forged
parent or zone name therefore never creates series for good."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from hooks.model import Plan, ReflectorState
from hooks.paths import PathReport
from hooks.stamps import parse_stamp

DEFAULT_MAX_OWNERS = 16
DEFAULT_MAX_ZONES = 512
DEFAULT_OWNER_IDLE = timedelta(hours=1)  # Metacontroller resyncs a real topology every minute
CONDITION_STATUSES = ("True", "False", "Unknown")
TRANSITION_STATES = (ReflectorState.PENDING, ReflectorState.DRAINING)
# The targets every topology is held to (README, "Topologies"); a plan states a tighter bound.
PATHS_PER_PREFIX_BOUND = {"client": 16, "reflector": 32}


def stated_paths_bound(plan: Plan) -> dict[str, int]:
    """The bound the topologies state for this plan (README, "Topologies"): a client holds at most
    one path per RR of its group, an RR at most one per RR sharing its cluster ID (its plane's hub
    brings one, each sibling one); never above the targets. Draining RRs are counted, so a
    transition's extra sessions do not read as a breach."""
    clusters: dict[str, int] = {}
    for rr in plan.reflectors:
        clusters[rr.cluster_id] = clusters.get(rr.cluster_id, 0) + 1
    client = max((len(group.reflectors) for group in plan.groups), default=0)
    return {
        "client": min(client, PATHS_PER_PREFIX_BOUND["client"]) or PATHS_PER_PREFIX_BOUND["client"],
        "reflector": min(max(clusters.values(), default=0), PATHS_PER_PREFIX_BOUND["reflector"])
        or PATHS_PER_PREFIX_BOUND["reflector"],
    }


@dataclass
class _Owner:
    seen: datetime
    zones: frozenset[str] = frozenset()
    conditions: frozenset[str] = frozenset()
    transitions: frozenset[str] = frozenset()
    paths: bool = False


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    max_owners: int = DEFAULT_MAX_OWNERS
    max_zones: int = DEFAULT_MAX_ZONES
    owner_idle: timedelta = DEFAULT_OWNER_IDLE
    owners: dict[str, _Owner] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # process_* (CPU, resident memory, open fds) and python_info, as the default registry has.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._register_requests()
        self._register_bounds()
        self._register_zones()
        self._register_reflectors()
        self._register_routes()
        self._register_datastore()

    def _gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def _register_requests(self) -> None:
        """The hook requests: how long, how large, how they failed, node syncs skipped."""
        self.duration = Histogram(
            "rr_hook_duration_seconds",
            "Time to answer a hook request",
            ["hook"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.request_bytes = Histogram(
            "rr_hook_request_bytes",
            "Size of hook request bodies",
            ["hook"],
            registry=self.registry,
            buckets=(1e3, 1e4, 1e5, 1e6, 1e7, 5e7, 1e8, 5e8),
        )
        self.errors = self._counter(
            "rr_hook_errors_total", "Hook requests answered with an error", "hook", "reason"
        )
        self.node_sync_skipped = self._counter(
            "rr_node_sync_skipped_total",
            "Node syncs answered with no change because the information to act on was missing",
            "reason",
        )

    def _register_bounds(self) -> None:
        """The label bounds: owners with series, and what did not fit."""
        self.rejected = self._counter(
            "rr_metrics_rejected_total",
            "Owners or zones given no series because the label bounds were reached",
            "kind",
        )
        for kind in ("owner", "zone"):
            self.rejected.labels(kind)  # 0 from the start: a rate over it needs a first sample
        self.owners_tracked = Gauge(
            "rr_metrics_owners", "Owners that have series now", registry=self.registry
        )

    def _register_zones(self) -> None:
        """Per owner and zone: RRs planned and labelled, eligible nodes."""
        zoned = ("owner", "zone")
        self.expected = self._gauge("rr_zone_reflectors_expected", "RRs planned per zone", *zoned)
        self.actual = self._gauge("rr_zone_reflectors_actual", "RRs labelled per zone now", *zoned)
        self.eligible = self._gauge(
            "rr_zone_eligible_nodes", "Nodes eligible to be RRs per zone", *zoned
        )

    def _register_reflectors(self) -> None:
        """Per owner: plan and role changes, RRs in transition, conditions, BGPPeers."""
        self.plan_changes = self._counter(
            "rr_plan_changes_total", "Syncs whose RR set differed from the previous one", "owner"
        )
        self.role_changes = self._counter(
            "rr_role_changes_total",
            "Nodes that gained or lost the route reflector role (each change resets that"
            " node's BGP sessions for about 2 s)",
            "owner",
        )
        self.draining = self._gauge(
            "rr_reflectors_draining", "RRs kept while their replacement comes up", "owner"
        )
        self.pending = self._gauge(
            "rr_reflectors_pending",
            "RRs chosen whose sessions are not up yet (or whose wait has not passed)",
            "owner",
        )
        self.transition_started = self._gauge(
            "rr_reflector_transition_started_timestamp_seconds",
            "When the oldest RR still Pending or Draining entered that state (Unix time)",
            "owner",
            "state",
        )
        self.wait = self._gauge(
            "rr_reflector_wait_seconds",
            "waitSeconds of the topology: how long a new RR waits for its sessions",
            "owner",
        )
        self.condition = self._gauge(
            "rr_condition",
            "1 for the status a condition of the topology has now, 0 for the others",
            "owner",
            "type",
            "status",
        )
        self.bgp_peers = self._gauge("rr_bgp_peers", "BGPPeer objects the plan renders", "owner")

    def _register_routes(self) -> None:
        """Per owner: the route counts of the plan (hooks/paths.py) and their stated bounds."""
        self.paths = self._gauge(
            "rr_paths_per_prefix",
            "Add-path routes a node holds per remote prefix (a lower bound when exploded)",
            "owner",
            "role",
            "stat",
        )
        self.paths_bound = self._gauge(
            "rr_paths_per_prefix_bound",
            "The stated bound on add-path routes per remote prefix a node of this role holds",
            "owner",
            "role",
        )
        self.routes = self._gauge(
            "rr_routes_per_node",
            "BGP routes a node holds for other nodes' prefixes (a lower bound when exploded)",
            "owner",
            "stat",
        )
        self.paths_exploded = self._gauge(
            "rr_paths_exploded",
            "1 when the route count was stopped at its cap (the figures are lower bounds)",
            "owner",
        )

    def _register_datastore(self) -> None:
        """Per owner, etcdv3 mode: what the apply found in etcd that is not its own."""
        self.foreign_objects = self._gauge(
            "rr_datastore_foreign_bgppeers",
            "BGPPeers in etcd that no topology of this service wrote (left alone)",
            "owner",
        )
        self.orphaned_owners = self._gauge(
            "rr_datastore_orphaned_owners",
            "Owners with objects in etcd that no sync shows as a live topology (swept after"
            " a grace period)",
            "owner",
        )

    # -- bounds ---------------------------------------------------------------------------------

    def admit(self, owner: str, now: datetime) -> bool:
        """Whether `owner` may have series: known already, or a free slot (after forgetting the
        idle ones). A refusal is counted."""
        for idle in [o for o, s in self.owners.items() if now - s.seen > self.owner_idle]:
            self.forget(idle)
        if owner in self.owners:
            self.owners[owner].seen = now
            return True
        if len(self.owners) >= self.max_owners:
            self.rejected.labels("owner").inc()
            return False
        self.owners[owner] = _Owner(seen=now)
        self.owners_tracked.set(len(self.owners))
        return True

    def forget(self, owner: str) -> None:
        """Remove every series of `owner` (it disappeared, or was idle too long)."""
        state = self.owners.pop(owner, None)
        if state is None:
            return
        for zone in state.zones:
            for gauge in (self.expected, self.actual, self.eligible):
                _discard(gauge, owner, zone)
        for labelled in (
            self.plan_changes,
            self.role_changes,
            self.draining,
            self.pending,
            self.wait,
            self.bgp_peers,
            self.foreign_objects,
            self.orphaned_owners,
        ):
            _discard(labelled, owner)
        for key in state.conditions:
            for status in CONDITION_STATUSES:
                _discard(self.condition, owner, key, status)
        for key in state.transitions:
            _discard(self.transition_started, owner, key)
        if state.paths:
            for role in PATHS_PER_PREFIX_BOUND:
                _discard(self.paths_bound, owner, role)
                for stat in ("max", "mean"):
                    _discard(self.paths, owner, role, stat)
            for stat in ("max", "mean"):
                _discard(self.routes, owner, stat)
            _discard(self.paths_exploded, owner)
        self.owners_tracked.set(len(self.owners))

    def _zone_room(self, owner: str) -> int:
        return self.max_zones - sum(len(s.zones) for o, s in self.owners.items() if o != owner)

    # -- observations ---------------------------------------------------------------------------

    def observe_plan(
        self,
        owner: str,
        plan: Plan,
        changed: bool,
        bgp_peers: int,
        wait_seconds: int,
        role_changes: int = 0,
    ) -> None:
        """Per-zone figures (zones gone from this plan lose their series), RR states, peers.
        Call after `admit(owner)` returned True."""
        state = self.owners[owner]
        room = self._zone_room(owner)
        kept = plan.zones[: max(room, 0)]
        if len(kept) < len(plan.zones):
            self.rejected.labels("zone").inc(len(plan.zones) - len(kept))
        names = frozenset(zone.name for zone in kept)
        for gone in state.zones - names:
            for gauge in (self.expected, self.actual, self.eligible):
                _discard(gauge, owner, gone)
        state.zones = names
        for zone in kept:
            self.expected.labels(owner, zone.name).set(zone.expected)
            self.actual.labels(owner, zone.name).set(zone.actual)
            self.eligible.labels(owner, zone.name).set(zone.eligible)
        if changed:
            self.plan_changes.labels(owner).inc()
        else:
            self.plan_changes.labels(owner)  # the series exists from the first sync
        self.role_changes.labels(owner).inc(role_changes)
        states = [rr.state for rr in plan.reflectors]
        self.draining.labels(owner).set(states.count(ReflectorState.DRAINING))
        self.pending.labels(owner).set(states.count(ReflectorState.PENDING))
        self.wait.labels(owner).set(wait_seconds)
        started: dict[str, float] = {}
        for rr in plan.reflectors:
            when = parse_stamp(rr.since) if rr.state in TRANSITION_STATES else None
            if when is not None:
                key = str(rr.state)
                started[key] = min(started.get(key, when.timestamp()), when.timestamp())
        for gone in state.transitions - started.keys():
            _discard(self.transition_started, owner, gone)
        for key, stamp in started.items():
            self.transition_started.labels(owner, key).set(stamp)
        state.transitions = frozenset(started)
        self.bgp_peers.labels(owner).set(bgp_peers)

    def observe_conditions(self, owner: str, conditions: Iterable[Mapping[str, object]]) -> None:
        """rr_condition{type,status} from the conditions written to the topology's status."""
        state = self.owners[owner]
        now: dict[str, str] = {}
        for condition in conditions:
            key, status = condition.get("type"), condition.get("status")
            if isinstance(key, str) and status in CONDITION_STATUSES:
                now[key] = str(status)
        for gone in state.conditions - now.keys():
            for status in CONDITION_STATUSES:
                _discard(self.condition, owner, gone, status)
        for key, current in now.items():
            for status in CONDITION_STATUSES:
                self.condition.labels(owner, key, status).set(1 if status == current else 0)
        state.conditions = frozenset(now)

    def observe_datastore(self, owner: str, foreign: int, orphaned: int) -> None:
        """What the etcd apply of `owner`'s sync found; call after `admit(owner)` returned True."""
        self.foreign_objects.labels(owner).set(foreign)
        self.orphaned_owners.labels(owner).set(orphaned)

    def observe_paths(self, owner: str, report: PathReport, plan: Plan) -> None:
        bound = stated_paths_bound(plan)
        for role, top, mean in (
            ("client", report.paths_client_max, report.paths_client_mean),
            ("reflector", report.paths_rr_max, report.paths_rr_mean),
        ):
            self.paths.labels(owner, role, "max").set(top)
            self.paths.labels(owner, role, "mean").set(mean)
            self.paths_bound.labels(owner, role).set(bound[role])
        self.routes.labels(owner, "max").set(report.routes_per_node_max)
        self.routes.labels(owner, "mean").set(report.routes_per_node_mean)
        self.paths_exploded.labels(owner).set(1 if report.exploded else 0)
        self.owners[owner].paths = True


def _discard(metric: Gauge | Counter, *labels: str) -> None:
    """Remove one series if it exists (prometheus_client raises KeyError otherwise)."""
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
