"""The command line run in-process (`cli.main(argv)`), so coverage sees it: exit code and output."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pytest

from hooks import cli


class CliResult(NamedTuple):
    """What a run gave; unpacks as `code, out, err`."""

    returncode: int
    stdout: str
    stderr: str


class CliRunner(Protocol):
    def __call__(self, *argv: str, stdin: str | None = None) -> CliResult: ...


def cli_runner(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner with the environment's own settings (ROUTE_REFLECTOR_*, DATASTORE*) removed, as
    a user's shell might set them; `stdin` stands in for standard input."""
    for key in list(os.environ):
        if key.startswith(("ROUTE_REFLECTOR_", "DATASTORE")):
            monkeypatch.delenv(key)

    def run(*argv: str, stdin: str | None = None) -> CliResult:
        capsys.readouterr()  # output from before the command is not its output
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = cli.main(list(argv))
        except SystemExit as exit_:  # argparse: a usage error or --help
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def input_files(
    folder: Path, nodes: dict[str, Any], topology: str, suffix: str
) -> tuple[Path, Path]:
    """A NodeList and a topology (`suffix` "yaml" or "json") written where the CLI reads them."""
    nodes_path, topology_path = folder / "nodes.json", folder / f"t.{suffix}"
    nodes_path.write_text(json.dumps(nodes))
    topology_path.write_text(topology)
    return nodes_path, topology_path
