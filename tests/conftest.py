"""Shared fixtures: the fixed clock, the app under TestClient, the shared/ directory."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from golden import NOW
from starlette.exceptions import StarletteDeprecationWarning

from hooks.app import create_app

# Starlette warns once, at import, when its TestClient runs on httpx rather than httpx2; the
# client works the same. Silenced here only, so every other warning still fails a test.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

pytest_plugins = ["conftest_etcd"]

# CI clones the repository with shared/ beside it: never an absolute path.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def fixed_clock() -> datetime:
    return NOW


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The hook service with an empty environment and the fixed clock of the golden cases."""
    with TestClient(create_app(environ={}, clock=fixed_clock)) as test_client:
        yield test_client
