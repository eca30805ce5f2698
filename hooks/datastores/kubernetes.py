"""The few Kubernetes API calls the service makes itself (opt-in, KDD): switch Calico's
node-to-node mesh off (and back on at uninstall), and delete the BGPPeers the original Go
operator left behind.

A small client over the standard library's HTTP: the `kubernetes` package was 128 MB of a 214 MB
image for these calls. The service-account token is read again on every call, so a projected
token that the kubelet rotates is picked up without a restart.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from hooks.datastores.etcd_documents import DocumentError, Entry
from hooks.datastores.etcd_mesh import MeshRecord

__all__ = [
    "DEFAULT_ENDPOINT",
    "MESH_ANNOTATION",
    "KubernetesAPI",
    "KubernetesAPIError",
    "LegacyPeerRemoval",
    "MeshResult",
    "MeshSwitch",
    "MeshSwitchError",
]

DEFAULT_ENDPOINT: Final = "https://kubernetes.default"
SERVICE_ACCOUNT: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_SECONDS: Final = 5.0
# Named in managedFields as the owner of what the service writes (GitOps tools show it).
FIELD_MANAGER: Final = "route-reflector-hooks"

GROUP: Final = "crd.projectcalico.org"
VERSION: Final = "v1"
PLURAL: Final = "bgpconfigurations"
NAME: Final = "default"
FIELD: Final = "nodeToNodeMeshEnabled"
CONFIGS_PATH: Final = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
PEERS_PATH: Final = f"/apis/{GROUP}/{VERSION}/bgppeers"

CREATE_BODY: Final = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "BGPConfiguration",
    "metadata": {"name": NAME},
    "spec": {FIELD: False},
}
# What the switch changed, on BGPConfiguration `default` itself (written in the request that turns
# the mesh off): the etcd mesh record's JSON, so uninstall restores that and nothing else.
MESH_ANNOTATION: Final = "route-reflector.dev/mesh-switched-off"

MeshResult = Literal["created", "patched", "unchanged"]


class KubernetesAPIError(Exception):
    """The Kubernetes API refused or could not be reached; the message names endpoint and status."""

    def __init__(self, message: str, endpoint: str, status: int | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


MeshSwitchError = KubernetesAPIError


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".rstrip())
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class KubernetesAPI:
    """JSON over HTTP(S) to the API server, one attempt per call (the hook reports a failure
    and Metacontroller retries the sync). `token_file` is read on every call."""

    endpoint: str
    token_file: Path | None
    ca_file: str | None
    verify: bool = True
    timeout: float = TIMEOUT_SECONDS

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], service_account: Path = SERVICE_ACCOUNT
    ) -> KubernetesAPI:
        """K8S_API_ENDPOINT (default https://kubernetes.default) and, when mounted, the pod's
        service-account token and cluster CA."""
        token_file = service_account / "token"
        ca_file = service_account / "ca.crt"
        return cls(
            endpoint=environ.get("K8S_API_ENDPOINT") or DEFAULT_ENDPOINT,
            token_file=token_file if token_file.is_file() else None,
            ca_file=str(ca_file) if ca_file.is_file() else None,
        )

    def token(self) -> str | None:
        if self.token_file is None:
            return None
        try:
            return self.token_file.read_text().strip() or None
        except OSError:
            return None

    def _context(self) -> ssl.SSLContext | None:
        if not self.endpoint.startswith("https:"):
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """The decoded answer of a 2xx; None for a 404; raises _Refused for other statuses and
        OSError (URLError, timeouts) when the server cannot be reached."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.endpoint.rstrip("/") + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", FIELD_MANAGER)
        if data is not None:
            request.add_header("Content-Type", content_type)
        token = self.token()
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self._context()
            ) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as error:
            error.close()  # the error is the response: its socket must be released
            if error.code == 404:
                return None
            raise _Refused(error.code, str(error.reason or "")) from error
        except http.client.HTTPException as error:
            raise OSError(f"{type(error).__name__}: {error}") from error
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError as error:
            raise OSError(f"the answer is not JSON: {error}") from error
        return decoded if isinstance(decoded, dict) else {}


def _fail(api: KubernetesAPI, action: str, where: str, error: Exception) -> MeshSwitchError:
    if isinstance(error, _Refused):
        return MeshSwitchError(
            f"{action} {where} at {api.endpoint} failed: HTTP {error.status}"
            + (f" {error.reason}" if error.reason else ""),
            api.endpoint,
            error.status,
        )
    return MeshSwitchError(
        f"{action} {where} at {api.endpoint} failed: cannot reach the Kubernetes API"
        f" ({type(error).__name__}: {error})",
        api.endpoint,
    )


@dataclass(frozen=True)
class MeshSwitch:
    """Reads, turns off and (at uninstall) restores `spec.nodeToNodeMeshEnabled` of
    BGPConfiguration `default`.

    Only that field and the switch's record (`MESH_ANNOTATION`) are ever written: a create
    carries nothing else, a change is a JSON merge patch of just those, so asNumber,
    serviceClusterIPs and the rest stay as they are.
    """

    api: KubernetesAPI

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], service_account: Path = SERVICE_ACCOUNT
    ) -> MeshSwitch:
        return cls(KubernetesAPI.from_environ(environ, service_account))

    @property
    def endpoint(self) -> str:
        return self.api.endpoint

    def _do(
        self, action: str, method: str, path: str, body: Mapping[str, Any] | None = None, **kw: str
    ) -> dict[str, Any] | None:
        try:
            return self.api.call(method, path, body, **kw)
        except (_Refused, OSError) as error:
            raise _fail(self.api, action, f"BGPConfiguration {NAME!r}", error) from error

    def _read(self) -> dict[str, Any] | None:
        return self._do("reading", "GET", f"{CONFIGS_PATH}/{NAME}")

    def state(self) -> bool | None:
        """`spec.nodeToNodeMeshEnabled` now; None when the object (or the field) is absent, which
        Calico treats as enabled."""
        found = self._read()
        return None if found is None else _mesh_state(found)

    def disable(self, owner: str, uid: str) -> MeshResult:
        """Turn the mesh off for `owner` (uid `uid`), recording in the same write what was there
        (`MESH_ANNOTATION`); idempotent: nothing is written when it is already off."""
        found = self._read()
        if found is None:
            record = MeshRecord(owner, uid, created=True, previous=None)
            metadata = {"name": NAME, "annotations": {MESH_ANNOTATION: record.encode().decode()}}
            try:
                self._do(
                    "writing",
                    "POST",
                    f"{CONFIGS_PATH}?fieldManager={FIELD_MANAGER}",
                    CREATE_BODY | {"metadata": metadata},
                )
                return "created"
            except MeshSwitchError as error:
                if error.status != 409:
                    raise
            # Created behind our back between the read and the create: patch it instead.
            found = self._read() or {}
        state = _mesh_state(found)
        if state is False:
            return "unchanged"
        record = MeshRecord(owner, uid, created=False, previous=state)
        patch = {"metadata": _precondition(found, record.encode().decode()), "spec": {FIELD: False}}
        self._patch(patch)
        return "patched"

    def restore(self, owner: str) -> bool:
        """Undo what `owner`'s switch recorded, only while the mesh is still off: an object it
        created that nobody changed is deleted; otherwise the field goes back to what it was
        (removed when it was absent) and the record goes. A mesh someone turned on already is
        left on (only the record goes). True when the mesh was turned back on."""
        found = self._read()
        annotations = ((found or {}).get("metadata") or {}).get("annotations") or {}
        raw = annotations.get(MESH_ANNOTATION)
        if found is None or not isinstance(raw, str):
            return False
        where = f"BGPConfiguration {NAME!r} annotation {MESH_ANNOTATION}"
        try:
            record = MeshRecord.decode(Entry(where, raw.encode(), 0))
        except DocumentError as error:
            raise MeshSwitchError(str(error), self.api.endpoint) from None
        if record.owner != owner:
            return False
        metadata = _precondition(found, None)
        if _mesh_state(found) is not False:
            self._patch({"metadata": metadata})
            return False
        if record.created and _as_created(found):
            body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
            uid, version = found["metadata"].get("uid"), found["metadata"].get("resourceVersion")
            body["preconditions"] = {
                k: v for k, v in (("uid", uid), ("resourceVersion", version)) if v
            }
            self._do("deleting", "DELETE", f"{CONFIGS_PATH}/{NAME}", body)
            return True
        self._patch({"metadata": metadata, "spec": {FIELD: True if record.previous else None}})
        return True

    def _patch(self, body: Mapping[str, Any]) -> None:
        self._do(
            "writing",
            "PATCH",
            f"{CONFIGS_PATH}/{NAME}?fieldManager={FIELD_MANAGER}",
            body,
            content_type="application/merge-patch+json",
        )


def _mesh_state(found: Mapping[str, Any]) -> bool | None:
    value = (found.get("spec") or {}).get(FIELD)
    return value if isinstance(value, bool) else None


def _precondition(found: Mapping[str, Any], record: str | None) -> dict[str, Any]:
    """The metadata of a merge patch: the record annotation set (None: removed), and the
    resourceVersion read, so a change made since is a 409, never overwritten."""
    metadata: dict[str, Any] = {"annotations": {MESH_ANNOTATION: record}}
    version = (found.get("metadata") or {}).get("resourceVersion")
    if version:
        metadata["resourceVersion"] = version
    return metadata


def _as_created(found: Mapping[str, Any]) -> bool:
    """Only what the switch's create wrote: the field off, our record, nothing a person added."""
    metadata = found.get("metadata") or {}
    return (
        found.get("spec") == {FIELD: False}
        and not metadata.get("labels")
        and set(metadata.get("annotations") or {}) <= {MESH_ANNOTATION}
    )


@dataclass(frozen=True)
class LegacyPeerRemoval:
    """Deletes the named BGPPeers of the original operator, each only if it is still the object
    that was observed (a UID precondition): a BGPPeer re-created under that name stays."""

    api: KubernetesAPI

    def remove(self, peers: Iterable[tuple[str, str]]) -> list[str]:
        """Delete (name, uid) pairs; returns the names deleted (absent ones count as gone)."""
        removed = []
        for name, uid in peers:
            body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
            if uid:
                body["preconditions"] = {"uid": uid}
            try:
                self.api.call("DELETE", f"{PEERS_PATH}/{name}", body)
            except (_Refused, OSError) as error:
                raise _fail(self.api, "deleting", f"BGPPeer {name!r}", error) from error
            removed.append(name)
        return removed
