"""How to reach etcd: endpoints, TLS files and limits, from the same variables as calico/node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

__all__ = ["DEFAULT_ENDPOINT", "Endpoint", "EtcdSettings", "parse_endpoint"]

DEFAULT_ENDPOINT: Final = "http://127.0.0.1:2379"


@dataclass(frozen=True)
class EtcdSettings:
    """How to reach etcd; the same environment variables as calico/node."""

    endpoints: tuple[str, ...]
    ca_cert_file: str | None
    cert_file: str | None
    key_file: str | None
    timeout_seconds: float = 5.0
    max_retries: int = 5

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("endpoints (ETCD_ENDPOINTS): at least one URL is required")
        for url in self.endpoints:
            parse_endpoint(url)
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "cert_file/key_file (ETCD_CERT_FILE/ETCD_KEY_FILE): set both or neither"
            )
        if not self.timeout_seconds > 0:
            raise ValueError(f"timeout_seconds: must be > 0, got {self.timeout_seconds}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries: must be >= 0, got {self.max_retries}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> EtcdSettings:
        raw = environ.get("ETCD_ENDPOINTS", "") or DEFAULT_ENDPOINT
        endpoints = tuple(part.strip() for part in raw.split(",") if part.strip())
        return cls(
            endpoints=endpoints,
            ca_cert_file=environ.get("ETCD_CA_CERT_FILE") or None,
            cert_file=environ.get("ETCD_CERT_FILE") or None,
            key_file=environ.get("ETCD_KEY_FILE") or None,
        )


@dataclass(frozen=True)
class Endpoint:
    url: str
    protocol: str
    host: str
    port: int


def parse_endpoint(url: str) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoints (ETCD_ENDPOINTS): {url!r} is not an http(s)://host[:port] URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"endpoints (ETCD_ENDPOINTS): {url!r} must not carry a path")
    try:
        port = parts.port or 2379
    except ValueError:
        raise ValueError(f"endpoints (ETCD_ENDPOINTS): {url!r} has an invalid port") from None
    return Endpoint(url=url, protocol=parts.scheme, host=parts.hostname, port=port)
