"""`python -m hooks serve | plan | verify`: the command line, thin around the hook functions."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from hooks.planner import PlanInputError, PlanResult, format_table, run_plan


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hooks.app import create_app

    level = os.environ.get("LOG_LEVEL", "info").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), format="%(message)s")
    uvicorn.run(
        create_app(), host=args.host, port=args.port, log_level=level.lower(), access_log=False
    )
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
        return (
            yaml.safe_load(text) if not text.lstrip().startswith(("{", "[")) else json.loads(text)
        )
    except (ValueError, yaml.YAMLError) as error:
        raise PlanInputError(f"{path}: not JSON or YAML: {str(error).splitlines()[0]}") from None


def _load(args: argparse.Namespace) -> PlanResult:
    try:
        nodes = _read_input(args.nodes)
        topology = _read_input(args.topology) if args.topology else None
    except OSError as error:
        raise PlanInputError(f"cannot read input: {error}") from None
    return run_plan(nodes, topology, dict(os.environ), datetime.now(UTC))


def _plan(args: argparse.Namespace) -> int:
    result = _load(args)
    if args.output == "json":
        print(json.dumps(result.as_json() | {"paths": result.paths().to_dict()}, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump_all(result.as_objects(), sort_keys=False), end="")
    elif args.output == "html":
        from hooks.picture import render_html

        print(render_html(result))
    else:
        result.extra["verify"] = result.verify()
        result.extra["paths"] = result.paths()
        print(format_table(result))
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
    nodes = []
    for item in items:
        meta = dict(item.get("metadata", {})) if isinstance(item, dict) else {}
        change = changes.get(meta.get("name"), {})
        for kind in ("labels", "annotations"):
            merged = dict(meta.get(kind) or {})
            for key, value in (change.get(kind) or {}).items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            meta[kind] = merged
        nodes.append({**item, "metadata": meta})
    return nodes, peers


def _verify(args: argparse.Namespace) -> int:
    document = _read_input(args.file)
    joined = _joined(document)
    if joined is None:
        topology = _read_input(args.topology) if args.topology else None
        result = run_plan(document, topology, dict(os.environ), datetime.now(UTC))
        nodes, peers = result.nodes, result.bgp_peers
    else:
        nodes, peers = joined
    from hooks.paths import count_paths, format_paths
    from hooks.verify import format_report, nodes_from_objects, verify

    try:
        sim_nodes = nodes_from_objects(nodes)
        report = verify(sim_nodes, peers, mesh=args.mesh, pairs=args.pairs)
        paths = count_paths(sim_nodes, peers, mesh=args.mesh)
    except ValueError as error:
        raise PlanInputError(f"{args.file}: {error}") from None
    if args.output == "json":
        print(json.dumps(report.to_dict() | {"paths": paths.to_dict()}, indent=2))
    else:
        print("\n".join([format_report(report), *format_paths(paths)]))
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hooks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Metacontroller hooks over HTTP")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
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
    check.set_defaults(run=_verify)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except PlanInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code
