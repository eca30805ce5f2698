"""Simulate Calico BGP route propagation (BIRD route reflection) to prove a topology routes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from hooks.propagation import Core, evaluate, sweep
from hooks.sessions import SimNode, build_graph, read_peers, session_stats

__all__ = [
    "VerifyReport",
    "format_report",
    "pair_failure_promised",
    "promises_line",
    "verify",
]


@dataclass(frozen=True)
class VerifyReport:
    """What the simulation found; "a -> b" in examples means node a has no route to node b."""

    nodes: int
    reflectors: int
    bgp_peers: int
    mesh: bool
    sessions_total: int
    sessions_per_node_max: int
    sessions_per_node_mean: float
    clients_per_rr_max: int
    clients_per_rr_mean: float
    sessions_per_rr_max: int
    reachable: bool
    unreachable_pairs: int
    unreachable_examples: tuple[str, ...]
    single_failure_ok: bool | None
    single_failure_examples: tuple[str, ...]
    pair_failure_ok: bool | None
    pair_failure_examples: tuple[str, ...]
    skipped_peers: tuple[str, ...]
    # What the topology that made the plan promises (None: not known, every check counts).
    topology: str | None = None
    pair_failure_promised: bool | None = None

    @property
    def ok(self) -> bool:
        """Every check that was asked for holds, pair failures only where they are promised."""
        return (
            self.reachable
            and self.single_failure_ok is not False
            and (self.pair_failure_ok is not False or self.pair_failure_promised is False)
        )

    def with_promises(self, topology: str, groups: Iterable[Mapping[str, Any]]) -> VerifyReport:
        """This report judged by what `topology` promises for a plan with these status groups."""
        return replace(
            self, topology=topology, pair_failure_promised=pair_failure_promised(topology, groups)
        )

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"ok": self.ok}
        for field in fields(self):
            value = getattr(self, field.name)
            result[field.name] = list(value) if isinstance(value, tuple) else value
        return result


def pair_failure_promised(topology: str, groups: Iterable[Mapping[str, Any]]) -> bool:
    """Every topology promises reachability and any single RR failure; only multi, with at least
    three RRs in every group (peersPerNode >= 3), also promises any two RRs failing at once."""
    sizes = [len(group.get("reflectors", ())) for group in groups]
    return topology == "multi" and bool(sizes) and min(sizes) >= 3


def promises_line(report: VerifyReport) -> str | None:
    if report.topology is None:
        return None
    pairs = "any two RRs failing at once" if report.pair_failure_promised else None
    promised = ["every node reaches every other", "any single RR failure", *filter(None, [pairs])]
    line = f"{report.topology} promises: {'; '.join(promised)}"
    return line if pairs else line + " (not RR pairs)"


def verify(
    nodes: Iterable[SimNode],
    peers: Iterable[Mapping[str, Any]],
    *,
    mesh: bool = False,
    failures: bool = True,
    pairs: bool = False,
    max_examples: int = 5,
) -> VerifyReport:
    """Simulate route propagation for these nodes and BGPPeers; optionally with RRs failing."""
    peerings, skipped, peer_count = read_peers(peers)
    graph = build_graph(nodes, peerings, mesh)
    stats = session_stats(graph)
    core = Core(graph)
    outcome = evaluate(core, frozenset(), max_examples)
    single_ok: bool | None = None
    single_examples: tuple[str, ...] = ()
    if failures:
        single_ok, single_examples = sweep(core, 1, max_examples)
    pair_ok: bool | None = None
    pair_examples: tuple[str, ...] = ()
    if pairs:
        pair_ok, pair_examples = sweep(core, 2, max_examples)
    return VerifyReport(
        nodes=len(graph.names),
        reflectors=len(core.nodes),
        bgp_peers=peer_count,
        mesh=mesh,
        sessions_total=stats.total,
        sessions_per_node_max=stats.per_node_max,
        sessions_per_node_mean=stats.per_node_mean,
        clients_per_rr_max=stats.clients_per_rr_max,
        clients_per_rr_mean=stats.clients_per_rr_mean,
        sessions_per_rr_max=stats.per_rr_max,
        reachable=outcome.unreachable == 0,
        unreachable_pairs=outcome.unreachable,
        unreachable_examples=outcome.examples,
        single_failure_ok=single_ok,
        single_failure_examples=single_examples,
        pair_failure_ok=pair_ok,
        pair_failure_examples=pair_examples,
        skipped_peers=tuple(skipped),
    )


def _check_line(
    title: str, ok: bool | None, examples: tuple[str, ...], checked: int, unpromised: str = ""
) -> str:
    if ok is None:
        return f"{title}: not checked"
    if ok:
        return f"{title}: tolerated ({checked} checked)"
    if unpromised:
        return f"{title}: cuts nodes off (not promised by {unpromised}), e.g. " + "; ".join(
            examples
        )
    return f"{title}: BREAKS ROUTING, e.g. " + "; ".join(examples)


def format_report(report: VerifyReport) -> str:
    """A few lines for people: the verdict, the sessions, each check and its first failures."""
    r = report.reflectors
    lines = [
        f"verify: {'OK' if report.ok else 'FAILED'}",
        f"nodes {report.nodes} ({r} route reflectors), BGPPeers {report.bgp_peers}"
        f" ({len(report.skipped_peers)} skipped),"
        f" node-to-node mesh {'on' if report.mesh else 'off'}",
        f"sessions {report.sessions_total}; per node max {report.sessions_per_node_max},"
        f" mean {report.sessions_per_node_mean}; per RR max {report.sessions_per_rr_max},"
        f" clients per RR max {report.clients_per_rr_max}, mean {report.clients_per_rr_mean}",
        "reachability: every node learns every other node's route"
        if report.reachable
        else f"reachability: {report.unreachable_pairs} pairs without a route"
        f" (a -> b: a has no route to b), e.g. " + ", ".join(report.unreachable_examples),
        _check_line(
            "single RR failure", report.single_failure_ok, report.single_failure_examples, r
        ),
        _check_line(
            "RR pair failure",
            report.pair_failure_ok,
            report.pair_failure_examples,
            r * (r - 1) // 2,
            report.topology or "" if report.pair_failure_promised is False else "",
        ),
    ]
    promises = promises_line(report)
    if promises is not None:
        lines.insert(1, promises)
    lines.extend(f"skipped BGPPeer {line}" for line in report.skipped_peers)
    return "\n".join(lines)
