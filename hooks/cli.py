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
    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
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
        print(json.dumps(result.as_json(), indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump_all(result.as_objects(), sort_keys=False), end="")
    elif args.output == "html":
        from hooks.picture import render_html

        print(render_html(result))
    else:
        print(format_table(result))
    return 0


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
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except PlanInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code
