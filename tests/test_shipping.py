"""What a user installs: the image name and tag, the lock file, the licence, the Dockerfile."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
ROOT_NAME = canonicalize_name(PROJECT["name"])


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]
    via: tuple[str, ...]  # what pulled it in: a locked package or the project itself


def read_lock(path: Path) -> dict[str, Pin]:
    """pip-compile's output: `name==version [; marker] \\`, its hashes, its `# via` lines."""
    pins: dict[str, Pin] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
    for entry in entries:
        head = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", entry)
        if head is None:
            continue
        name = canonicalize_name(head[1])
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
        via_text = entry.split("# via", 1)[1] if "# via" in entry else ""
        via = tuple(
            canonicalize_name(v.split(" (")[0])
            for v in re.findall(r"#?\s*([A-Za-z0-9._-]+(?: \(pyproject\.toml\))?)", via_text)
            if v.strip()
        )
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = Pin(name, head[2], hashes, via)
    return pins


def declared(extras: tuple[str, ...] = ()) -> list[Requirement]:
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    return found


LOCKS = {"requirements.lock": (), "requirements-test.lock": ("test",)}


@pytest.mark.parametrize(("lock", "extras"), LOCKS.items())
def test_every_declared_dependency_is_pinned_to_a_version_it_allows_with_hashes(
    lock: str, extras: tuple[str, ...]
) -> None:
    pins = read_lock(ROOT / lock)
    for requirement in declared(extras):
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{lock} does not pin {requirement.name}: run `make lock`"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{lock} pins {pin.name}=={pin.version}, pyproject asks {requirement}: run `make lock`"
        )
    for pin in pins.values():
        assert pin.hashes, f"{lock}: {pin.name} has no hash"


@pytest.mark.parametrize(("lock", "extras"), LOCKS.items())
def test_the_lock_holds_nothing_the_project_does_not_pull_in(
    lock: str, extras: tuple[str, ...]
) -> None:
    pins = read_lock(ROOT / lock)
    direct = {canonicalize_name(r.name) for r in declared(extras)}
    reached: set[str] = {ROOT_NAME}
    changed = True
    while changed:
        changed = False
        for pin in pins.values():
            if pin.name not in reached and set(pin.via) & reached:
                reached.add(pin.name)
                changed = True
    assert set(pins) - reached == set(), f"{lock} pins packages nothing needs: run `make lock`"
    named_by_project = {p.name for p in pins.values() if ROOT_NAME in p.via}
    assert named_by_project == direct, f"{lock} and pyproject disagree: run `make lock`"


def test_the_test_lock_pins_the_shipped_dependencies_at_the_same_versions() -> None:
    shipped = read_lock(ROOT / "requirements.lock")
    tested = read_lock(ROOT / "requirements-test.lock")
    assert {n: p.version for n, p in shipped.items()} == {n: tested[n].version for n in shipped}


def test_the_image_leaves_the_kubernetes_client_out() -> None:
    shipped = read_lock(ROOT / "requirements.lock")
    assert "kubernetes" not in shipped
    sources = "\n".join(p.read_text() for p in (ROOT / "hooks").rglob("*.py"))
    assert not re.search(r"^\s*(from|import) kubernetes\b", sources, re.MULTILINE)


def test_licence_is_the_apache_text_named_in_spdx_form() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def make_variable(name: str) -> str:
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "image"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    image = done.stdout.strip()
    return {"IMG": image}[name]


@pytest.mark.skipif(shutil.which("make") is None, reason="make not on PATH")
def test_the_release_tag_is_pyprojects_version_in_the_makefile_and_the_base_deployment() -> None:
    version = PROJECT["version"]
    image = make_variable("IMG")
    assert image == f"ghcr.io/route-reflector/calico-route-reflector-hooks:{version}"
    deployment = yaml.safe_load((ROOT / "metacontroller/base/deployment.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image
    makefile = (ROOT / "Makefile").read_text()
    assert f"BASE_IMG := {image.rsplit(':', 1)[0]}" in makefile


@pytest.mark.skipif(shutil.which("make") is None, reason="make not on PATH")
def test_docker_build_passes_version_revision_and_source_for_the_oci_labels() -> None:
    done = subprocess.run(
        ["make", "-n", "docker-build", "IMG_REPO=r", "REVISION=abc123", "SOURCE=https://s"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    command = " ".join(done.stdout.replace("\\\n", " ").split())
    version = PROJECT["version"]
    assert f"--build-arg VERSION={version}" in command
    assert "--build-arg REVISION=abc123" in command
    assert "--build-arg SOURCE=https://s" in command
    assert f"-t r/calico-route-reflector-hooks:{version}" in command


def dockerfile_instructions() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_image_carries_oci_labels_from_the_build_arguments() -> None:
    instructions = dockerfile_instructions()
    final = instructions[max(i for i, line in enumerate(instructions) if line.startswith("FROM")) :]
    labels = dict(re.findall(r'(org\.opencontainers\.image\.\w+)="([^"]*)"', " ".join(final)))
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert labels["org.opencontainers.image.source"] == "${SOURCE}"
    assert labels["org.opencontainers.image.licenses"] == PROJECT["license"]
    args = {line.split()[1].split("=")[0] for line in final if line.startswith("ARG ")}
    assert {"VERSION", "REVISION", "SOURCE"} <= args


def test_the_image_installs_the_lock_with_hashes_and_resolves_nothing_else() -> None:
    instructions = dockerfile_instructions()
    installs = [line for line in instructions if "pip install" in line]
    assert any(
        "--require-hashes" in line and "-r requirements.lock" in line for line in installs
    ), installs
    for line in installs:
        assert "--no-deps" in line, f"resolves dependencies outside the lock: {line}"
    python = {line.split()[1] for line in instructions if line.startswith("FROM ")}
    compiled = re.search(r"with Python (\d+\.\d+)", (ROOT / "requirements.lock").read_text())
    assert compiled is not None
    assert python == {f"python:{compiled[1]}-slim"}
    copied = " ".join(line for line in instructions if line.startswith("COPY "))
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    for needed in ("requirements.lock", "pyproject.toml", "README.md", "LICENSE", "hooks/"):
        assert needed in copied
        assert needed.rstrip("/") not in ignored


@pytest.mark.skipif(shutil.which("make") is None, reason="make not on PATH")
def test_make_venv_installs_from_the_test_lock_with_hashes() -> None:
    done = subprocess.run(
        ["make", "-n", "-B", "venv"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    installs = [line for line in done.stdout.splitlines() if "pip install" in line]
    assert any("--require-hashes" in line and "requirements-test.lock" in line for line in installs)
    for line in installs:
        assert "--no-deps" in line, line


# --- version minimums: stated in the README, checked where they can be ---------------------------

MIN_KUBERNETES = "1.25"  # CRD validation rules (CEL) are on by default from 1.25 (beta)
MIN_METACONTROLLER = "4.11.16"  # DecoratorController `ignoreStatusChanges`
MIN_CALICO = "3.21"  # CalicoNodeStatus, read for session-aware make-before-break
# The Kubernetes version each x-kubernetes-validations field needs (beta, on by default).
CEL_FIELDS = {"rule": "1.25", "message": "1.25", "messageExpression": "1.27", "reason": "1.28",
              "fieldPath": "1.28", "optionalOldSelf": "1.30"}  # fmt: skip
# CEL libraries newer than the base language, by the first function name they add.
CEL_LIBRARIES = {"isSorted(": "1.26", "indexOf(": "1.26", "find(": "1.26", "findAll(": "1.26",
                 "url(": "1.26", "authorizer": "1.27", "isQuantity(": "1.29", "quantity(": "1.29",
                 "ip(": "1.30", "cidr(": "1.31", "format.": "1.32"}  # fmt: skip


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def readme_minimums() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Version minimums", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| ≥ ([0-9.]+) \|", section, re.MULTILINE)
    return dict(rows)


def validations(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        found += node.get("x-kubernetes-validations", [])
        for value in node.values():
            found += validations(value)
    elif isinstance(node, list):
        for value in node:
            found += validations(value)
    return found


def test_the_readme_states_the_minimums_the_checks_use() -> None:
    assert readme_minimums() == {
        "Kubernetes": MIN_KUBERNETES,
        "Metacontroller": MIN_METACONTROLLER,
        "Calico": MIN_CALICO,
    }


def test_the_crd_uses_no_validation_feature_newer_than_the_stated_kubernetes() -> None:
    crd = yaml.safe_load((ROOT / "metacontroller/base/crd.yaml").read_text())
    rules = validations(crd)
    assert rules, "the CRD has CEL rules: the minimum is theirs"
    needed = [MIN_KUBERNETES]
    for rule in rules:
        unknown = set(rule) - set(CEL_FIELDS)
        assert not unknown, f"x-kubernetes-validations fields of unknown age: {unknown}"
        needed += [CEL_FIELDS[key] for key in rule]
        expression = str(rule["rule"])
        needed += [v for name, v in CEL_LIBRARIES.items() if name in expression]
    assert max(needed, key=version_tuple) == MIN_KUBERNETES


def test_every_built_in_manifest_validates_strictly_against_the_stated_kubernetes() -> None:
    import kubernetes_validate

    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with kustomize) is not on PATH")
    for overlay in ("metacontroller", "metacontroller/overlays/migration",
                    "metacontroller/overlays/etcd"):  # fmt: skip
        built = subprocess.run(
            ["kubectl", "kustomize", overlay],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        for manifest in yaml.safe_load_all(built.stdout):
            group = manifest["apiVersion"].rpartition("/")[0]
            if group in {"", "apps", "policy", "rbac.authorization.k8s.io", "apiextensions.k8s.io"}:
                kubernetes_validate.validate(manifest, f"{MIN_KUBERNETES}.0", strict=True)


def test_metacontroller_features_used_are_those_of_the_stated_minimum() -> None:
    controllers = list(
        yaml.safe_load_all((ROOT / "metacontroller/base/controllers.yaml").read_text())
    )
    decorator = next(c for c in controllers if c["kind"] == "DecoratorController")
    assert decorator["spec"]["resources"][0]["ignoreStatusChanges"] is True
    composite = next(c for c in controllers if c["kind"] == "CompositeController")
    owned = {child["resource"] for child in composite["spec"]["childResources"]}
    assert "caliconodestatuses" in owned  # Calico >= MIN_CALICO: session status


def test_the_readmes_dedicated_pool_example_makes_only_the_tainted_pool_reflectors() -> None:
    from scenario import Scenario, zoned_nodes

    text = (ROOT / "README.md").read_text()
    section = text.split("**A dedicated route-reflector pool**", 1)[1]
    spec_yaml = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert spec_yaml is not None
    example = yaml.safe_load(spec_yaml[1])["spec"]
    taint = example["tolerations"][0]
    nodes = zoned_nodes({"a": 6, "b": 6})
    pool = {"a-004", "a-005", "b-004", "b-005"}
    for node in nodes:
        if node["metadata"]["name"] in pool:
            node["metadata"]["labels"] |= example["nodeSelector"]["matchLabels"]
            node["spec"]["taints"] = [
                {"key": taint["key"], "value": taint["value"], "effect": taint["effect"]}
            ]
    spec = {"zoneLabel": "topology.kubernetes.io/zone", "min": 2, **example}
    scenario = Scenario(spec, nodes)
    scenario.run_until_still()
    assert set(scenario.reflectors()) == pool

    without_toleration = Scenario({**spec, "tolerations": []}, nodes, check=False)
    without_toleration.step()
    assert set(without_toleration.reflectors()) == set()


@pytest.mark.slow
def test_the_wheel_declares_the_spdx_licence_and_ships_the_file_without_warnings(
    tmp_path: Path,
) -> None:
    import sys
    import zipfile

    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "bench"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Deprecat" not in done.stdout + done.stderr, done.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text.splitlines()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
