"""Prometheus metrics of the hook service, on a registry of its own (one per app)."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        # process_* (CPU, resident memory, open fds) and python_info, as the default registry has.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.duration = Histogram(
            "rr_hook_duration_seconds",
            "Time to answer a hook request",
            ["hook"],
            registry=r,
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.request_bytes = Histogram(
            "rr_hook_request_bytes",
            "Size of hook request bodies",
            ["hook"],
            registry=r,
            buckets=(1e3, 1e4, 1e5, 1e6, 1e7, 5e7, 1e8, 5e8),
        )
        self.errors = Counter(
            "rr_hook_errors_total",
            "Hook requests answered with an error",
            ["hook", "reason"],
            registry=r,
        )
        self.expected = Gauge(
            "rr_zone_reflectors_expected", "RRs planned per zone", ["topology", "zone"], registry=r
        )
        self.actual = Gauge(
            "rr_zone_reflectors_actual",
            "RRs labelled per zone now",
            ["topology", "zone"],
            registry=r,
        )
        self.eligible = Gauge(
            "rr_zone_eligible_nodes",
            "Nodes eligible to be RRs per zone",
            ["topology", "zone"],
            registry=r,
        )
        self.plan_changes = Counter(
            "rr_plan_changes_total",
            "Syncs whose RR set differed from the previous one",
            ["topology"],
            registry=r,
        )
        self.draining = Gauge(
            "rr_reflectors_draining",
            "RRs kept while their replacement comes up",
            ["topology"],
            registry=r,
        )
        self.role_changes = Counter(
            "rr_role_changes_total",
            "Nodes that gained or lost the route reflector role (each change resets that"
            " node's BGP sessions for about 2 s)",
            ["owner"],
            registry=r,
        )
        self.node_sync_skipped = Counter(
            "rr_node_sync_skipped_total",
            "Node syncs answered with no change because the information to act on was missing",
            ["reason"],
            registry=r,
        )
        self.bgp_peers = Gauge(
            "rr_bgp_peers", "BGPPeer objects the plan renders", ["topology"], registry=r
        )

        self.paths = Gauge(
            "rr_paths_per_prefix",
            "Add-path routes a node holds per remote prefix (a lower bound when exploded)",
            ["owner", "role", "stat"],
            registry=r,
        )
        self.routes = Gauge(
            "rr_routes_per_node",
            "BGP routes a node holds for other nodes' prefixes (a lower bound when exploded)",
            ["owner", "stat"],
            registry=r,
        )
        self.paths_exploded = Gauge(
            "rr_paths_exploded",
            "1 when the route count was stopped at its cap (the figures are lower bounds)",
            ["owner"],
            registry=r,
        )

    def observe_paths(self, owner: str, report: PathReport) -> None:
        for role, top, mean in (
            ("client", report.paths_client_max, report.paths_client_mean),
            ("reflector", report.paths_rr_max, report.paths_rr_mean),
        ):
            self.paths.labels(owner, role, "max").set(top)
            self.paths.labels(owner, role, "mean").set(mean)
        self.routes.labels(owner, "max").set(report.routes_per_node_max)
        self.routes.labels(owner, "mean").set(report.routes_per_node_mean)
        self.paths_exploded.labels(owner).set(1 if report.exploded else 0)

    def observe_plan(
        self, owner: str, plan: Plan, changed: bool, bgp_peers: int, role_changes: int = 0
    ) -> None:
        for zone in plan.zones:
            self.expected.labels(owner, zone.name).set(zone.expected)
            self.actual.labels(owner, zone.name).set(zone.actual)
            self.eligible.labels(owner, zone.name).set(zone.eligible)
        if changed:
            self.plan_changes.labels(owner).inc()
        self.draining.labels(owner).set(
            sum(rr.state == ReflectorState.DRAINING for rr in plan.reflectors)
        )
        self.bgp_peers.labels(owner).set(bgp_peers)
        self.role_changes.labels(owner).inc(role_changes)
