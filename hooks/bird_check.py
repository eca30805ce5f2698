"""The plan checked on real BIRD: route counts next to the model's, all up and one RR stopped."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooks.bird import (
    FIRST_ADDRESS,
    BirdError,
    LabNode,
    protocol_name,
    render_lab,
    restarted_sessions,
)
from hooks.bird_lab import BirdLab, Snapshot, lab, networks, routed, sessions
from hooks.sessions import SimNode

__all__ = [
    "BirdCheck",
    "Phase",
    "RollStep",
    "apply_plan",
    "format_check",
    "model_routes",
    "run_check",
    "sample_nodes",
]


def sample_nodes(nodes: Sequence[SimNode], sample: int | None) -> list[SimNode]:
    """Every RR and `sample` clients spread evenly over the name order (all when None).  Clients
    relay nothing, so the sample's BIRDs hold exactly what the model counts for the sample."""
    ordered = sorted(nodes, key=lambda node: node.name)
    clients = [node for node in ordered if not node.is_reflector]
    if sample is not None and sample < len(clients):
        chosen = {clients[i * len(clients) // sample].name for i in range(sample)}
        clients = [node for node in clients if node.name in chosen]
    keep = {node.name for node in clients}
    return [node for node in ordered if node.is_reflector or node.name in keep]


@dataclass(frozen=True)
class Phase:
    """One measurement: BIRD's BGP routes per node next to the model's, distinct networks."""

    title: str
    bird: Mapping[str, int]
    model: Mapping[str, int]
    networks: Mapping[str, int]
    seconds: float

    @property
    def mismatched(self) -> list[str]:
        return sorted(name for name, count in self.bird.items() if count != self.model[name])

    @property
    def unreachable(self) -> list[str]:
        """Nodes missing a running node's pod block (their table: every block + the lo route)."""
        want = len(self.bird) + 1
        return sorted(name for name, count in self.networks.items() if count != want)

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.unreachable


@dataclass(frozen=True)
class BirdCheck:
    nodes: int
    reflectors: int
    stopped: str | None
    phases: tuple[Phase, ...]

    @property
    def ok(self) -> bool:
        return all(phase.ok for phase in self.phases)


def model_routes(
    nodes: Sequence[SimNode], peers: Sequence[Mapping[str, Any]], budget: int | None = None
) -> dict[str, int]:
    """The model's BGP routes per node (hooks.paths); refuses a count that explodes."""
    from hooks.paths import DEFAULT_BUDGET, count_paths

    report = count_paths(nodes, peers, budget=DEFAULT_BUDGET if budget is None else budget)
    if report.exploded:
        raise BirdError(
            f"the model's route count explodes (at least {report.routes_per_node_max:,} routes at"
            " a node): BIRD would not converge either; not started"
        )
    return dict(report.routes)


def run_check(
    nodes: Sequence[SimNode],
    peers: Sequence[Mapping[str, Any]],
    *,
    workdir: Path,
    port: int,
    first_address: ipaddress.IPv4Address = FIRST_ADDRESS,
    stop_reflector: bool = True,
    timeout: float = 60.0,
    bird: str | None = None,
    budget: int | None = None,
) -> BirdCheck:
    """Start one BIRD per node, wait for convergence and compare every node's BGP routes with the
    model's; then stop the RR with the most sessions (SIGTERM) and compare again."""
    peers = list(peers)
    model = model_routes(nodes, peers, budget)
    lab_nodes = render_lab(nodes, peers, first_address=first_address)
    phases = []
    stopped = None
    with lab(lab_nodes, workdir, port=port, bird=bird) as running:
        began = time.monotonic()
        shots = running.converge(model, timeout=timeout)
        phases.append(_phase("all up", shots, model, began))
        reflectors = [node for node in lab_nodes if node.is_reflector]
        if stop_reflector and reflectors:
            victim = max(reflectors, key=lambda node: (len(node.neighbours), node.name)).name
            stopped = victim
            remaining = [node for node in nodes if node.name != victim]
            model = model_routes(remaining, peers, budget)
            began = time.monotonic()
            running.stop(victim)
            shots = running.converge(model, timeout=timeout)
            phases.append(_phase(f"{victim} (RR) stopped", shots, model, began))
    return BirdCheck(len(lab_nodes), sum(n.is_reflector for n in lab_nodes), stopped, tuple(phases))


def _phase(
    title: str, shots: Mapping[str, Snapshot], model: Mapping[str, int], began: float
) -> Phase:
    return Phase(
        title,
        {name: shot.routes for name, shot in shots.items()},
        {name: model[name] for name in shots},
        {name: shot.networks for name, shot in shots.items()},
        round(time.monotonic() - began, 1),
    )


Session = frozenset[str]  # the two nodes of a BGP session


@dataclass(frozen=True)
class RollStep:
    """One plan applied to a running lab: the counts once it converged (`phase`), the nodes
    reconfigured, the kept sessions whose options changed (`changed`: BIRD should restart these
    and no other), the kept sessions BIRD did restart, per watched node the pod blocks (by
    owner) it missed at some poll while the step converged, out of `polls` polls, and per block
    missed the seconds from the first poll that saw it missing to the last (at any node)."""

    phase: Phase
    reconfigured: tuple[str, ...]
    changed: frozenset[Session]
    restarted: frozenset[Session]
    missed: Mapping[str, frozenset[str]]
    polls: int
    outage: Mapping[str, float]

    @property
    def blocks_missed(self) -> frozenset[str]:
        """The nodes whose pod block some watched node was without at some poll."""
        return frozenset().union(*self.missed.values())


def apply_plan(
    running: BirdLab,
    nodes: Sequence[SimNode],
    peers: Sequence[Mapping[str, Any]],
    *,
    title: str,
    first_address: ipaddress.IPv4Address = FIRST_ADDRESS,
    watched: Sequence[str] | None = None,
    timeout: float = 60.0,
    budget: int | None = None,
) -> RollStep:
    """Reconfigure the running lab to the next plan of the same nodes (as confd does on each
    node, no BIRD restarted), wait for convergence and compare with the model.  While it
    converges, poll the `watched` nodes' tables (default: every client) and every node's
    sessions: a kept session counts as restarted when a poll sees it down or its `since` moved."""
    peers = list(peers)
    model = model_routes(nodes, peers, budget)
    lab_nodes = render_lab(nodes, peers, first_address=first_address)
    changed = restarted_sessions(running.nodes, lab_nodes)
    watch = _Watch(running, lab_nodes, watched)
    before = running.snapshots()
    _wait_for_a_readable_since(before, lab_nodes, changed)
    began = time.monotonic()
    reconfigured = running.reconfigure(lab_nodes)
    shots = running.converge(model, timeout=timeout, watch=watch.poll)
    kept = {
        frozenset((node.name, peer.name))
        for node in lab_nodes
        for peer in node.neighbours
        if protocol_name(peer.address) in before[node.name].sessions
    }
    moved = {
        frozenset((node.name, peer.name))
        for node in lab_nodes
        for peer in node.neighbours
        for session in [protocol_name(peer.address)]
        if _since_moved(before[node.name].since.get(session), shots[node.name].since.get(session))
    }
    return RollStep(
        _phase(title, shots, model, began),
        reconfigured,
        changed,
        frozenset((watch.down | moved) & kept),
        {name: frozenset(blocks) for name, blocks in watch.missed.items()},
        watch.polls,
        {
            owner: round(watch.last_seen[owner] - first, 2)
            for owner, first in sorted(watch.first_seen.items())
        },
    )


class _Watch:
    """Polls, as often as the lab lets it, the watched nodes' tables (one `show route count`
    each; the primary routes only when a block is missing, to name it) and every node's session
    states (the sessions seen down)."""

    def __init__(
        self, running: BirdLab, nodes: Sequence[LabNode], watched: Sequence[str] | None
    ) -> None:
        self.sockets = {name: proc.socket_path for name, proc in running.started.items()}
        self.peer_of = {
            node.name: {protocol_name(peer.address): peer.name for peer in node.neighbours}
            for node in nodes
        }
        self.owner = {node.block: node.name for node in nodes}
        chosen = [n.name for n in nodes if not n.is_reflector] if watched is None else watched
        self.missed: dict[str, set[str]] = {name: set() for name in sorted(chosen)}
        self.down: set[Session] = set()
        self.polls = 0
        self.first_seen: dict[str, float] = {}  # block owner → when a poll first missed it
        self.last_seen: dict[str, float] = {}

    def poll(self) -> None:
        self.polls += 1
        for name, missed in self.missed.items():
            if networks(self.sockets[name]) < len(self.owner) + 1:  # every block + the lo route
                held = routed(self.sockets[name])
                now = time.monotonic()
                for block, owner in self.owner.items():
                    if block not in held:
                        missed.add(owner)
                        self.first_seen.setdefault(owner, now)
                        self.last_seen[owner] = now
        for name, sock in self.sockets.items():
            for session, state in sessions(sock).items():
                peer = self.peer_of[name].get(session)
                if peer is not None and state != "Established":
                    self.down.add(frozenset((name, peer)))


def _since_moved(before: str | None, after: str | None) -> bool:
    """Whether a session's state changed between two readings of BIRD's `since` (hh:mm:ss;
    BIRD converts its monotonic clock to wall time anew on each reading, so one second apart
    is the same moment)."""
    if before is None or after is None or before == after:
        return False
    try:
        first, second = (_seconds(text) for text in (before, after))
    except ValueError:
        return True
    return (second - first) % 86400 not in (0, 1, 86399)


def _wait_for_a_readable_since(
    before: Mapping[str, Snapshot], nodes: Sequence[LabNode], changed: frozenset[Session]
) -> None:
    """Sleep until a restart of a `changed` session would move its `since` by more than the
    second of jitter `_since_moved` forgives: one established less than 2 s ago (by the step
    before) can go down and up again between two polls, and its `since` would not tell."""
    latest = [
        _seconds(since)
        for node in nodes
        for peer in node.neighbours
        if frozenset((node.name, peer.name)) in changed
        for since in [before[node.name].since.get(protocol_name(peer.address), "")]
        if re.fullmatch(r"\d\d:\d\d:\d\d", since)
    ]
    if latest:
        wait = (max(latest) + 3 - _seconds(time.strftime("%H:%M:%S"))) % 86400
        if wait <= 3:
            time.sleep(wait)


def _seconds(clock: str) -> int:
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def format_check(
    check: BirdCheck, roles: Mapping[str, str], limit: int = 40, note: str = ""
) -> list[str]:
    """Per-node BIRD and model counts (mismatches first, up to `limit` rows a phase), a verdict."""
    lines = [f"BIRD: {check.nodes} nodes ({check.reflectors} RRs), one BIRD 1.6 each on loopback"]
    if note:
        lines.append(note)
    for phase in check.phases:
        lines.append(
            f"-- {phase.title}: converged in {phase.seconds} s;"
            f" {len(phase.mismatched)} nodes differ from the model,"
            f" {len(phase.unreachable)} miss a prefix"
        )
        lines.append(f"   {'node':<32} {'role':<6} {'BIRD':>10} {'model':>10}")
        order = sorted(
            phase.bird, key=lambda n: (phase.bird[n] == phase.model[n], roles.get(n, ""), n)
        )
        for name in order[:limit]:
            mark = "" if phase.bird[name] == phase.model[name] else "  MISMATCH"
            lines.append(
                f"   {name:<32} {roles.get(name, ''):<6} {phase.bird[name]:>10,}"
                f" {phase.model[name]:>10,}{mark}"
            )
        if len(order) > limit:
            lines.append(f"   ... {len(order) - limit} more nodes")
    lines.append(
        "verdict: " + ("OK, BIRD's route counts equal the model's" if check.ok else "FAIL")
    )
    return lines
