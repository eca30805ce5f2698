"""The layer check `make lint` runs (tests/layers.py) passes on the source and fails on a
planted violation, named with the import that makes it."""

from __future__ import annotations

import shutil
from pathlib import Path

import layers
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_source_keeps_its_layers() -> None:
    assert layers.violations(ROOT) == []


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "hooks", tmp_path / "hooks", ignore=shutil.ignore_patterns("*.pyc"))
    return tmp_path


def plant(root: Path, module: str, line: str) -> None:
    path = root / module
    path.write_text(path.read_text() + f"\n\ndef planted() -> None:\n    {line}\n")


def test_a_core_module_importing_a_wire_struct_fails(copy: Path) -> None:
    plant(copy, "hooks/transitions.py", "from hooks.wire import TopologyStatusWire")
    assert layers.violations(copy) == [
        "hooks.transitions reaches hooks.wire (imported by hooks.transitions)"
    ]
    assert layers.main([str(copy)]) == 1


def test_a_core_module_reaching_calico_rendering_through_another_module_fails(
    copy: Path,
) -> None:
    plant(copy, "hooks/stamps.py", "import hooks.calico")
    found = layers.violations(copy)
    assert "hooks.transitions reaches hooks.calico (imported by hooks.stamps)" in found
    assert all("reaches hooks.calico" in line or "reaches hooks.wire" in line for line in found)


@pytest.mark.parametrize("client", ["starlette.requests", "uvicorn", "kubernetes", "etcd3gw"])
def test_a_topology_importing_a_client_fails(copy: Path, client: str) -> None:
    plant(copy, "hooks/topologies/simple.py", f"import {client}")
    found = layers.violations(copy)
    assert (
        f"hooks.topologies.simple reaches {client} (imported by hooks.topologies.simple)" in found
    )


def test_a_hook_module_importing_a_datastore_fails(copy: Path) -> None:
    plant(copy, "hooks/reconcile.py", "from hooks.datastores.etcd import EtcdApplier")
    found = layers.violations(copy)
    assert "hooks.reconcile reaches hooks.datastores.etcd (imported by hooks.reconcile)" in found


def test_a_datastore_importing_the_app_fails(copy: Path) -> None:
    plant(copy, "hooks/datastores/etcd_sweep.py", "from hooks.app import create_app")
    found = layers.violations(copy)
    assert (
        "hooks.datastores.etcd_sweep reaches hooks.app (imported by hooks.datastores.etcd_sweep)"
        in found
    )
