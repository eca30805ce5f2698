"""`route-reflector-hooks serve | plan | verify` (or `python -m hooks` in the project's virtualenv):
the command line, thin around the hook functions."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from hooks.offline import PlanInputError, PlanResult, merge_changes, run_plan
from hooks.plan_table import format_table
from hooks.yaml_events import load_yaml


class JsonLines(logging.Formatter):
    """One JSON object per line for every logger, as the hooks' own lines are: uvicorn's access
    and server lines too, so one log pipeline parses them all."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        line: dict[str, Any]
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, version, status = args
            line = {"access": f"{method} {path}", "status": status, "client": client}
            line["http"] = version
        else:
            message = record.getMessage()
            if message.startswith("{") and not record.exc_info:
                return message  # a hook line, already JSON
            line = {"level": record.levelname.lower(), "logger": record.name, "message": message}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, sort_keys=True, default=str)


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's log_config: every logger through JsonLines on standard error."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLines}},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level, "propagate": False}
            for name in ("hooks", "uvicorn", "uvicorn.error", "uvicorn.access")
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hooks.app import create_app, create_metrics_app
    from hooks.server import uvicorn_settings

    level = os.environ.get("LOG_LEVEL", "info").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise PlanInputError(f"LOG_LEVEL: {level.lower()!r} is not a log level")
    try:
        settings = uvicorn_settings(os.environ)
        app = create_app(serve_metrics=not args.metrics_port)
    except ValueError as error:
        raise PlanInputError(str(error)) from None
    if not args.metrics_port:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_config=logging_config(level),
            log_level=level.lower(),
            **settings,
        )
        return 0
    # /metrics on a port of its own: the hook port then answers only the hooks and /healthz.
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                served,
                host=args.host,
                port=port,
                log_config=logging_config(level),
                log_level=level.lower(),
                **settings,
            )
        )
        for served, port in ((app, args.port), (create_metrics_app(app), args.metrics_port))
    ]

    async def both() -> None:
        await asyncio.gather(*(server.serve() for server in servers))

    try:  # the loop uvicorn.run picks by itself ("auto"); asyncio's where uvloop is absent
        import uvloop

        uvloop.run(both())
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(both())
    return 0


def _read_input(path: str) -> Any:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise PlanInputError(f"cannot read {path}: {error}") from None
    try:
        if text.lstrip().startswith(("{", "[")):
            return json.loads(text)
        return load_yaml(text)
    except (ValueError, yaml.YAMLError) as error:
        raise PlanInputError(f"{path}: not JSON or YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise PlanInputError(f"{path}: nested too deeply to be a NodeList or a topology") from None


def _read_topology(path: str | None) -> Any:
    if path is None:
        return None
    document = _read_input(path)
    if document is None:
        raise PlanInputError(f"{path}: empty, expected a RouteReflectorTopology or its spec")
    return document


def _load(args: argparse.Namespace) -> PlanResult:
    nodes = _read_input(args.nodes)
    topology = _read_topology(args.topology)
    return run_plan(nodes, topology, dict(os.environ), datetime.now(UTC))


def _warn(result: PlanResult) -> None:
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _plan(args: argparse.Namespace) -> int:
    result = _load(args)
    _warn(result)
    if args.output == "json":
        print(json.dumps(result.as_json() | {"paths": result.paths().to_dict()}, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump_all(result.as_objects(), sort_keys=False), end="")
    elif args.output == "html":
        from hooks.picture import render_html

        print(render_html(result))
    else:
        report = result.extra["verify"] = result.verify()
        result.extra["paths"] = result.paths()
        print(format_table(result))
        return 0 if report.ok else 1
    return 0


def _joined(document: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """`plan -o json` joined with its input NodeList (an `items` key): nodes with the planned
    label changes applied, and the BGPPeers. None when the document is a plain NodeList."""
    if not isinstance(document, dict) or "bgpPeers" not in document:
        return None
    items, changes, peers = document.get("items"), document.get("nodes"), document["bgpPeers"]
    if not isinstance(items, list) or not isinstance(changes, dict) or not isinstance(peers, list):
        raise PlanInputError(
            "a plan to verify needs `bgpPeers`, `nodes` (plan -o json) and `items` (the NodeList"
            " it was made from), e.g. jq -s '.[0] + {items: .[1].items}' plan.json nodes.json"
        )
    etcd = document.get("etcd")
    cluster_ids = etcd.get("clusterIDs") if isinstance(etcd, dict) else None
    nodes = []
    for item in items:
        meta = dict(item.get("metadata", {})) if isinstance(item, dict) else {}
        change = changes.get(meta.get("name"), {})
        for kind in ("labels", "annotations"):
            merged = dict(meta.get(kind) or {})
            merge_changes(merged, change.get(kind) or {})
            meta[kind] = merged
        joined = {**item, "metadata": meta}
        if isinstance(cluster_ids, dict) and meta.get("name") in cluster_ids:
            # etcd mode: the Calico Node of that name carries it (hooks.sessions reads it there)
            joined["spec"] = {"bgp": {"routeReflectorClusterID": cluster_ids[meta["name"]]}}
        nodes.append(joined)
    return nodes, peers


def _verify(args: argparse.Namespace) -> int:
    from hooks.paths import count_paths, format_paths
    from hooks.sessions import SimNode, nodes_from_objects
    from hooks.verify import format_report, verify

    document = _read_input(args.file)
    joined = _joined(document)
    planned: Callable[[], list[SimNode]]
    if joined is None:
        topology = _read_topology(args.topology)
        result = run_plan(document, topology, dict(os.environ), datetime.now(UTC))
        _warn(result)
        peers, status, planned = result.bgp_peers, result.status, result.sim_nodes
    else:
        nodes, peers = joined
        status = document.get("status") if isinstance(document.get("status"), dict) else {}
        planned = functools.partial(nodes_from_objects, nodes)
    try:
        sim_nodes = planned()
        report = verify(sim_nodes, peers, mesh=args.mesh, pairs=args.pairs)
        paths = count_paths(sim_nodes, peers, mesh=args.mesh)
    except ValueError as error:
        raise PlanInputError(f"{args.file}: {error}") from None
    groups = status.get("groups")
    if isinstance(status.get("topology"), str) and isinstance(groups, list):
        report = report.with_promises(
            status["topology"], [g for g in groups if isinstance(g, dict)]
        )
    bird = _verify_bird(args, sim_nodes, peers) if args.bird else None
    if args.output == "json":
        extra = {} if bird is None else {"bird": bird[1]}
        print(json.dumps(report.to_dict() | {"paths": paths.to_dict()} | extra, indent=2))
    else:
        lines = [format_report(report), *format_paths(paths)]
        print("\n".join(lines if bird is None else [*lines, *bird[2]]))
    return 0 if report.ok and (bird is None or bird[0]) else 1


def _verify_bird(
    args: argparse.Namespace, sim_nodes: Any, peers: list[dict[str, Any]]
) -> tuple[bool, dict[str, Any], list[str]]:
    """The plan on real BIRD: every RR and a sample of clients, counts next to the model's."""
    import tempfile
    from pathlib import Path

    from hooks.bird import BirdError
    from hooks.bird_check import format_check, run_check, sample_nodes
    from hooks.bird_lab import bird_available

    if args.mesh:
        raise PlanInputError("--bird runs the plan's BGPPeers only: drop --mesh")
    binary = bird_available()
    if binary is None:
        raise PlanInputError("--bird needs BIRD 1.6 (`bird`): apt-get install bird")
    chosen = sample_nodes(sim_nodes, args.sample)
    roles = {node.name: "RR" if node.is_reflector else "client" for node in chosen}
    port = args.bird_port
    try:
        with tempfile.TemporaryDirectory(prefix="rr-bird-") as workdir:
            check = run_check(chosen, peers, workdir=Path(workdir), port=port, bird=binary)
    except BirdError as error:
        return False, {"ok": False, "error": str(error)}, [f"BIRD: FAIL: {error}"]
    clients = sum(not node.is_reflector for node in sim_nodes)
    sampled = sum(role == "client" for role in roles.values())
    note = (
        f"every RR and {sampled} of {clients} clients; the model is counted for these nodes"
        " (clients relay nothing: a sampled client holds what it would in the full plan, less"
        " the prefixes of clients left out)"
    )
    return check.ok, _check_json(check), format_check(check, roles, note=note)


def _check_json(check: Any) -> dict[str, Any]:
    return {
        "ok": check.ok,
        "nodes": check.nodes,
        "reflectors": check.reflectors,
        "stopped": check.stopped,
        "phases": [
            {
                "title": phase.title,
                "ok": phase.ok,
                "seconds": phase.seconds,
                "mismatched": phase.mismatched,
                "unreachable": phase.unreachable,
                "routes": {n: {"bird": phase.bird[n], "model": phase.model[n]} for n in phase.bird},
            }
            for phase in check.phases
        ],
    }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a number of at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text}: expected a port from 1 to 65535")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="route-reflector-hooks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Metacontroller hooks over HTTP")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("METRICS_PORT", "0")),
        help="serve /metrics on this port only (0: on --port, beside the hooks)",
    )
    serve.set_defaults(run=_serve)
    plan = commands.add_parser("plan", help="preview the topology for `kubectl get nodes -o json`")
    plan.add_argument("nodes", help="a NodeList (JSON or YAML), or - for standard input")
    plan.add_argument("--topology", help="a RouteReflectorTopology (YAML or JSON)")
    plan.add_argument("--output", "-o", choices=("table", "json", "yaml", "html"), default="table")
    plan.set_defaults(run=_plan)
    check = commands.add_parser("verify", help="prove a plan routes, and survives RR failures")
    check.add_argument("file", help="a NodeList (planned first), or plan -o json joined with it")
    check.add_argument("--topology", help="a RouteReflectorTopology, when FILE is a NodeList")
    check.add_argument("--pairs", action="store_true", help="also every pair of RRs failing")
    check.add_argument("--mesh", action="store_true", help="the node-to-node mesh is still on")
    check.add_argument("--output", "-o", choices=("text", "json"), default="text")
    check.add_argument(
        "--bird", action="store_true", help="also run it on real BIRD 1.6 (one per node, loopback)"
    )
    check.add_argument(
        "--sample",
        type=_positive,
        default=20,
        help="with --bird: all RRs and this many clients (default 20)",
    )
    check.add_argument(
        "--bird-port",
        type=_port,
        default=None,
        help="with --bird: the BGP port every BIRD listens on (default 179 as root, else 1179)",
    )
    check.set_defaults(run=_verify)
    args = parser.parse_args(argv)
    if getattr(args, "bird_port", 0) is None:
        from hooks.bird_lab import default_port

        args.bird_port = default_port()
    try:
        code: int = args.run(args)
    except PlanInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code
