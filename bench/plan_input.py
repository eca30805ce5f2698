"""`plan` on `kubectl get nodes -o json` against `-o yaml`: the whole command, in a fresh
interpreter per run, time and peak memory; YAML read as the CLI does (dicts built from libyaml's
events) and with `yaml.safe_load` (what it did before), for comparison.

`python -m bench.plan_input [--nodes 2000]` prints the table; `python -m bench` includes it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.generate import Generator, Json
from bench.measure import run_child

DEFAULT_NODES = 2_000
READERS = (
    ("json", "json", "JSON (`kubectl get nodes -o json`)"),
    ("yaml", "libyaml", "YAML, built from libyaml events (the CLI)"),
    ("yaml", "before", "YAML, `yaml.safe_load` (before)"),
)

# The child reports its own VmHWM: ru_maxrss would carry the parent's high-water mark over exec.
_CHILD = r"""
import contextlib, io, json, sys, time
started = time.perf_counter()
import yaml
import hooks.cli
from bench.measure import proc_status
if sys.argv[2] == "before":
    hooks.cli.load_yaml = yaml.safe_load
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = hooks.cli.main(["plan", sys.argv[1], "-o", "json"])
elapsed = time.perf_counter() - started
reflectors = json.loads(out.getvalue())["status"]["reflectors"] if code == 0 else None
print(json.dumps({"code": code, "seconds": elapsed, "peak": proc_status()["VmHWM"],
                  "reflectors": reflectors}))
"""


def node_list(nodes: Sequence[Json]) -> Json:
    return {"apiVersion": "v1", "kind": "List", "items": list(nodes), "metadata": {}}


def write_inputs(nodes: Sequence[Json], folder: Path) -> dict[str, Path]:
    """The NodeList as kubectl prints it in JSON and in (block-style) YAML."""
    document = node_list(nodes)
    paths = {"json": folder / "nodes.json", "yaml": folder / "nodes.yaml"}
    paths["json"].write_text(json.dumps(document, indent=4))
    with paths["yaml"].open("w") as handle:
        yaml.dump(document, handle, Dumper=_Dumper, default_flow_style=False, sort_keys=False)
    return paths


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """kubectl writes every node out in full: no `&id001` anchors for the images nodes share."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def run_command(path: Path, loader: str) -> dict[str, Any]:
    return run_child(_CHILD, str(path), loader)


def measure(nodes: Sequence[Json], before: bool = True) -> dict[str, Any]:
    """One run per reader (a single `plan` of 2,000 nodes takes seconds, not milliseconds)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-plan-input-") as tmp:
        paths = write_inputs(nodes, Path(tmp))
        for kind, loader, title in READERS:
            if loader == "before" and not before:
                continue
            found = run_command(paths[kind], loader)
            rows.append({"input": title, "bytes": paths[kind].stat().st_size, **found})
    return {"nodes": len(nodes), "rows": rows}


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [
        f"## `plan` on a NodeList file ({result['nodes']:,} nodes)",
        "",
        "`python -m hooks plan FILE -o json` in a fresh interpreter (imports included), one run"
        " each; peak = the process's VmHWM.",
        "",
        "| input | file MB | seconds | peak MB | RRs |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['input']} | {row['bytes'] / 1e6:.1f} | {row['error']} | | |")
            continue
        lines.append(
            f"| {row['input']} | {row['bytes'] / 1e6:.1f} | {row['seconds']:.2f}"
            f" | {row['peak'] / 1e6:.0f} | {row['reflectors']} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plan_input", description=__doc__)
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-before", action="store_true", help="skip yaml.safe_load (slow)")
    args = parser.parse_args(argv)
    gen = Generator(args.seed)
    result = measure([gen.node(i) for i in range(args.nodes)], before=not args.no_before)
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
