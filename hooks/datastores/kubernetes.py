"""Switch Calico's node-to-node BGP mesh off in BGPConfiguration `default` (opt-in, KDD)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

__all__ = [
    "DEFAULT_ENDPOINT",
    "MeshResult",
    "MeshSwitch",
    "MeshSwitchError",
]

DEFAULT_ENDPOINT: Final = "https://kubernetes.default"
SERVICE_ACCOUNT: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_SECONDS: Final = 5.0

GROUP: Final = "crd.projectcalico.org"
VERSION: Final = "v1"
PLURAL: Final = "bgpconfigurations"
NAME: Final = "default"
FIELD: Final = "nodeToNodeMeshEnabled"

CREATE_BODY: Final = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "BGPConfiguration",
    "metadata": {"name": NAME},
    "spec": {FIELD: False},
}
PATCH_BODY: Final = {"spec": {FIELD: False}}

MeshResult = Literal["created", "patched", "unchanged"]


class MeshSwitchError(Exception):
    """The Kubernetes API refused or could not be reached; the message names endpoint and status."""

    def __init__(self, message: str, endpoint: str, status: int | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


@dataclass(frozen=True)
class MeshSwitch:
    """Reads and turns off `spec.nodeToNodeMeshEnabled` of BGPConfiguration `default`.

    Only that one field is ever written: a create carries nothing else, a change is a JSON merge
    patch of just that field, so asNumber, serviceClusterIPs and the rest stay as they are.
    """

    endpoint: str
    token: str | None
    ca_file: str | None
    verify: bool = True
    timeout: float = TIMEOUT_SECONDS

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], service_account: Path = SERVICE_ACCOUNT
    ) -> MeshSwitch:
        """K8S_API_ENDPOINT (default https://kubernetes.default) and, when mounted, the pod's
        service-account token and cluster CA."""
        endpoint = environ.get("K8S_API_ENDPOINT") or DEFAULT_ENDPOINT
        token_file = service_account / "token"
        ca_file = service_account / "ca.crt"
        token = token_file.read_text().strip() if token_file.is_file() else None
        return cls(
            endpoint=endpoint,
            token=token or None,
            ca_file=str(ca_file) if ca_file.is_file() else None,
            verify=True,
        )

    @contextmanager
    def _api(self) -> Iterator[k8s.CustomObjectsApi]:
        config = k8s.Configuration(host=self.endpoint.rstrip("/"))
        config.verify_ssl = self.verify
        if self.ca_file:
            config.ssl_ca_cert = self.ca_file
        if self.token:
            config.api_key = {"BearerToken": self.token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        # One attempt per call: the hook reports the failure and Metacontroller retries the sync.
        config.retries = urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0)
        api_client = k8s.ApiClient(config)
        try:
            yield k8s.CustomObjectsApi(api_client)
        finally:
            api_client.close()  # type: ignore[no-untyped-call]  # the client leaves it unannotated

    def _fail(self, action: str, error: Exception) -> MeshSwitchError:
        where = f"BGPConfiguration {NAME!r} at {self.endpoint}"
        if isinstance(error, ApiException):
            status = int(error.status) if error.status is not None else None
            reason = f" {error.reason}" if error.reason else ""
            return MeshSwitchError(
                f"{action} {where} failed: HTTP {status}{reason}", self.endpoint, status
            )
        return MeshSwitchError(
            f"{action} {where} failed: cannot reach the Kubernetes API"
            f" ({type(error).__name__}: {error})",
            self.endpoint,
        )

    def _read(self, api: k8s.CustomObjectsApi) -> dict[str, Any] | None:
        try:
            found = api.get_cluster_custom_object(
                GROUP, VERSION, PLURAL, NAME, _request_timeout=self.timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise self._fail("reading", error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise self._fail("reading", error) from error
        return found if isinstance(found, dict) else {}

    def state(self) -> bool | None:
        """`spec.nodeToNodeMeshEnabled` now; None when the object (or the field) is absent, which
        Calico treats as enabled."""
        with self._api() as api:
            found = self._read(api)
        if found is None:
            return None
        value = (found.get("spec") or {}).get(FIELD)
        return value if isinstance(value, bool) else None

    def disable(self) -> MeshResult:
        """Turn the mesh off; idempotent: nothing is written when it is already off."""
        with self._api() as api:
            found = self._read(api)
            if found is None:
                try:
                    self._write(
                        lambda: api.create_cluster_custom_object(
                            GROUP, VERSION, PLURAL, CREATE_BODY, _request_timeout=self.timeout
                        )
                    )
                    return "created"
                except MeshSwitchError as error:
                    if error.status != 409:
                        raise
                # Created behind our back between the read and the create: patch it instead.
                found = self._read(api) or {}
            if (found.get("spec") or {}).get(FIELD) is False:
                return "unchanged"
            self._write(
                lambda: api.patch_cluster_custom_object(
                    GROUP,
                    VERSION,
                    PLURAL,
                    NAME,
                    PATCH_BODY,
                    _request_timeout=self.timeout,
                    _content_type="application/merge-patch+json",
                )
            )
            return "patched"

    def _write(self, call: Callable[[], object]) -> None:
        try:
            call()
        except ApiException as error:
            raise self._fail("writing", error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise self._fail("writing", error) from error
