"""Shared fixtures: the fixed clock, the app under TestClient; a guard that no test reads a file
beside the repository (a clone alone must pass `make test`)."""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from cli_runner import CliRunner, cli_runner
from golden import NOW as NOW  # re-exported: tests take the fixed clock from here
from starlette.exceptions import StarletteDeprecationWarning

from hooks.app import create_app

# Starlette warns once, at import, when its TestClient runs on httpx rather than httpx2; the
# client works the same. Silenced here only, so every other warning still fails a test.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient as TestClient  # re-exported for the tests

pytest_plugins = ["conftest_etcd"]

ROOT = Path(__file__).resolve().parents[1]
BESIDE = ROOT.parent
TEMP = Path(tempfile.gettempdir()).resolve()
# Files opened beside the repository (e.g. ../shared), by anything the suite runs in-process.
opened_beside: list[str] = []


# Temporary files are not "beside the repository", except when the checkout sits in a folder of
# its own under the temporary directory (then they are elsewhere in it, never in that folder).
TEMP_BESIDE = Path("/") != BESIDE and TEMP.is_relative_to(BESIDE)


def _beside_the_repository(path: str) -> bool:
    if not path.startswith(str(BESIDE)) or path.startswith(str(ROOT) + os.sep):
        return False
    resolved = Path(path)
    if resolved == ROOT or Path("/") == BESIDE:
        return False
    return not (TEMP_BESIDE and resolved.is_relative_to(TEMP))


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and args and isinstance(args[0], str):
        path = os.path.abspath(args[0])
        if _beside_the_repository(path):
            opened_beside.append(path)


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def nothing_read_beside_the_repository() -> Iterator[None]:
    """Fails the test that opened a file outside the repository's own tree (next to it)."""
    before = len(opened_beside)
    yield
    found = opened_beside[before:]
    assert not found, f"read outside the repository: {sorted(set(found))}"


def fixed_clock() -> datetime:
    return NOW


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The hook service with an empty environment and the fixed clock of the golden cases."""
    with TestClient(create_app(environ={}, clock=fixed_clock)) as test_client:
        yield test_client


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """`run_cli("plan", path, ...)`: the command line in-process; exit code, stdout, stderr."""
    return cli_runner(capsys, monkeypatch)
