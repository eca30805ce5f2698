"""The few Kubernetes API calls the service makes itself (opt-in, KDD): switch Calico's
node-to-node mesh off, and delete the BGPPeers the original Go operator left behind.

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

__all__ = [
    "DEFAULT_ENDPOINT",
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
PATCH_BODY: Final = {"spec": {FIELD: False}}

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
    """Reads and turns off `spec.nodeToNodeMeshEnabled` of BGPConfiguration `default`.

    Only that one field is ever written: a create carries nothing else, a change is a JSON merge
    patch of just that field, so asNumber, serviceClusterIPs and the rest stay as they are.
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
        if found is None:
            return None
        value = (found.get("spec") or {}).get(FIELD)
        return value if isinstance(value, bool) else None

    def disable(self) -> MeshResult:
        """Turn the mesh off; idempotent: nothing is written when it is already off."""
        found = self._read()
        if found is None:
            try:
                self._do(
                    "writing", "POST", f"{CONFIGS_PATH}?fieldManager={FIELD_MANAGER}", CREATE_BODY
                )
                return "created"
            except MeshSwitchError as error:
                if error.status != 409:
                    raise
            # Created behind our back between the read and the create: patch it instead.
            found = self._read() or {}
        if (found.get("spec") or {}).get(FIELD) is False:
            return "unchanged"
        self._do(
            "writing",
            "PATCH",
            f"{CONFIGS_PATH}/{NAME}?fieldManager={FIELD_MANAGER}",
            PATCH_BODY,
            content_type="application/merge-patch+json",
        )
        return "patched"


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
