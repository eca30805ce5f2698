"""The service loads what the first topology sync needs before it takes requests: otherwise the
first large sync of a fresh server loaded it while answering, and /healthz waited behind it.
The topology modules load with the app (hooks.topologies imports them, no deferred import)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGIES = [f"hooks.topologies.{name}" for name in ("hierarchy", "multi", "quorum", "simple")]

PROBE = """
import json, sys
names = json.loads(sys.argv[1])
before = [n for n in names if n in sys.modules]
from hooks.app import create_app
app = create_app({})
after = [n for n in names if n in sys.modules]
print(json.dumps([before, after]))
"""


def test_the_topology_modules_are_loaded_with_the_app_not_by_the_first_request() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(TOPOLOGIES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == []  # what loading the app loads, nothing before it did
    assert after == TOPOLOGIES
