"""A lab of real BIRDs: one per rendered node on its own loopback address, its routes read back
over the control socket; thin I/O, every BIRD stopped when the lab closes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooks.bird import BirdError, BirdMissing, LabNode, protocol_name, render_config

__all__ = [
    "BirdLab",
    "Snapshot",
    "bird_available",
    "default_port",
    "lab",
    "networks",
    "query",
    "routed",
    "sessions",
    "snapshot",
]


def default_port() -> int:
    """Calico's port 179 needs root; anyone else gets 1179."""
    return 179 if os.geteuid() == 0 else 1179


def bird_available() -> str | None:
    """The path of `bird`, or None."""
    return shutil.which("bird") or next(
        (p for p in ("/usr/sbin/bird", "/sbin/bird") if os.access(p, os.X_OK)), None
    )


_ROUTES = re.compile(r"^\s+Routes:\s+(\d+) imported")
_COUNT = re.compile(r"(\d+) of (\d+) routes for (\d+) networks")


@dataclass(frozen=True)
class Snapshot:
    """What one BIRD says: BGP routes held (imported over all BGP sessions), distinct networks in
    its table, and each BGP protocol's state ("Established" when up) and when it last changed
    (BIRD's `since`, hh:mm:ss)."""

    routes: int
    networks: int
    sessions: Mapping[str, str]
    since: Mapping[str, str] = field(default_factory=dict)


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


def _protocol_row(line: str) -> tuple[str, str, str] | None:
    """A BGP protocol's row of `show protocols`: its name, state (the BGP state when it is up or
    connecting, else BIRD's protocol state) and since; None for any other line."""
    fields = line.split()
    if len(fields) < 5 or fields[1] != "BGP":
        return None
    return fields[0], fields[5] if len(fields) > 5 else fields[3], fields[4]


def sessions(socket_path: Path | str) -> dict[str, str]:
    """Each BGP protocol's state (one `show protocols`: cheap enough to poll)."""
    rows = (_protocol_row(line) for line in query(socket_path, "show protocols"))
    return {row[0]: row[1] for row in rows if row}


def networks(socket_path: Path | str) -> int:
    """Distinct networks in the table (one `show route count`: cheap enough to poll)."""
    counted = 0
    for line in query(socket_path, "show route count"):
        found = _COUNT.search(line)
        if found:
            counted = int(found.group(3))
    return counted


def routed(socket_path: Path | str) -> set[str]:
    """The networks the table holds a route for (their primary routes: one line each)."""
    found = set()
    for line in query(socket_path, "show route primary"):
        fields = line.split()
        if fields and "/" in fields[0] and fields[0][0].isdigit():
            found.add(fields[0])
    return found


def snapshot(socket_path: Path | str) -> Snapshot:
    """Sessions and routes of one BIRD (two commands on its control socket)."""
    states: dict[str, str] = {}
    since: dict[str, str] = {}
    routes = 0
    current: str | None = None
    for line in query(socket_path, "show protocols all"):
        row = _protocol_row(line)
        if row:
            current, states[row[0]], since[row[0]] = row
            continue
        fields = line.split()
        if len(fields) >= 2 and not line.startswith(" "):
            current = None
        match = _ROUTES.match(" " + line) if current else None
        if match:
            routes += int(match.group(1))
    return Snapshot(routes, networks(socket_path), states, since)


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
            config = self._write_config(node)
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

    def _write_config(self, node: LabNode) -> Path:
        config = self.workdir / f"{node.address}.conf"
        config.write_text(render_config(node, port=self.port), encoding="utf-8")
        return config

    def reconfigure(self, nodes: Sequence[LabNode]) -> tuple[str, ...]:
        """The next plan on the running BIRDs, as calico/node's confd applies a new config:
        each changed node's config rewritten and `configure`d over its control socket, no
        process restarted (BIRD itself restarts the sessions whose options changed).  The node
        set and addresses must stay; returns the nodes reconfigured, in name order."""
        running = {proc.node.name: proc for proc in self.started.values()}
        given = {node.name: node for node in nodes}
        if {(n.name, n.address) for n in given.values()} != {
            (p.node.name, p.node.address) for p in running.values()
        }:
            raise ValueError("a reconfiguration keeps the running nodes and their addresses")
        changed = tuple(sorted(name for name, node in given.items() if running[name].node != node))
        for name in changed:
            proc = running[name]
            proc.node = given[name]
            self._write_config(proc.node)
            reply = query(proc.socket_path, "configure")
            if not any(line.startswith("Reconfigur") for line in reply):
                raise BirdError(f"BIRD of {name} did not take its new config: {reply}")
        self.nodes = [given[node.name] for node in self.nodes]
        return changed

    def pids(self) -> dict[str, int]:
        """Each running BIRD's process ID (a reconfiguration keeps them)."""
        return {name: proc.process.pid for name, proc in self.started.items()}

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
        watch: Callable[[], object] | None = None,
    ) -> dict[str, Snapshot]:
        """Wait until every running BIRD has all its sessions to running peers Established and
        its route count has stopped moving: `stable` polls alike, or two alike that already
        equal `expected` (the model).  `watch`, if given, is called over and over between two
        polls (and once before the first).  Returns the last snapshots; raises on timeout."""
        alive = {proc.node.address for proc in self.started.values()}
        deadline = time.monotonic() + timeout
        history: list[dict[str, int]] = []
        if watch is not None:
            watch()
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
            _wait(interval, watch)


def _wait(seconds: float, watch: Callable[[], object] | None) -> None:
    if watch is None:
        time.sleep(seconds)
        return
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        watch()
        time.sleep(0.01)  # a watch that asks nothing does not spin


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
