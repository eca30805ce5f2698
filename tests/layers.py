"""The layers of `hooks`, checked on the source (run by `make lint`, tested by test_layers.py).

The core (the plan's model, selection, topologies, transitions, routing counts) reaches, through
every import it makes (deferred ones too), no wire shape, no Calico rendering, no controller,
no datastore, and no web, Kubernetes or etcd client; the hook functions reach no datastore and
no web code (what touches the world is a parameter); the datastores reach no web app or CLI."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

CORE = (
    "hooks.model",
    "hooks.previous",
    "hooks.selection",
    "hooks.topologies",
    "hooks.transitions",
    "hooks.paths",
    "hooks.sessions",
    "hooks.selectors",
    "hooks.propagation",
    "hooks.verify",
    "hooks.stamps",
)
# The service's web side and command line, and the clients that reach a cluster or a store.
EDGES = ("hooks.app", "hooks.handlers", "hooks.server", "hooks.cli", "starlette", "uvicorn")
CLIENTS = ("kubernetes", "etcd3gw", "requests")
CORE_MAY_NOT_REACH = (
    "hooks.wire",
    "hooks.calico",
    "hooks.controllers",
    "hooks.observed",
    "hooks.reconcile",
    "hooks.datastores",
    *EDGES,
    *CLIENTS,
)
# The hook functions: pure, what touches the world comes in as a parameter (hooks/reconcile.py).
HOOKS = (
    "hooks.controllers",
    "hooks.decision",
    "hooks.status",
    "hooks.node_status",
    "hooks.node_hook",
    "hooks.finalize",
    "hooks.settings_cache",
    "hooks.observed",
    "hooks.reconcile",
)
HOOKS_MAY_NOT_REACH = ("hooks.datastores", "hooks.offline", *EDGES, *CLIENTS)
DATASTORES = ("hooks.datastores",)
DATASTORES_MAY_NOT_REACH = EDGES


def module_files(root: Path, package: str = "hooks") -> dict[str, Path]:
    """Module name → file, for every module of `package` under `root`."""
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(path: Path, modules: Mapping[str, Path]) -> set[str]:
    """Every module `path` imports, wherever the import statement is; importing a submodule
    imports its packages too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in modules
            )
    with_parents = set(names)
    for name in names:
        parts = name.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return with_parents


def _within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def reached(start: str, graph: Mapping[str, set[str]]) -> dict[str, str]:
    """Every module `start` reaches → the module that imports it (for the message)."""
    via: dict[str, str] = {}
    todo = [start]
    while todo:
        current = todo.pop()
        for name in sorted(graph.get(current, ())):
            if name not in via and name != start:
                via[name] = current
                todo.append(name)
    return via


def violations(root: Path) -> list[str]:
    modules = module_files(root)
    graph = {name: imports_of(path, modules) for name, path in modules.items()}
    rules = (
        (CORE, CORE_MAY_NOT_REACH),
        (HOOKS, HOOKS_MAY_NOT_REACH),
        (DATASTORES, DATASTORES_MAY_NOT_REACH),
    )
    found = []
    for layer, forbidden in rules:
        for name in sorted(m for m in modules if _within(m, layer)):
            for target, importer in sorted(reached(name, graph).items()):
                if _within(target, forbidden) and not _within(target, layer):
                    found.append(f"{name} reaches {target} (imported by {importer})")
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    found = violations(root)
    for line in found:
        print(f"layers: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
