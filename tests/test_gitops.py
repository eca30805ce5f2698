"""GitOps health: conditions carry observedGeneration and Flux-style Reconciling/Stalled, and
the Argo CD health check (Lua, run by a real Lua interpreter) judges them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from scenario import Scenario, zoned_nodes

ROOT = Path(__file__).parents[1]
HEALTH = ROOT / "docs" / "argocd" / "health.lua"
ARGOCD_CM = ROOT / "docs" / "argocd" / "argocd-cm.yaml"
HEALTH_KEY = "resource.customizations.health.route-reflector.dev_RouteReflectorTopology"
INSTALL = "make lua"
Json = dict[str, Any]

SPEC = {"zoneLabel": "topology.kubernetes.io/zone", "min": 2}


def transitioning() -> Scenario:
    """A converged topology whose RR was cordoned: the replacement waits for its sessions."""
    scenario = Scenario(SPEC, zoned_nodes({"a": 4, "b": 4}), establish_after=5, check=False)
    scenario.run_until_still()
    scenario.cordon(sorted(scenario.reflectors())[0])
    scenario.step(2)
    return scenario


def break_spec(scenario: Scenario) -> None:
    """An edit the API server's CEL rule would refuse, as if it got past (an older CRD)."""
    scenario.spec = {**scenario.spec, "min": 9, "max": 2}
    scenario.generation += 1


def conditions(scenario: Scenario) -> dict[str, Json]:
    return {c["type"]: c for c in (scenario.status or {})["conditions"]}


def test_every_condition_names_the_generation_it_was_computed_for() -> None:
    scenario = Scenario(SPEC, zoned_nodes({"a": 4, "b": 4}))
    scenario.run_until_still()
    assert {c["observedGeneration"] for c in conditions(scenario).values()} == {1}

    scenario.set_spec(min=3)
    scenario.step()

    assert {c["observedGeneration"] for c in conditions(scenario).values()} == {2}


def test_a_converged_topology_is_neither_reconciling_nor_stalled() -> None:
    scenario = Scenario(SPEC, zoned_nodes({"a": 4, "b": 4}))
    scenario.run_until_still()
    found = conditions(scenario)
    assert found["Ready"]["status"] == "True"
    assert "Reconciling" not in found and "Stalled" not in found


def test_a_topology_waiting_for_sessions_is_reconciling() -> None:
    scenario = transitioning()
    found = conditions(scenario)
    assert found["Ready"]["status"] == "False"
    assert found["Reconciling"]["status"] == "True"
    assert found["Reconciling"]["reason"] in {"TransitionPending", "LabelsPending"}
    assert "Stalled" not in found


def test_an_invalid_spec_is_stalled_until_fixed() -> None:
    scenario = Scenario(SPEC, zoned_nodes({"a": 4, "b": 4}))
    scenario.run_until_still()
    break_spec(scenario)
    scenario.step()
    found = conditions(scenario)
    assert (found["Stalled"]["status"], found["Stalled"]["reason"]) == ("True", "InvalidSpec")
    assert found["Stalled"]["observedGeneration"] == 2
    assert "Reconciling" not in found

    scenario.set_spec(min=2, max=25)
    scenario.run_until_still()
    assert "Stalled" not in conditions(scenario)
    assert conditions(scenario)["Ready"]["status"] == "True"


# --- the Argo CD health check, in a real Lua interpreter -----------------------------------------


def lua() -> str:
    for name in ("lua5.4", "lua5.3", "lua5.1", "lua"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("RR_SKIP_LUA") == "1":
        pytest.skip("no Lua interpreter and RR_SKIP_LUA=1")
    pytest.fail(f"no Lua interpreter: run `{INSTALL}` (or set RR_SKIP_LUA=1 to skip)")


def lua_literal(value: Any) -> str:
    """JSON as a Lua table constructor (what Argo CD hands the script as `obj`)."""
    if isinstance(value, dict):
        fields = (f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(fields) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nil"
    return json.dumps(value)


def argocd_health(obj: Json, tmp_path: Path) -> tuple[str, str]:
    harness = tmp_path / "harness.lua"
    harness.write_text(
        f"obj = {lua_literal(obj)}\n"
        f"local hs = assert(loadfile({json.dumps(str(HEALTH))}))()\n"
        'io.write(hs.status, "\\t", hs.message or "")\n'
    )
    done = subprocess.run(
        [lua(), str(harness)], capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 0, done.stderr
    status, message = done.stdout.split("\t", 1)
    return status, message


def topology_object(scenario: Scenario) -> Json:
    obj = scenario.topology()
    obj["metadata"]["generation"] = scenario.generation
    return obj


def test_argocd_sees_a_converged_topology_healthy(tmp_path: Path) -> None:
    scenario = Scenario(SPEC, zoned_nodes({"a": 4, "b": 4}))
    scenario.run_until_still()
    status, message = argocd_health(topology_object(scenario), tmp_path)
    assert status == "Healthy"
    assert message.startswith("Converged: ")


def test_argocd_sees_a_transition_progressing(tmp_path: Path) -> None:
    scenario = transitioning()
    status, _ = argocd_health(topology_object(scenario), tmp_path)
    assert status == "Progressing"


def test_argocd_sees_an_invalid_spec_degraded_with_the_field_named(tmp_path: Path) -> None:
    scenario = Scenario(SPEC, zoned_nodes({"a": 4, "b": 4}))
    scenario.run_until_still()
    break_spec(scenario)
    scenario.step()
    status, message = argocd_health(topology_object(scenario), tmp_path)
    assert status == "Degraded"
    assert "InvalidSpec" in message and "spec.min" in message


def test_argocd_waits_while_the_conditions_judge_an_older_generation(tmp_path: Path) -> None:
    scenario = Scenario(SPEC, zoned_nodes({"a": 4, "b": 4}))
    scenario.run_until_still()
    obj = topology_object(scenario)
    obj["metadata"]["generation"] = scenario.generation + 1  # edited in git, not synced yet
    status, message = argocd_health(obj, tmp_path)
    assert status == "Progressing"
    assert f"generation {scenario.generation + 1}" in message


def test_argocd_sees_a_paused_topology_suspended(tmp_path: Path) -> None:
    scenario = Scenario({**SPEC, "paused": True}, zoned_nodes({"a": 4, "b": 4}), check=False)
    scenario.step()
    status, _ = argocd_health(topology_object(scenario), tmp_path)
    assert status == "Suspended"


def test_argocd_sees_a_topology_without_status_progressing(tmp_path: Path) -> None:
    scenario = Scenario(SPEC, zoned_nodes({"a": 4}))
    status, _ = argocd_health(topology_object(scenario), tmp_path)
    assert status == "Progressing"


def test_the_argocd_config_map_carries_the_tested_script() -> None:
    config = yaml.safe_load(ARGOCD_CM.read_text())
    assert config["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/part-of": "argocd"},
    }
    assert config["data"][HEALTH_KEY] == HEALTH.read_text()


def test_argo_cd_applies_the_crd_before_the_topology_object() -> None:
    crd = yaml.safe_load((ROOT / "metacontroller/base/crd.yaml").read_text())
    topology = yaml.safe_load((ROOT / "metacontroller/base/default-topology.yaml").read_text())
    wave = "argocd.argoproj.io/sync-wave"
    assert int(crd["metadata"]["annotations"][wave]) < 0
    assert int(topology["metadata"]["annotations"][wave]) > 0
    options = topology["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
    assert "SkipDryRunOnMissingResource=true" in options
