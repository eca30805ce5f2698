"""Bad input over real HTTP (uvicorn): a 4xx with a JSON body naming the field, never a 5xx,
never a stack trace at error level, and never a 200 that drops children or strips a managed key
the input did not validly ask to change (issue 13, section 4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from golden import FIXTURES, ROUTES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from served import serving

from hooks import wire
from hooks.config import SpecError, load_settings
from hooks.stamps import stamp

TOPOLOGY = wire.TOPOLOGY_KEY
DEEP = b"[" * 100_000 + b"]" * 100_000
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
Json = dict[str, Any]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    """`python -m hooks serve` on a free port; its stderr kept in a file to read afterwards."""
    log = tmp_path_factory.mktemp("served") / "stderr.log"
    with (
        log.open("wb") as sink,
        serving({"LOG_LEVEL": "info"}, stderr=sink) as (_, port),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        yield client, log
    text = log.read_text()
    assert "Traceback" not in text and '"internal_error"' not in text, text[-4000:]


def fixture(hook: str, case: str) -> Json:
    loaded: Json = json.loads((FIXTURES / hook / case / "request.json").read_text())
    return loaded


def post(client: httpx.Client, hook: str, body: bytes) -> httpx.Response:
    return client.post(ROUTES[hook], content=body)


def assert_named_400(response: httpx.Response, field_part: str) -> None:
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error"]
    assert field_part in (answer["field"] or ""), answer


def topology_bytes(change: Any) -> bytes:
    body = fixture("topology-sync", "converged")
    change(body)
    return json.dumps(body).encode()


CHILD = "default-rr-mesh"


def test_invalid_utf8_in_a_label_value_is_a_400_naming_the_label(
    served: tuple[httpx.Client, Path],
) -> None:
    body = (FIXTURES / "node-sync" / "reflector" / "request.json").read_bytes()
    response = post(served[0], "node-sync", body.replace(b'"linux"', b'"li\xffnux"'))
    assert_named_400(response, "object.metadata.labels.kubernetes.io/os")


def test_invalid_utf8_in_a_node_name_key_is_a_400_naming_the_node_map(
    served: tuple[httpx.Client, Path],
) -> None:
    body = topology_bytes(lambda b: None).replace(b'"Node.v1": {"node-1"', b'"Node.v1": {"n\xff1"')
    assert b"\xff" in body
    assert_named_400(post(served[0], "topology-sync", body), "related.Node.v1")


def test_invalid_utf8_inside_a_child_decoded_late_is_a_400_naming_the_child(
    served: tuple[httpx.Client, Path],
) -> None:
    body = topology_bytes(lambda b: b["parent"]["spec"].update(paused=True))
    body = body.replace(b'"name": "default-rr-mesh"', b'"name": "default-rr-m\xffsh"')
    assert_named_400(post(served[0], "topology-sync", body), f"children.{wire.BGPPEER_KEY}")


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (b'"spec": {"topology": "simple", ', "parent.spec.x[0]"),
        (b'"parent": {', "parent.x[0]"),
        (b'"related": {', "related.x[0]"),
        (b'"children": {', "children"),
    ],
    ids=["spec", "parent-unknown-field", "related", "children"],
)
def test_a_hundred_thousand_nested_arrays_are_a_400_naming_where(
    served: tuple[httpx.Client, Path], where: bytes, field: str
) -> None:
    body = topology_bytes(lambda b: None)
    assert where in body
    body = body.replace(where, where + b'"x": ' + DEEP + b", ", 1)
    assert_named_400(post(served[0], "topology-sync", body), field)


def test_a_status_nested_too_deep_is_a_400_naming_the_status(
    served: tuple[httpx.Client, Path],
) -> None:
    body = topology_bytes(lambda b: b["parent"].update(status="STATUS"))
    body = body.replace(b'"STATUS"', DEEP)
    assert_named_400(post(served[0], "topology-sync", body), "parent.status[0]")


def test_a_child_nested_too_deep_is_a_400_naming_the_child(
    served: tuple[httpx.Client, Path],
) -> None:
    body = topology_bytes(lambda b: b["children"][wire.BGPPEER_KEY].update({CHILD: "CHILD"}))
    body = body.replace(b'"CHILD"', DEEP)
    assert_named_400(post(served[0], "topology-sync", body), f"{CHILD}[0]")


@pytest.mark.parametrize(
    ("child", "field"),
    [
        ("a string", f"children.{wire.BGPPEER_KEY}.{CHILD}"),
        ({"metadata": [1]}, f"children.{wire.BGPPEER_KEY}.{CHILD}.metadata"),
        ({"metadata": {"labels": [1]}}, f"children.{wire.BGPPEER_KEY}.{CHILD}.metadata.labels"),
        ({"spec": "x"}, f"children.{wire.BGPPEER_KEY}.{CHILD}.spec"),
    ],
    ids=["string", "metadata-list", "labels-list", "spec-string"],
)
@pytest.mark.parametrize("why", ["paused", "invalid-spec"])
def test_a_malformed_child_on_the_echo_path_is_a_400_naming_it(
    served: tuple[httpx.Client, Path], child: Any, field: str, why: str
) -> None:
    def change(body: Json) -> None:
        body["children"][wire.BGPPEER_KEY][CHILD] = child
        body["parent"]["spec"] |= {"paused": True} if why == "paused" else {"min": "two"}

    response = post(served[0], "topology-sync", topology_bytes(change))
    assert_named_400(response, field)


def test_year_9999_stamps_in_status_restart_the_wait_instead_of_failing(
    served: tuple[httpx.Client, Path],
) -> None:
    def pending_since(stamp: str) -> Json:
        body = fixture("topology-sync", "converged")
        for rr in body["parent"]["status"]["routeReflectors"]:
            rr |= {"state": "Pending", "since": stamp}
        return body

    # What the same cluster plans with a sane stamp: the children a far-future stamp must not drop.
    now = stamp(datetime.now(UTC))
    sane = post(served[0], "topology-sync", json.dumps(pending_since(now)).encode())
    assert sane.status_code == 200, sane.text
    planned = {c["metadata"]["name"] for c in sane.json()["children"]}
    body = pending_since("9999-12-31T23:59:59Z")
    status = body["parent"]["status"]
    for condition in status["conditions"]:
        condition["lastTransitionTime"] = "9999-12-31T23:59:59Z"
    status["guard"] = {"trippedSince": "9999-12-31T23:59:59Z"}
    body["parent"]["metadata"]["creationTimestamp"] = "9999-12-31T23:59:59Z"
    response = post(served[0], "topology-sync", json.dumps(body).encode())
    assert response.status_code == 200, response.text
    answer = response.json()
    names = {c["metadata"]["name"] for c in answer["children"]}
    assert names == planned
    assert "9999" not in json.dumps(answer["status"]["routeReflectors"])
    assert "9999" not in json.dumps(answer["status"].get("guard", {}))


# --- the fuzz test -----------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
# Where a request is damaged; every path exists in the base request of its hook.
PATHS = {
    "topology-sync": [
        ("parent", "spec", "min"),
        ("parent", "spec", "topology"),
        ("parent", "spec", "nodeLabel"),
        ("parent", "spec"),
        ("parent", "status"),
        ("parent", "status", "routeReflectors"),
        ("parent", "metadata", "creationTimestamp"),
        ("children", wire.BGPPEER_KEY, CHILD),
        ("children", wire.BGPPEER_KEY, CHILD, "metadata"),
        ("children", wire.BGPPEER_KEY),
        ("related",),
        ("controller",),
        ("unknown",),
    ],
    "node-sync": [
        ("related", TOPOLOGY, "default", "status"),
        ("related", TOPOLOGY, "default", "status", "routeReflectors"),
        ("related", TOPOLOGY, "default", "status", "topology"),
        ("related", TOPOLOGY, "default", "spec", "nodeLabel"),
        ("related", TOPOLOGY, "default", "spec"),
        ("related", TOPOLOGY),
        ("object", "metadata", "labels"),
        ("object", "metadata", "annotations"),
        ("object", "metadata", "name"),
        ("attachments",),
        ("unknown",),
    ],
    "topology-customize": [("parent",), ("controller",), ("parent", "spec"), ("unknown",)],
    "node-customize": [("parent",), ("controller",), ("parent", "metadata"), ("unknown",)],
}
BASE = {
    "topology-sync": "converged",
    "node-sync": "released-reflector",
    "topology-customize": "default",
    "node-customize": "default",
}


def _damage(body: Json, path: tuple[str, ...], value: Any, delete: bool) -> None:
    target: Any = body
    for key in path[:-1]:
        if not isinstance(target, dict):
            return
        target = target.setdefault(key, {})
    if not isinstance(target, dict):
        return
    if delete:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value


def _spec_invalid(spec: Any) -> bool:
    try:
        load_settings({} if spec is None else spec if isinstance(spec, dict) else {"x": spec}, {})
    except SpecError:
        return True
    return False


def _a_valid_plan(topology: Any) -> bool:
    """A topology whose spec is valid and whose status is a whole plan (it names its topology
    and lists its routeReflectors, maybe none): a node sync may then change keys."""
    if not isinstance(topology, dict) or _spec_invalid(topology.get("spec")):
        return False
    status = topology.get("status")
    if not isinstance(status, dict) or not isinstance(status.get("routeReflectors"), list):
        return False
    name = status.get("topology")
    read = wire.read_status(json.dumps(status).encode())
    return isinstance(name, str) and bool(name) and read.topology == name


@pytest.mark.parametrize("hook", list(PATHS))
@FUZZ
@given(data=st.data())
def test_damaged_requests_are_never_5xx_and_never_drop_children_or_strip_keys_unasked(
    served: tuple[httpx.Client, Path], hook: str, data: st.DataObject
) -> None:
    body = fixture(hook, BASE[hook])
    if hook == "node-sync":  # a labelled RR whose keys only a release may take back
        topology = body["related"][TOPOLOGY]["default"]
        topology["status"].pop("released")
        topology["metadata"].pop("deletionTimestamp")
    for _ in range(data.draw(st.integers(1, 3), label="damages")):
        path = data.draw(st.sampled_from(PATHS[hook]), label="path")
        _damage(body, path, data.draw(values, label="value"), data.draw(st.booleans()))
    raw = json.dumps(body).encode()
    if data.draw(st.booleans(), label="invalid utf-8"):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw = raw[:at] + b"\xff" + raw[at:]

    response = post(served[0], hook, raw)

    assert response.status_code < 500, response.text
    answer = response.json()
    if response.status_code != 200:
        assert response.status_code in (400, 413) and answer["error"], answer
        return
    if hook == "topology-sync" and _spec_invalid(body["parent"].get("spec")):
        # An invalid spec asks for nothing: every observed child is handed back.
        kept = {c["metadata"]["name"] for c in answer["children"]}
        observed = (body.get("children") or {}).get(wire.BGPPEER_KEY) or {}
        assert set(observed) <= kept, answer
    if hook == "node-sync":
        topology = ((body.get("related") or {}).get(TOPOLOGY) or {}).get("default")
        if not _a_valid_plan(topology):  # plan or spec gone or damaged: nothing may be taken back
            parts = ("labels", "annotations")
            taken = [k for part in parts for k, v in answer[part].items() if v is None]
            assert not taken, taken
