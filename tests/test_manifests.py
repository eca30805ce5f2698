"""The kustomize manifests build, validate against their schemas and say what the design says."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).parents[1]
DATA = ROOT / "tests" / "data"
MANIFESTS = ROOT / "metacontroller"
BASE = "metacontroller"
MESH_SWITCH = "metacontroller/overlays/mesh-switch"
ETCD = "metacontroller/overlays/etcd"
MIGRATION = "metacontroller/overlays/migration"
KUSTOMIZATIONS = (BASE, MESH_SWITCH, ETCD, MIGRATION)

NAMESPACE = "route-reflector"
HOOKS = "route-reflector-hooks"
HOOK_URL = f"http://{HOOKS}.{NAMESPACE}.svc"
CRD_NAME = "routereflectortopologies.route-reflector.dev"
CEL_MIN_MAX = "!has(self.min) || !has(self.max) || self.min <= self.max"
# The API groups whose kinds kubernetes_validate knows; anything else is a custom resource.
BUILT_IN_GROUPS = {
    "",
    "apps",
    "policy",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
    "networking.k8s.io",
}
KUBERNETES_VERSION = kubernetes_validate.latest_version()

Manifest = dict[str, Any]


@functools.cache
def build(kustomization: str) -> tuple[Manifest, ...]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with kustomize) is not on PATH")
    done = subprocess.run(
        ["kubectl", "kustomize", kustomization],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def group_of(manifest: Manifest) -> str:
    api_version: str = manifest["apiVersion"]
    return api_version.rpartition("/")[0]


def find(manifests: tuple[Manifest, ...], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and name in (None, m["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return copy.deepcopy(found[0])


def kinds(manifests: tuple[Manifest, ...]) -> set[str]:
    return {m["kind"] for m in manifests}


@functools.cache
def metacontroller_crds() -> dict[str, Manifest]:
    path = DATA / "schemas" / "metacontroller-crds-v1.yaml"
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return {doc["spec"]["names"]["kind"]: doc for doc in docs}


def our_crd() -> Manifest:
    return find(build(BASE), "CustomResourceDefinition", CRD_NAME)


def cluster_scoped_kinds() -> set[str]:
    crds = [*metacontroller_crds().values(), our_crd()]
    custom = {c["spec"]["names"]["kind"] for c in crds if c["spec"]["scope"] == "Cluster"}
    built_in = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    return custom | built_in


def structural_to_jsonschema(schema: Any) -> Any:
    """A Kubernetes structural schema as JSON Schema, unknown fields rejected instead of pruned.

    x-kubernetes-* keys are dropped (their effect on validation is ignored, except that
    preserve-unknown-fields keeps extra keys allowed), the OpenAPI v3.0 boolean
    `exclusiveMinimum`/`exclusiveMaximum` become numeric bounds, and an object that lists its
    properties gets `additionalProperties: false`, so a misspelt field fails here rather than
    being silently pruned by the API server.
    """
    if isinstance(schema, list):
        return [structural_to_jsonschema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {
        key: structural_to_jsonschema(value)
        for key, value in schema.items()
        if not key.startswith("x-kubernetes-")
        and key not in {"exclusiveMinimum", "exclusiveMaximum"}
    }
    if "properties" in schema:  # property names are data, not keywords
        converted["properties"] = {
            name: structural_to_jsonschema(sub) for name, sub in schema["properties"].items()
        }
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if schema.get(bound) is True:
            converted[bound] = converted.pop(limit)
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        converted["additionalProperties"] = False
    return converted


def crd_validator(crd: Manifest) -> jsonschema.protocols.Validator:
    (version,) = crd["spec"]["versions"]
    schema = structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    validator_class.check_schema(schema)
    validator: jsonschema.protocols.Validator = validator_class(schema)
    return validator


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def pod_spec(manifests: tuple[Manifest, ...]) -> Manifest:
    spec: Manifest = find(manifests, "Deployment", HOOKS)["spec"]["template"]["spec"]
    return spec


def container(manifests: tuple[Manifest, ...]) -> Manifest:
    (only,) = pod_spec(manifests)["containers"]
    return dict(only)


def env(manifests: tuple[Manifest, ...]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container(manifests)["env"]}


# Every kustomization


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_built_in_kinds_validate_strictly(kustomization: str) -> None:
    built_in = [m for m in build(kustomization) if group_of(m) in BUILT_IN_GROUPS]
    expected = {"Namespace", "CustomResourceDefinition", "Deployment", "Service"}
    assert expected <= kinds(tuple(built_in))
    for manifest in built_in:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_metacontroller_kinds_validate_against_metacontroller_crds(kustomization: str) -> None:
    crds = metacontroller_crds()
    controllers = [m for m in build(kustomization) if group_of(m) == "metacontroller.k8s.io"]
    assert sorted(m["kind"] for m in controllers) == ["CompositeController", "DecoratorController"]
    for manifest in controllers:
        crd = crds[manifest["kind"]]
        assert manifest["apiVersion"] == f"{crd['spec']['group']}/v1alpha1"
        crd_validator(crd).validate(manifest)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_kind_is_known_to_a_validator(kustomization: str) -> None:
    known = BUILT_IN_GROUPS | {"metacontroller.k8s.io", "route-reflector.dev"}
    assert {group_of(m) for m in build(kustomization)} <= known


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_cluster_scoped_kinds_have_no_namespace_and_the_rest_live_in_route_reflector(
    kustomization: str,
) -> None:
    cluster_scoped = cluster_scoped_kinds()
    for manifest in build(kustomization):
        namespace = manifest["metadata"].get("namespace")
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if manifest["kind"] in cluster_scoped:
            assert namespace is None, where
        else:
            assert namespace == NAMESPACE, where


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_sample_topology_validates_against_our_crd(kustomization: str) -> None:
    manifests = build(kustomization)
    sample = find(manifests, "RouteReflectorTopology", "default")
    assert sample["apiVersion"] == "route-reflector.dev/v1alpha1"
    crd_validator(our_crd()).validate(sample)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_service_and_disruption_budget_select_the_hook_pods(kustomization: str) -> None:
    manifests = build(kustomization)
    pod_labels = find(manifests, "Deployment", HOOKS)["spec"]["template"]["metadata"]["labels"]
    service = find(manifests, "Service", HOOKS)
    budget = find(manifests, "PodDisruptionBudget", HOOKS)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["minAvailable"] == 1
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
        {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": "metrics"},
    ]
    http = {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    metrics = {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
    assert http in container(manifests)["ports"]
    assert metrics in container(manifests)["ports"]
    assert {"name": "METRICS_PORT", "value": "9090"} in container(manifests)["env"]


def _selects(selector: Manifest, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels is used (no expressions)"
    wanted: dict[str, str] = selector.get("matchLabels", {})
    return wanted.items() <= labels.items()


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_network_policy_admits_only_metacontroller_to_hooks_and_the_scraper_to_metrics(
    kustomization: str,
) -> None:
    manifests = build(kustomization)
    deployment = find(manifests, "Deployment", HOOKS)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    policy = find(manifests, "NetworkPolicy", HOOKS)
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"] == NAMESPACE
    assert _selects(policy["spec"]["podSelector"], pod_labels), "the policy selects the hook pods"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    port_names = {p["name"] for p in container(manifests)["ports"]}
    rules = {}
    for rule in policy["spec"]["ingress"]:
        (port,) = rule["ports"]
        assert port["port"] in port_names, f"{port['port']} is not a port of the hook container"
        (peer,) = rule["from"]  # one peer, namespace AND pod selector in the same element
        assert set(peer) == {"namespaceSelector", "podSelector"}
        rules[port["port"]] = peer
    assert set(rules) == {"http", "metrics"}
    assert rules["http"] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "metacontroller"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "metacontroller"}},
    }
    assert rules["metrics"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "prometheus"}
    }
    # Every other hook-pod port stays closed: nothing but these two rules.
    assert len(policy["spec"]["ingress"]) == 2


def test_the_metacontroller_peer_of_the_policy_is_configurable_in_an_overlay(
    tmp_path: Path,
) -> None:
    shutil.copytree(MANIFESTS, tmp_path / "metacontroller", symlinks=True)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources:\n- ../metacontroller/base\n"
        "patches:\n- target:\n    kind: NetworkPolicy\n    name: route-reflector-hooks\n"
        "  patch: |-\n"
        "    - op: replace\n"
        "      path: /spec/ingress/0/from/0/namespaceSelector/matchLabels\n"
        "      value: {kubernetes.io/metadata.name: mc-system}\n"
        "    - op: replace\n"
        "      path: /spec/ingress/0/from/0/podSelector/matchLabels\n"
        "      value: {app: metacontroller-helm}\n"
    )
    policy = find(build(str(overlay)), "NetworkPolicy", HOOKS)
    peer = policy["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "mc-system"}
    assert peer["podSelector"]["matchLabels"] == {"app": "metacontroller-helm"}


# The CRD


def test_crd_names_scope_and_printer_columns() -> None:
    crd = our_crd()
    assert crd["spec"]["group"] == "route-reflector.dev"
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"] == {
        "kind": "RouteReflectorTopology",
        "listKind": "RouteReflectorTopologyList",
        "plural": "routereflectortopologies",
        "singular": "routereflectortopology",
        "shortNames": ["rrt"],
    }
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Topology": ("string", ".status.topology"),
        "Reflectors": ("integer", ".status.reflectors"),
        "Zones": ("integer", ".status.zoneCount"),
        "Ready": ("string", '.status.conditions[?(@.type=="Ready")].status'),
        "Age": ("date", ".metadata.creationTimestamp"),
    }


def test_crd_file_that_make_install_applies_is_the_one_kustomize_builds() -> None:
    assert yaml.safe_load((MANIFESTS / "crd.yaml").read_text()) == our_crd()


def test_crd_sets_no_default_so_environment_fallbacks_apply() -> None:
    schema = our_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    defaults = [
        path
        for path, node in walk(schema)
        if isinstance(node, dict) and "default" in node and not path.endswith(".properties")
    ]
    assert defaults == []


def test_spec_fields_are_all_optional_and_status_keeps_unknown_fields() -> None:
    schema = our_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    assert "required" not in spec
    assert set(spec["properties"]) == {
        "topology", "datastore", "nodeLabel", "zoneLabel", "rackLabel", "clusterID", "min", "max",
        "ratio", "steps", "incompatibleLabels", "preferredLabels", "nodeSelector", "tolerations",
        "peersPerNode", "waitSeconds", "paused", "nodeToNodeMesh", "legacyBGPPeers", "guard",
    }  # fmt: skip
    status = schema["properties"]["status"]
    assert status["type"] == "object"
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert set(status["properties"]) == {
        "topology", "reflectors", "zoneCount", "routeReflectors", "zones", "groups",
        "conditions", "observedGeneration", "released", "guard", "datastore",
    }  # fmt: skip


def test_min_max_rule_is_the_cel_expression_the_api_server_evaluates() -> None:
    spec = our_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    (rule,) = spec["x-kubernetes-validations"]
    assert rule["rule"] == CEL_MIN_MAX
    assert rule["message"]


FULL_SPEC: Manifest = {
    "topology": "multi",
    "datastore": "kubernetes",
    "nodeLabel": "route-reflector.dev/role=reflector",
    "zoneLabel": "topology.kubernetes.io/zone",
    "rackLabel": "example.com/rack",
    "clusterID": "10.%d.0.%d",
    "min": 2,
    "max": 9,
    "ratio": 0.01,
    "steps": [{"nodes": 0, "reflectors": 2}, {"nodes": 100, "reflectors": 4}],
    "incompatibleLabels": ["node-role.kubernetes.io/control-plane", "spot=true", "edge="],
    "preferredLabels": ["example.com/rr-capable=yes"],
    "nodeSelector": {
        "matchLabels": {"kubernetes.io/os": "linux"},
        "matchExpressions": [{"key": "pool", "operator": "In", "values": ["infra"]}],
    },
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "rr", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
    ],
    "peersPerNode": 3,
    "waitSeconds": 120,
    "paused": False,
    "nodeToNodeMesh": "DisableWhenReady",
    "guard": {"maxMissingFraction": 0.5, "minNodes": 3},
}


def topology(spec: Manifest) -> Manifest:
    return {
        "apiVersion": "route-reflector.dev/v1alpha1",
        "kind": "RouteReflectorTopology",
        "metadata": {"name": "default"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    "spec",
    [
        {},
        FULL_SPEC,
        {"nodeLabel": "calico-route-reflector="},
        {"zoneLabel": ""},
        {"clusterID": "224.0.0.%d"},
        {"clusterID": "10.0.0.1"},
        {"min": 0, "max": 1},
        {"ratio": 1},
    ],
    ids=repr,
)
def test_crd_accepts(spec: Manifest) -> None:
    crd_validator(our_crd()).validate(topology(spec))


@pytest.mark.parametrize(
    "spec",
    [
        {"min": "three"},
        {"min": 1001},
        {"max": 0},
        {"peersPerNode": 0},
        {"peersPerNode": 11},
        {"topology": "mesh"},
        {"datastore": "etcd"},
        {"ratio": 0},
        {"ratio": 1.5},
        {"waitSeconds": 3601},
        {"clusterID": "224.0.0.256"},
        {"clusterID": "224.0.%s.1"},
        {"clusterID": "224.0.0"},
        {"nodeLabel": "calico-route-reflector"},
        {"nodeLabel": "bad key=x"},
        {"rackLabel": ""},
        {"incompatibleLabels": ["=v"]},
        {"steps": [{"nodes": 10}]},
        {"steps": [{"nodes": -1, "reflectors": 1}]},
        {"steps": [{"nodes": n, "reflectors": 1} for n in range(65)]},
        {"nodeSelector": {"matchExpressions": [{"key": "k", "operator": "Gt"}]}},
        {"tolerations": [{"operator": "Contains"}]},
        {"nodeToNodeMesh": "Disable"},
        {"guard": {"maxMissingFraction": 2}},
        {"paused": "yes"},
        {"minimum": 3},
    ],
    ids=repr,
)
def test_crd_rejects(spec: Manifest) -> None:
    with pytest.raises(jsonschema.ValidationError):
        crd_validator(our_crd()).validate(topology(spec))


# The controllers


def example_controller(hook: str) -> Manifest:
    request = json.loads((DATA / "examples" / f"{hook}.request.json").read_text())
    controller: Manifest = request["controller"]
    return controller


def test_topology_controller_watches_topologies_owns_bgp_peers_and_finalizes_through_a_hook() -> (
    None
):
    composite = find(build(BASE), "CompositeController", "route-reflector-topology")
    example = example_controller("topology-sync")
    assert composite["spec"]["parentResource"] == example["spec"]["parentResource"]
    hooks = composite["spec"]["hooks"]
    assert {k: v for k, v in hooks.items() if k != "finalize"} == example["spec"]["hooks"]
    assert hooks["sync"]["webhook"]["url"] == f"{HOOK_URL}/topology/sync"
    assert hooks["finalize"]["webhook"]["url"] == f"{HOOK_URL}/topology/finalize"
    assert composite["spec"]["generateSelector"] is True
    assert composite["spec"]["resyncPeriodSeconds"] == 60
    in_place = {"method": "InPlace"}
    assert composite["spec"]["childResources"] == [
        {"apiVersion": "crd.projectcalico.org/v1", "resource": resource, "updateStrategy": in_place}
        for resource in ("bgppeers", "caliconodestatuses")
    ]


def test_node_controller_is_the_one_metacontroller_calls_with_nodes() -> None:
    decorator = find(build(BASE), "DecoratorController", "route-reflector-nodes")
    assert decorator["spec"] == example_controller("node-sync")["spec"]
    assert decorator["spec"]["resources"] == [
        {"apiVersion": "v1", "resource": "nodes", "ignoreStatusChanges": True}
    ]
    assert decorator["spec"]["hooks"]["customize"]["webhook"]["url"] == f"{HOOK_URL}/node/customize"


# The base Deployment


def test_hook_deployment_runs_the_image_cmd_unprivileged_without_api_access() -> None:
    manifests = build(BASE)
    deployment = find(manifests, "Deployment", HOOKS)
    pod = pod_spec(manifests)
    hooks = container(manifests)
    assert deployment["spec"]["replicas"] == 2
    assert hooks["image"].startswith("ghcr.io/route-reflector/calico-route-reflector-hooks:")
    assert "args" not in hooks and "command" not in hooks
    assert pod["serviceAccountName"] == HOOKS
    assert pod["automountServiceAccountToken"] is False
    assert find(manifests, "ServiceAccount", HOOKS)["automountServiceAccountToken"] is False
    assert hooks["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for probe in ("readinessProbe", "livenessProbe"):
        assert hooks[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert hooks["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "2Gi"},
    }
    spread = pod["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["kubernetes.io/hostname"]


def test_hook_deployment_sets_the_original_operator_environment() -> None:
    assert env(build(BASE)) == {
        "DATASTORE_TYPE": "incluster",
        "K8S_API_ENDPOINT": "https://kubernetes.default",
        "ROUTE_REFLECTOR_CLUSTER_ID": "224.0.0.%d",
        "ROUTE_REFLECTOR_MIN": "3",
        "ROUTE_REFLECTOR_MAX": "25",
        "ROUTE_REFLECTOR_RATIO": "0.005",
        "ROUTE_REFLECTOR_NODE_LABEL": "calico-route-reflector=",
        "ROUTE_REFLECTOR_ZONE_LABEL": "",
        "ROUTE_REFLECTOR_TOPOLOGY": "simple",
        "ROUTE_REFLECTOR_INCOMPATIBLE_NODE_LABELS": "",
        "ROUTE_REFLECTOR_WAIT_TIMEOUT": "0",
        "LOG_LEVEL": "info",
        "METRICS_PORT": "9090",
    }


def test_base_grants_no_api_permissions() -> None:
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & kinds(build(BASE))


# Overlays


def test_mesh_switch_may_only_read_create_patch_and_delete_bgp_configurations() -> None:
    manifests = build(MESH_SWITCH)
    role = find(manifests, "ClusterRole")
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["crd.projectcalico.org"]
        assert rule["resources"] == ["bgpconfigurations"]
        assert set(rule["verbs"]) <= {"get", "create", "patch", "delete"}
        if set(rule["verbs"]) & {"get", "patch", "delete"}:
            assert rule["resourceNames"] == ["default"]
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert verbs == {"get", "create", "patch", "delete"}
    binding = find(manifests, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = {"kind": "ServiceAccount", "name": HOOKS, "namespace": NAMESPACE}
    assert binding["subjects"] == [account]
    assert pod_spec(manifests)["automountServiceAccountToken"] is True
    assert find(manifests, "ServiceAccount", HOOKS)["automountServiceAccountToken"] is True
    sample = find(manifests, "RouteReflectorTopology", "default")
    assert sample["spec"]["nodeToNodeMesh"] == "DisableWhenReady"


def test_migration_overlay_may_only_delete_bgp_peers_beyond_the_mesh_switch() -> None:
    manifests = build(MIGRATION)
    role = find(manifests, "ClusterRole", "route-reflector-hooks-migration")
    assert role["rules"] == [
        {"apiGroups": ["crd.projectcalico.org"], "resources": ["bgppeers"], "verbs": ["delete"]}
    ]
    binding = find(manifests, "ClusterRoleBinding", "route-reflector-hooks-migration")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = {"kind": "ServiceAccount", "name": HOOKS, "namespace": NAMESPACE}
    assert binding["subjects"] == [account]
    assert pod_spec(manifests)["automountServiceAccountToken"] is True
    sample = find(manifests, "RouteReflectorTopology", "default")
    assert sample["spec"]["legacyBGPPeers"] == "RemoveWhenReady"


def test_etcd_overlay_mounts_the_certificates_and_points_calico_env_at_them() -> None:
    manifests = build(ETCD)
    settings = env(manifests)
    assert settings["DATASTORE_TYPE"] == "etcdv3"
    assert settings["ETCD_ENDPOINTS"].startswith("https://")
    mounts = container(manifests)["volumeMounts"]
    mount = next(m for m in mounts if m["mountPath"] == "/calico-secrets")
    assert mount["readOnly"] is True
    volume = next(v for v in pod_spec(manifests)["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "calico-etcd-certs"
    for variable, key in (
        ("ETCD_CA_CERT_FILE", "etcd-ca"),
        ("ETCD_CERT_FILE", "etcd-cert"),
        ("ETCD_KEY_FILE", "etcd-key"),
    ):
        assert settings[variable] == f"/calico-secrets/{key}"
    sample = find(manifests, "RouteReflectorTopology", "default")
    assert sample["spec"]["datastore"] == "etcdv3"
    assert "Secret" not in kinds(manifests)


def test_etcd_secret_example_is_a_valid_secret_with_the_mounted_keys() -> None:
    example = yaml.safe_load((MANIFESTS / "overlays" / "etcd" / "secret.example.yaml").read_text())
    kubernetes_validate.validate(example, KUBERNETES_VERSION, strict=True)
    assert example["metadata"] == {"name": "calico-etcd-certs", "namespace": NAMESPACE}
    assert set(example["data"]) == {"etcd-ca", "etcd-cert", "etcd-key"}


# Makefile and Dockerfile


@pytest.mark.skipif(shutil.which("make") is None, reason="make not on PATH")
def test_make_targets_for_shipping_use_the_image_name() -> None:
    done = subprocess.run(
        ["make", "-n", "docker-build", "docker-push", "install", "deploy", "undeploy",
         "IMG_REPO=r", "IMG_NAME=n", "IMG_VERSION=v"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "r/n:v" in done.stdout
    assert "metacontroller/crd.yaml" in done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make not on PATH")
def test_make_deploy_applies_the_manifests_with_the_chosen_image(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copytree(MANIFESTS, tmp_path / "metacontroller", symlinks=True)
    applied = tmp_path / "applied.yaml"
    fake = tmp_path / "kubectl"
    kubectl = shutil.which("kubectl")
    # Stands in for a cluster: `apply -k DIR` saves what it would apply; the rest is passed on.
    fake.write_text(
        "#!/bin/sh\n"
        f'[ "$1 $2" = "apply -k" ] && exec {kubectl} kustomize "$3" > {applied}\n'
        '[ "$1 $2" = "apply -f" ] && exit 0\n'
        '[ "$1" = "wait" ] && exit 0\n'
        f'exec {kubectl} "$@"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    done = subprocess.run(
        ["make", "deploy", f"KUBECTL={fake}", "IMG_REPO=r", "IMG_NAME=n", "IMG_VERSION=v"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "MAKEFLAGS": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifests = tuple(doc for doc in yaml.safe_load_all(applied.read_text()) if doc)
    assert container(manifests)["image"] == "r/n:v"


def test_dockerfile_builds_in_stages_and_runs_the_hook_server_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert sum(line.startswith("FROM ") for line in instructions) >= 2
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users, "no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    cmd = next(line for line in reversed(instructions) if line.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD ")) == [
        "python", "-m", "hooks", "serve", "--host", "0.0.0.0", "--port", "8080",
    ]  # fmt: skip
    assert re.search(r"^EXPOSE 8080$", dockerfile, re.MULTILINE)


def test_dockerignore_keeps_the_venv_git_and_tests_out_of_the_build_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", "tests"} <= ignored


@pytest.mark.parametrize(
    ("kustomization", "mounted"), [(BASE, False), (ETCD, False), (MESH_SWITCH, True)]
)
def test_only_the_mesh_switch_overlay_mounts_a_service_account_token(
    kustomization: str, mounted: bool
) -> None:
    manifests = build(kustomization)
    assert pod_spec(manifests)["automountServiceAccountToken"] is mounted
    assert find(manifests, "ServiceAccount", HOOKS)["automountServiceAccountToken"] is mounted


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_overlay_runs_a_pinned_image_tag(kustomization: str) -> None:
    image = container(build(kustomization))["image"]
    name, _, tag = image.rpartition(":")
    assert name == "ghcr.io/route-reflector/calico-route-reflector-hooks"
    assert tag and tag != "latest" and "/" not in tag
