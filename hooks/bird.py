"""A plan on real BIRD 1.6: one config per node rendered as calico/node's confd renders it, and a
thin runner that starts one BIRD per node on its own loopback address and reads its routes.

Rendering is pure (`render_lab`).  What follows Calico's `bird.cfg.template`:
- a `bgp_template` with `multihop`, `gateway recursive`, `add paths on`, `graceful restart`,
  `connect delay time 1`, `connect retry time 3`, `error wait time 5,60`, and the import/export
  filters (import every pod-pool route; export pod-pool routes, learned ones included, so a
  reflector re-advertises what it learnt);
- one `protocol bgp Node_<ip>` per peer, the BGPPeer selectors expanded both ways (as
  `bgp_processor.go` does), `rr client` + `rr cluster id` when this node has a cluster ID and the
  peer has none or another one;
- each node originates its pod block as a blackhole static route (Calico's bird_ipam/bird_aggr).
What differs, for a lab on one host: each node is 127.x.y.z (router id and BGP listen address);
no kernel protocol (the host routing table never changes); BGP next hops in 127/8 resolve
through a static default route via "lo" that the export filter never passes on.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from hooks.sessions import SimNode, build_graph, read_peers

__all__ = [
    "POD_POOL",
    "BirdError",
    "BirdLab",
    "BirdMissing",
    "LabNode",
    "Snapshot",
    "bird_available",
    "default_port",
    "render_config",
    "render_lab",
]

AS_NUMBER: Final = 64512  # Calico's default AS
POD_POOL: Final = ipaddress.IPv4Network("10.0.0.0/8")
BLOCK_PREFIX: Final = 26  # Calico's default IPAM block size
FIRST_ADDRESS: Final = ipaddress.IPv4Address("127.1.0.1")
LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")


class BirdError(RuntimeError):
    """BIRD did not start, answer or converge."""


class BirdMissing(BirdError):
    """No `bird` binary."""


def default_port() -> int:
    """Calico's port 179 needs root; anyone else gets 1179."""
    return 179 if os.geteuid() == 0 else 1179


def bird_available() -> str | None:
    """The path of `bird`, or None."""
    return shutil.which("bird") or next(
        (p for p in ("/usr/sbin/bird", "/sbin/bird") if os.access(p, os.X_OK)), None
    )


@dataclass(frozen=True)
class Neighbour:
    name: str
    address: str
    rr_client: bool


@dataclass(frozen=True)
class LabNode:
    """One node of the lab: its address (router id), pod block, cluster ID and BGP peers."""

    name: str
    address: str
    block: str
    cluster_id: str | None
    neighbours: tuple[Neighbour, ...]

    @property
    def is_reflector(self) -> bool:
        return self.cluster_id is not None


def protocol_name(address: str) -> str:
    """Calico's name for a node-specific peer's protocol: Node_ plus the IP with underscores."""
    return "Node_" + address.replace(".", "_")


def render_lab(
    nodes: Iterable[SimNode],
    peers: Iterable[Mapping[str, Any]],
    *,
    first_address: ipaddress.IPv4Address = FIRST_ADDRESS,
) -> list[LabNode]:
    """Nodes in name order with an address and pod block each, and their peers as Calico would
    configure them (BGPPeer selectors expanded with the simulator's selector code)."""
    peerings, _skipped, _count = read_peers(peers)
    graph = build_graph(nodes, peerings, mesh=False)
    total = len(graph.names)
    if total and int(first_address) + total - 1 > int(LOOPBACK.broadcast_address) - 1:
        raise ValueError(f"{total} nodes do not fit in 127/8 from {first_address}")
    if total > POD_POOL.num_addresses >> (32 - BLOCK_PREFIX):
        raise ValueError(f"{total} nodes need more /{BLOCK_PREFIX} blocks than {POD_POOL} holds")
    addresses = [str(first_address + i) for i in range(total)]
    result = []
    for i, name in enumerate(graph.names):
        own = graph.cluster_ids[i]
        neighbours = tuple(
            Neighbour(
                graph.names[j],
                addresses[j],
                own is not None and graph.cluster_ids[j] != own,  # Calico's rule
            )
            for j in sorted(graph.adjacency[i])
        )
        block = POD_POOL.network_address + (i << (32 - BLOCK_PREFIX))
        result.append(LabNode(name, addresses[i], f"{block}/{BLOCK_PREFIX}", own, neighbours))
    return result


def render_config(node: LabNode, *, port: int) -> str:
    """The BIRD 1.6 configuration of one node."""
    lines = [
        f"# {node.name}: rendered like calico/node's bird.cfg.template (a loopback lab)",
        f"router id {node.address};",
        f"listen bgp address {node.address} port {port};",
        "log stderr { warning, error, fatal, bug };",
        "",
        "protocol device {",
        "  scan time 2;",
        "}",
        "",
        "# The pod block this node owns (Calico: bird_ipam.cfg / bird_aggr.cfg).",
        "protocol static pod_block {",
        f"  route {node.block} blackhole;",
        "}",
        "",
        "# BGP next hops are 127/8 addresses: resolved on lo; the export filter never sends this.",
        "protocol static loopback_nexthops {",
        '  route 0.0.0.0/0 via "lo";',
        "}",
        "",
        "filter calico_import_from_bgp_peers {",
        f"  if ( net ~ {POD_POOL} ) then accept;",
        "  reject;",
        "}",
        "",
        "filter calico_export_to_bgp_peers {",
        f"  if ( net ~ {POD_POOL} ) then accept;",
        "  reject;",
        "}",
        "",
        "template bgp bgp_template {",
        '  description "Connection to BGP peer";',
        f"  local as {AS_NUMBER};",
        "  multihop;",
        "  gateway recursive;",
        "  import filter calico_import_from_bgp_peers;",
        "  export filter calico_export_to_bgp_peers;",
        "  add paths on;",
        "  graceful restart;",
        "  connect delay time 1;",
        "  connect retry time 3;",
        "  error wait time 5,60;",
        "}",
    ]
    for peer in node.neighbours:
        lines += [
            "",
            f"protocol bgp {protocol_name(peer.address)} from bgp_template {{",
            f"  description {_quoted(peer.name)};",
            f"  neighbor {peer.address} port {port} as {AS_NUMBER};",
            f"  source address {node.address};",
        ]
        if peer.rr_client:
            lines += ["  rr client;", f"  rr cluster id {node.cluster_id};"]
        lines.append("}")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------
# The runner: thin I/O around the rendered configs.


_ROUTES = re.compile(r"^\s+Routes:\s+(\d+) imported")
_COUNT = re.compile(r"(\d+) of (\d+) routes for (\d+) networks")


@dataclass(frozen=True)
class Snapshot:
    """What one BIRD says: BGP routes held (imported over all BGP sessions), distinct networks in
    its table, and each BGP protocol's state ("Established" when up)."""

    routes: int
    networks: int
    sessions: Mapping[str, str]


@dataclass
class _Process:
    node: LabNode
    process: subprocess.Popen[bytes]
    socket_path: Path


def query(socket_path: Path | str, command: str, *, timeout: float = 10.0) -> list[str]:
    """One birdc command over the control socket; the reply's lines without reply codes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(socket_path))
        reader = conn.makefile("rb")
        _reply(reader)  # the greeting: 0001 BIRD 1.6.8 ready.
        conn.sendall(command.encode() + b"\n")
        return _reply(reader)


def _reply(reader: Any) -> list[str]:
    lines: list[str] = []
    while True:
        raw = reader.readline()
        if not raw:
            raise BirdError("BIRD closed its control socket mid-reply")
        line = raw.decode(errors="replace").rstrip("\n")
        if line[:4].isdigit() and len(line) > 4 and line[4] in " -":
            code = int(line[:4])
            lines.append(line[5:])
            if line[4] == " ":
                if code >= 8000:
                    raise BirdError(f"BIRD answered {line}")
                return lines
        else:
            lines.append(line[1:] if line.startswith(" ") else line)


def snapshot(socket_path: Path | str) -> Snapshot:
    """Sessions and routes of one BIRD (two commands on its control socket)."""
    sessions: dict[str, str] = {}
    routes = 0
    current: str | None = None
    for line in query(socket_path, "show protocols all"):
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "BGP":
            current = fields[0]
            sessions[current] = fields[5] if len(fields) > 5 else fields[3]
            continue
        if len(fields) >= 2 and not line.startswith(" ") and fields[1] != "BGP":
            current = None
        match = _ROUTES.match(" " + line) if current else None
        if match:
            routes += int(match.group(1))
    networks = 0
    for line in query(socket_path, "show route count"):
        counted = _COUNT.search(line)
        if counted:
            networks = int(counted.group(3))
    return Snapshot(routes, networks, sessions)


@dataclass
class BirdLab:
    """One BIRD per lab node, each on its own 127.x.y.z, configs and sockets under `workdir`.
    Use as a context manager: every BIRD started is stopped on exit, whatever happened."""

    nodes: Sequence[LabNode]
    workdir: Path
    port: int
    bird: str = "bird"
    started: dict[str, _Process] = field(default_factory=dict)

    def __enter__(self) -> BirdLab:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()

    def start(self, *, spacing: float = 0.05) -> None:
        """Write every config and start the BIRDs `spacing` seconds apart (fewer collisions)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            config = self.workdir / f"{node.address}.conf"
            config.write_text(render_config(node, port=self.port), encoding="utf-8")
            sock = self.workdir / f"{node.address}.ctl"
            log = (self.workdir / f"{node.address}.log").open("wb")
            try:
                # -f: stay in the foreground, so the PID we hold is BIRD's own
                process = subprocess.Popen(
                    [self.bird, "-f", "-c", str(config), "-s", str(sock),
                     "-P", str(self.workdir / f"{node.address}.pid")],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                )  # fmt: skip
            finally:
                log.close()
            self.started[node.name] = _Process(node, process, sock)
            time.sleep(spacing)
        deadline = time.monotonic() + 10
        for name, proc in self.started.items():
            while not proc.socket_path.exists():
                if proc.process.poll() is not None:
                    raise BirdError(f"BIRD of {name} exited: {self.log(name)}")
                if time.monotonic() > deadline:
                    raise BirdError(f"BIRD of {name} opened no control socket in 10 s")
                time.sleep(0.02)

    def log(self, name: str) -> str:
        proc = self.started[name]
        path = self.workdir / f"{proc.node.address}.log"
        return path.read_text(errors="replace").strip()[-2000:] if path.exists() else ""

    def stop(self, name: str) -> None:
        """SIGTERM by PID, then every running neighbour restarts its session to the stopped node
        (as on noticing the failure).  Measured on BIRD 1.6.8 (hierarchy, 60 nodes): after the
        SIGTERM alone, 2 of the stopped RR's 26 neighbours (the other spine RRs) kept its 115
        paths as graceful-restart helpers ("Neighbor graceful restart active", restart timer
        120 s) and reflected them on; with the restart the counts equal the model's at once."""
        proc = self.started.pop(name)
        _terminate(proc.process)
        session = protocol_name(proc.node.address)
        for other in self.started.values():
            if any(peer.name == name for peer in other.node.neighbours):
                query(other.socket_path, f"restart {session}")

    def stop_all(self) -> None:
        while self.started:
            name = next(iter(self.started))
            _terminate(self.started.pop(name).process)

    def snapshots(self) -> dict[str, Snapshot]:
        result = {}
        for name, proc in self.started.items():
            if proc.process.poll() is not None:
                raise BirdError(f"BIRD of {name} died: {self.log(name)}")
            result[name] = snapshot(proc.socket_path)
        return result

    def converge(
        self,
        expected: Mapping[str, int],
        *,
        timeout: float = 60.0,
        interval: float = 0.5,
        stable: int = 5,
        route_cap: int = 2_000_000,
    ) -> dict[str, Snapshot]:
        """Wait until every running BIRD has all its sessions to running peers Established and
        its route count has stopped moving: `stable` polls alike, or two alike that already
        equal `expected` (the model).  Returns the last snapshots; raises on timeout."""
        alive = {proc.node.address for proc in self.started.values()}
        deadline = time.monotonic() + timeout
        history: list[dict[str, int]] = []
        while True:
            shots = self.snapshots()
            counts = {name: shot.routes for name, shot in shots.items()}
            total = sum(counts.values())
            if total > route_cap:
                raise BirdError(f"BIRD holds {total:,} routes in all, past the cap {route_cap:,}")
            up = all(
                state == "Established"
                for name, shot in shots.items()
                for peer in self.started[name].node.neighbours
                if peer.address in alive
                for state in [shot.sessions.get(protocol_name(peer.address), "missing")]
            )
            history = [*history[-(stable - 1) :], counts] if up else []
            if len(history) >= 2 and history[-1] == history[-2] == dict(expected):
                return shots
            if len(history) >= stable and all(h == counts for h in history):
                return shots
            if time.monotonic() > deadline:
                raise BirdError(
                    f"no convergence in {timeout:.0f} s (sessions all up: {up}; routes {total:,})"
                )
            time.sleep(interval)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def lab(
    nodes: Sequence[LabNode], workdir: Path, *, port: int, bird: str | None = None
) -> Iterator[BirdLab]:
    """Start a BirdLab; every BIRD is stopped when the block ends, also on failure."""
    binary = bird or bird_available()
    if binary is None:
        raise BirdMissing("no `bird` binary (Debian: apt-get install bird)")
    with BirdLab(nodes, workdir, port, binary) as running:
        running.start()
        yield running


# ---------------------------------------------------------------------------------------------
# The check: BIRD's route counts next to the model's, all up and with one RR stopped.


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


def _model(
    nodes: Sequence[SimNode], peers: Sequence[Mapping[str, Any]], budget: int | None
) -> dict[str, int]:
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
    model = _model(nodes, peers, budget)
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
            model = _model(remaining, peers, budget)
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
