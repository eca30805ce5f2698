"""MeshSwitch against a Kubernetes API mock (kmock) over real HTTP, with the real client."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
from scenario import mesh_switch_request

from hooks.datastores.etcd_mesh import MeshRecord
from hooks.datastores.kubernetes import (
    DEFAULT_ENDPOINT,
    MESH_ANNOTATION,
    KubernetesAPI,
    MeshSwitch,
    MeshSwitchError,
)

BGPCONFIGS = "crd.projectcalico.org/v1/bgpconfigurations"
OBJECT_PATH = "/apis/crd.projectcalico.org/v1/bgpconfigurations/default"
COLLECTION_PATH = "/apis/crd.projectcalico.org/v1/bgpconfigurations"
OWNER, UID = "default", "11111111-2222-4333-8444-555555555555"


def api_for(server: kmock.RawHandler, token_file: Path | None) -> KubernetesAPI:
    """A client pointed at the mock's real 127.0.0.1 port."""
    [srv] = server.servers
    return KubernetesAPI(f"http://{srv.host}:{srv.port}", token_file, ca_file=None, verify=False)


def switch_for(server: kmock.RawHandler, tmp_path: Path) -> MeshSwitch:
    """The switch with a service-account token file holding `secret`."""
    token = tmp_path / "token"
    token.write_text("secret\n")
    return MeshSwitch(api_for(server, token))


def record(created: bool, previous: bool | None) -> str:
    """The switch's record as the annotation carries it."""
    return MeshRecord(OWNER, UID, created, previous).encode().decode()


def writes(server: kmock.RawHandler) -> list[kmock.Request]:
    return [r for r in server if r.method != kmock.method.GET]


def stored(server: kmock.KubernetesEmulator) -> dict[str, object]:
    obj = server.objects[BGPCONFIGS, None, "default"]
    return dict(obj.raw)


@pytest.fixture
def k8s(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    kmock.resources[BGPCONFIGS] = kmock.ResourceInfo(kind="BGPConfiguration", namespaced=False)
    return kmock


@pytest.mark.asyncio
async def test_an_absent_configuration_is_created_with_only_the_mesh_field(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    switch = switch_for(k8s, tmp_path)
    assert await asyncio.to_thread(switch.state) is None

    assert await asyncio.to_thread(switch.disable, OWNER, UID) == "created"

    [create] = writes(k8s)
    assert create.method == kmock.method.POST
    assert create.url.path == COLLECTION_PATH
    assert json.loads(create.body) == {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPConfiguration",
        "metadata": {"name": "default", "annotations": {MESH_ANNOTATION: record(True, None)}},
        "spec": {"nodeToNodeMeshEnabled": False},
    }
    assert create.headers.get("Authorization") == "Bearer secret"
    assert dict(create.url.query) == {"fieldManager": "route-reflector-hooks"}
    assert await asyncio.to_thread(switch.state) is False


@pytest.mark.asyncio
async def test_an_existing_configuration_is_patched_and_its_other_fields_are_untouched(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    spec = {
        "asNumber": 64512,
        "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}],
        "logSeverityScreen": "Info",
    }
    k8s.objects[BGPCONFIGS, None, "default"] = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": spec,
    }
    switch = switch_for(k8s, tmp_path)
    assert await asyncio.to_thread(switch.state) is None  # field absent: Calico's mesh is on

    assert await asyncio.to_thread(switch.disable, OWNER, UID) == "patched"

    [patch] = writes(k8s)
    assert patch.method == kmock.method.PATCH
    assert patch.url.path == OBJECT_PATH
    assert patch.headers.get("Content-Type") == "application/merge-patch+json"
    assert dict(patch.url.query) == {"fieldManager": "route-reflector-hooks"}
    assert json.loads(patch.body) == {
        "metadata": {"annotations": {MESH_ANNOTATION: record(False, None)}},
        "spec": {"nodeToNodeMeshEnabled": False},
    }
    assert stored(k8s)["spec"] == spec | {"nodeToNodeMeshEnabled": False}


@pytest.mark.asyncio
async def test_a_mesh_that_is_on_explicitly_is_patched_off(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    k8s.objects[BGPCONFIGS, None, "default"] = {
        "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": True, "asNumber": 64512},
    }
    switch = switch_for(k8s, tmp_path)
    assert await asyncio.to_thread(switch.state) is True
    assert await asyncio.to_thread(switch.disable, OWNER, UID) == "patched"
    assert stored(k8s)["spec"] == {"nodeToNodeMeshEnabled": False, "asNumber": 64512}


@pytest.mark.asyncio
async def test_a_mesh_already_off_is_not_written(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    k8s.objects[BGPCONFIGS, None, "default"] = {
        "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": False, "asNumber": 64512},
    }
    switch = switch_for(k8s, tmp_path)

    assert await asyncio.to_thread(switch.disable, OWNER, UID) == "unchanged"
    assert await asyncio.to_thread(switch.disable, OWNER, UID) == "unchanged"

    assert writes(k8s) == []
    assert len(list(k8s)) == 2


@pytest.mark.asyncio
async def test_forbidden_raises_an_error_naming_the_endpoint_and_the_status(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    k8s["get", OBJECT_PATH] << kmock.KubernetesError(
        status=403, reason="Forbidden", message="bgpconfigurations is forbidden"
    )
    switch = switch_for(k8s, tmp_path)

    with pytest.raises(MeshSwitchError) as caught:
        await asyncio.to_thread(switch.disable, OWNER, UID)

    assert caught.value.status == 403
    assert "HTTP 403" in str(caught.value)
    assert switch.endpoint in str(caught.value)
    assert writes(k8s) == []


@pytest.mark.asyncio
async def test_a_refused_write_raises_naming_the_status(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    k8s["post", COLLECTION_PATH] << kmock.KubernetesError(status=403, reason="Forbidden")
    switch = switch_for(k8s, tmp_path)

    with pytest.raises(MeshSwitchError, match="HTTP 403") as caught:
        await asyncio.to_thread(switch.disable, OWNER, UID)
    assert caught.value.status == 403


# --- uninstall: what the switch changed goes back, nothing else --------------------------------


@pytest.mark.asyncio
async def test_a_configuration_the_switch_created_is_deleted_at_uninstall(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    switch = switch_for(k8s, tmp_path)
    await asyncio.to_thread(switch.disable, OWNER, UID)

    assert await asyncio.to_thread(switch.restore, "other") is False  # not the one that did it
    assert await asyncio.to_thread(switch.restore, OWNER) is True

    assert writes(k8s)[-1].method == kmock.method.DELETE
    assert await asyncio.to_thread(switch.state) is None  # gone: Calico's mesh is on


@pytest.mark.asyncio
@pytest.mark.parametrize("before", [None, True])
async def test_a_patched_configuration_gets_its_field_back_and_keeps_the_rest(
    k8s: kmock.KubernetesEmulator, tmp_path: Path, before: bool | None
) -> None:
    spec = {"asNumber": 64512} | ({"nodeToNodeMeshEnabled": before} if before is not None else {})
    k8s.objects[BGPCONFIGS, None, "default"] = {
        "metadata": {"name": "default", "annotations": {"team": "net"}},
        "spec": spec,
    }
    switch = switch_for(k8s, tmp_path)
    await asyncio.to_thread(switch.disable, OWNER, UID)
    assert await asyncio.to_thread(switch.state) is False

    assert await asyncio.to_thread(switch.restore, OWNER) is True

    assert stored(k8s)["spec"] == spec
    assert stored(k8s)["metadata"] == {"name": "default", "annotations": {"team": "net"}}
    assert await asyncio.to_thread(switch.restore, OWNER) is False  # the record went with it


@pytest.mark.asyncio
async def test_a_mesh_turned_on_since_or_off_by_the_operator_is_left_as_it_is(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    switch = switch_for(k8s, tmp_path)
    k8s.objects[BGPCONFIGS, None, "default"] = {
        "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": False},
    }
    await asyncio.to_thread(switch.disable, OWNER, UID)  # off already: nothing recorded
    assert await asyncio.to_thread(switch.restore, OWNER) is False
    assert stored(k8s)["spec"] == {"nodeToNodeMeshEnabled": False}

    k8s.objects[BGPCONFIGS, None, "default"] = {
        "metadata": {"name": "default", "annotations": {MESH_ANNOTATION: record(False, None)}},
        "spec": {"nodeToNodeMeshEnabled": True},  # someone turned it back on meanwhile
    }
    assert await asyncio.to_thread(switch.restore, OWNER) is False
    assert stored(k8s)["spec"] == {"nodeToNodeMeshEnabled": True}
    assert MESH_ANNOTATION not in stored(k8s)["metadata"]["annotations"]  # type: ignore[index]


@pytest.mark.asyncio
async def test_a_record_that_is_not_ours_is_refused(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    k8s.objects[BGPCONFIGS, None, "default"] = {
        "metadata": {"name": "default", "annotations": {MESH_ANNOTATION: "{not json"}},
        "spec": {"nodeToNodeMeshEnabled": False},
    }
    with pytest.raises(MeshSwitchError, match=MESH_ANNOTATION):
        await asyncio.to_thread(switch_for(k8s, tmp_path).restore, OWNER)
    assert writes(k8s) == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_server_that_is_down_raises_quickly() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    switch = MeshSwitch(KubernetesAPI(endpoint, None, ca_file=None, verify=False))
    started = time.monotonic()

    with pytest.raises(MeshSwitchError) as caught:
        switch.disable(OWNER, UID)

    assert time.monotonic() - started < 2.0
    assert caught.value.status is None
    assert endpoint in str(caught.value)
    assert "cannot reach" in str(caught.value)


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        host, port = listener.getsockname()
        switch = MeshSwitch(
            KubernetesAPI(f"http://{host}:{port}", None, ca_file=None, verify=False, timeout=0.3)
        )
        started = time.monotonic()
        with pytest.raises(MeshSwitchError, match="cannot reach"):
            switch.state()
        assert time.monotonic() - started < 2.0


def test_settings_come_from_the_environment_and_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")

    switch = MeshSwitch.from_environ({"K8S_API_ENDPOINT": "https://10.0.0.1:6443"}, tmp_path)
    assert switch.api == KubernetesAPI(
        "https://10.0.0.1:6443", tmp_path / "token", str(tmp_path / "ca.crt"), True
    )
    assert switch.api.token() == "abc"

    bare = MeshSwitch.from_environ({}, tmp_path / "absent")
    assert bare.api == KubernetesAPI(DEFAULT_ENDPOINT, None, None, True)
    assert bare.api.token() is None


@pytest.mark.asyncio
async def test_a_rotated_service_account_token_is_used_from_the_next_call_on(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    switch = MeshSwitch(api_for(k8s, token))
    assert await asyncio.to_thread(switch.state) is None

    # The kubelet rotates a projected token by swapping the file under the same path.
    rotated = tmp_path / "token.new"
    rotated.write_text("second-token\n")
    rotated.replace(token)
    assert await asyncio.to_thread(switch.disable, OWNER, UID) == "created"

    sent = [r.headers.get("Authorization") for r in k8s]
    assert sent[0] == "Bearer first-token"
    assert sent[1:] == ["Bearer second-token"] * (len(sent) - 1)
    assert len(sent) >= 3  # the read before the rotation, the read and the create after it


# --- the service: switches the mesh off only when the decision proves it safe --------------------


def _client(endpoint: str) -> Any:
    import warnings

    from starlette.exceptions import StarletteDeprecationWarning

    from hooks.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    return TestClient(create_app(environ={"K8S_API_ENDPOINT": endpoint}))


def _endpoint(server: kmock.RawHandler) -> str:
    [srv] = server.servers
    return f"http://{srv.host}:{srv.port}"


def _post(server: kmock.RawHandler, body: bytes) -> dict[str, object]:
    with _client(_endpoint(server)) as client:
        answer = client.post("/topology/sync", content=body)
    assert answer.status_code == 200, answer.text
    conditions = answer.json()["status"]["conditions"]
    return next(c for c in conditions if c["type"] == "NodeToNodeMesh")


@pytest.mark.asyncio
async def test_the_service_keeps_the_mesh_while_reflectors_are_not_established(
    k8s: kmock.KubernetesEmulator,
) -> None:
    condition = await asyncio.to_thread(_post, k8s, mesh_switch_request(converged=False))
    assert (condition["status"], condition["reason"]) == ("True", "WaitingForReflectors")
    assert writes(k8s) == []


@pytest.mark.asyncio
async def test_the_service_turns_the_mesh_off_once_every_reflector_is_established(
    k8s: kmock.KubernetesEmulator,
) -> None:
    condition = await asyncio.to_thread(_post, k8s, mesh_switch_request(converged=True))
    assert (condition["status"], condition["reason"]) == ("False", "Disabled")
    assert stored(k8s)["spec"] == {"nodeToNodeMeshEnabled": False}


def _uninstall(endpoint: str, converged: bool, spec: dict[str, Any] | None = None) -> list[Any]:
    """Sync a DisableWhenReady topology (`spec` merged in), then call its finalize hook twice."""
    body = json.loads(mesh_switch_request(converged))
    body["parent"]["spec"] |= spec or {}
    answers = []
    with _client(endpoint) as client:
        synced = client.post("/topology/sync", json=body)
        assert synced.status_code == 200, synced.text
        status = synced.json()["status"]
        for _ in range(2):
            finalize = body | {"finalizing": True, "parent": body["parent"] | {"status": status}}
            answer = client.post("/topology/finalize", json=finalize)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
            status = answers[-1]["status"]
    return answers


def _ready(answer: Any) -> tuple[str, str]:
    ready = next(c for c in answer["status"]["conditions"] if c["type"] == "Ready")
    return ready["status"], ready["reason"]


@pytest.mark.asyncio
async def test_uninstall_in_kdd_turns_the_mesh_the_service_switched_off_back_on(
    k8s: kmock.KubernetesEmulator,
) -> None:
    held, after = await asyncio.to_thread(_uninstall, _endpoint(k8s), True)

    assert _ready(held) == ("False", "RestoringMesh") and held["finalized"] is False
    assert "released" not in held["status"]
    assert writes(k8s)[-1].method == kmock.method.DELETE  # it created BGPConfiguration default
    assert _ready(after)[1] != "RestoringMesh" and after["status"]["released"] is True


@pytest.mark.asyncio
async def test_uninstall_in_kdd_leaves_a_mesh_the_service_never_switched_off(
    k8s: kmock.KubernetesEmulator,
) -> None:
    k8s.objects[BGPCONFIGS, None, "default"] = {
        "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": False},  # the operator's own choice
    }
    held, _ = await asyncio.to_thread(_uninstall, _endpoint(k8s), True)

    assert _ready(held)[1] != "RestoringMesh"
    assert writes(k8s) == []
    assert stored(k8s)["spec"] == {"nodeToNodeMeshEnabled": False}


def test_uninstall_in_kdd_without_the_switch_asks_no_api() -> None:
    down = f"http://127.0.0.1:{free_port()}"  # any call would fail: 503
    held, _ = _uninstall(down, False, {"nodeToNodeMesh": "Keep"})
    assert _ready(held)[1] != "RestoringMesh"


@pytest.mark.asyncio
async def test_an_api_that_is_down_at_uninstall_keeps_the_finalizer() -> None:
    body = json.loads(mesh_switch_request(False)) | {"finalizing": True}
    with _client(f"http://127.0.0.1:{free_port()}") as client:
        answer = await asyncio.to_thread(client.post, "/topology/finalize", json=body)
    assert answer.status_code == 503


# --- TLS: the cluster CA from the service account verifies the API server -----------------------


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, made by the real openssl."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def https_api(cert: Path, key: Path, seen: list[str]) -> Iterator[str]:
    """A one-object API server over real TLS on 127.0.0.1; records the Authorization headers."""
    body = json.dumps({"spec": {"nodeToNodeMeshEnabled": False}}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not on PATH")
def test_the_service_account_ca_verifies_the_api_server_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "server")
    other, _ = self_signed(tmp_path, "other")
    (tmp_path / "token").write_text("tls-token\n")
    seen: list[str] = []
    with https_api(cert, key, seen) as endpoint:
        (tmp_path / "ca.crt").write_bytes(cert.read_bytes())
        trusted = MeshSwitch.from_environ({"K8S_API_ENDPOINT": endpoint}, tmp_path)
        assert trusted.state() is False

        (tmp_path / "ca.crt").write_bytes(other.read_bytes())
        untrusted = MeshSwitch.from_environ({"K8S_API_ENDPOINT": endpoint}, tmp_path)
        with pytest.raises(MeshSwitchError, match=r"cannot reach.*CERTIFICATE_VERIFY_FAILED"):
            untrusted.state()
    assert seen == ["Bearer tls-token"]


@pytest.mark.asyncio
async def test_an_answer_that_is_not_json_raises_naming_the_endpoint(
    k8s: kmock.KubernetesEmulator, tmp_path: Path
) -> None:
    k8s["get", OBJECT_PATH] << b"<html>proxy error</html>"
    switch = switch_for(k8s, tmp_path)

    with pytest.raises(MeshSwitchError, match="not JSON") as caught:
        await asyncio.to_thread(switch.state)
    assert switch.endpoint in str(caught.value)
