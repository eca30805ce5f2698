"""Apply a route-reflector plan to Calico's etcdv3 datastore as a compare-and-swap diff."""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import requests
from etcd3gw import exceptions as etcd3gw_exceptions
from etcd3gw.client import Etcd3Client

from hooks.calico import OWNER_LABEL

__all__ = [
    "NODES_PREFIX",
    "OWNED_PREFIX",
    "OWNER_LABEL",
    "PEERS_PREFIX",
    "ApplyResult",
    "DesiredState",
    "EtcdApplier",
    "EtcdConflict",
    "EtcdError",
    "EtcdSettings",
    "EtcdUnavailable",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

PEERS_PREFIX: Final = "/calico/resources/v3/projectcalico.org/bgppeers/"
NODES_PREFIX: Final = "/calico/resources/v3/projectcalico.org/nodes/"
CLUSTER_ID_FIELD: Final = "routeReflectorClusterID"
# Ownership of cluster IDs: `OWNED_PREFIX + owner + "/" + node` is written before this service
# sets a node's cluster ID and deleted after it clears it, so an apply cut short (etcd down, a
# crash) leaves a record the next sync of that owner finds and clears, whatever its plan.
OWNED_PREFIX: Final = "/route-reflector.dev/v1/cluster-ids/"
DEFAULT_ENDPOINT: Final = "http://127.0.0.1:2379"
_CLUSTER_ID_BYTES: Final = b'"routeReflectorClusterID"'

# etcd's default --max-txn-ops: the most range requests one read transaction may carry.
_MAX_TXN_OPS: Final = 128
# Keys per page of a prefix range: the gRPC gateway refuses responses past a few MB
# (networking-calico saw it at ~3000 workload endpoints), and a Calico Node is 0.5-2 KB.
_PAGE_SIZE: Final = 500

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class EtcdError(Exception):
    """An etcd operation failed; the hook must answer non-200 and retry later."""


class EtcdUnavailable(EtcdError):
    """No endpoint could be reached: connection refused, timeout or TLS failure."""


class EtcdConflict(EtcdError):
    """A key kept changing under us for more than `max_retries` compare-and-swap attempts."""


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
            _parse_endpoint(url)
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
class DesiredState:
    """What one RouteReflectorTopology wants in etcd.

    `peers`: each `{"name": str, "spec": {...}}`, the spec as a Calico v3 BGPPeer spec.
    `cluster_ids`: node name -> cluster ID for every node whose ID we manage:
    a string sets it, None clears it.
    """

    owner: str
    peers: tuple[Mapping[str, Any], ...]
    cluster_ids: Mapping[str, str | None]

    def __post_init__(self) -> None:
        if not (_LABEL_VALUE.match(self.owner) and len(self.owner) <= 63):
            raise ValueError(f"owner: {self.owner!r} is not a valid label value")
        names: set[str] = set()
        for index, peer in enumerate(self.peers):
            name = peer.get("name")
            if not isinstance(name, str) or not _is_object_name(name):
                raise ValueError(f"peers[{index}].name: {name!r} is not a valid object name")
            if name in names:
                raise ValueError(f"peers[{index}].name: {name!r} appears twice")
            names.add(name)
            if not isinstance(peer.get("spec"), Mapping):
                raise ValueError(f"peers[{index}].spec: must be an object")
        for node, cluster_id in self.cluster_ids.items():
            if not _is_object_name(node):
                raise ValueError(f"cluster_ids: {node!r} is not a valid node name")
            if cluster_id is not None:
                try:
                    ipaddress.IPv4Address(cluster_id)
                except ValueError:
                    raise ValueError(
                        f"cluster_ids[{node}]: {cluster_id!r} is not an IPv4 address"
                    ) from None


@dataclass(frozen=True)
class ApplyResult:
    """What one apply did and found.

    `revision`: mod revision of our last write, or, when nothing was written, of the newest
    BGPPeer we own (Calico Node keys are left out: foreign writers move them). 0 if neither.
    `peers`: BGPPeers we own after the apply; `reflectors`: nodes that carry a cluster ID
    we set; `missing_nodes`: nodes we were to give a cluster ID that have no Calico Node;
    `foreign_conflicts`: BGPPeer names we wanted that exist without our owner label.
    While `missing_nodes` or `foreign_conflicts` is non-empty nothing is deleted or cleared.
    """

    writes: int
    revision: int
    peers: int
    reflectors: int
    missing_nodes: tuple[str, ...]
    foreign_conflicts: tuple[str, ...]


class EtcdApplier:
    """Applies DesiredState to etcd; one short-lived HTTP session per call, so nothing leaks."""

    def __init__(self, settings: EtcdSettings) -> None:
        self._settings = settings
        self._endpoints = tuple(_parse_endpoint(url) for url in settings.endpoints)
        self._preferred = 0

    def apply(self, desired: DesiredState) -> ApplyResult:
        progress = _Progress()
        return self._with_endpoint(lambda store: store.apply(desired, progress))

    def read_owned(self, owner: str) -> dict[str, Mapping[str, Any]]:
        """The BGPPeers carrying our owner label, by name."""

        def read(store: _Store) -> dict[str, Mapping[str, Any]]:
            peers = store.read_prefix(PEERS_PREFIX)
            return {
                name: document
                for name, entry in sorted(peers.items())
                if (document := _owned_document(entry, owner)) is not None
            }

        return self._with_endpoint(read)

    def _with_endpoint(self, action: Callable[[_Store], _T]) -> _T:
        # Every action is an idempotent diff, so after a connection failure part-way it is
        # simply run again from the start against the next endpoint.
        failures: list[str] = []
        count = len(self._endpoints)
        for offset in range(count):
            index = (self._preferred + offset) % count
            endpoint = self._endpoints[index]
            try:
                with self._connect(endpoint) as client:
                    result = action(_Store(client, endpoint, self._settings))
            except _Unreachable as unreachable:
                log.warning("etcd %s unavailable: %s", endpoint.url, unreachable.reason)
                failures.append(f"{endpoint.url}: {unreachable.reason}")
                continue
            self._preferred = index
            return result
        raise EtcdUnavailable("etcd unavailable: " + "; ".join(failures))

    @contextmanager
    def _connect(self, endpoint: _Endpoint) -> Iterator[Etcd3Client]:
        settings = self._settings
        session = requests.Session()
        # Otherwise REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE silently replace the CA we were given
        # (psf/requests#3829), and HTTP(S)_PROXY would route cluster-internal etcd traffic.
        session.trust_env = False
        if settings.ca_cert_file is not None:
            session.verify = settings.ca_cert_file
        if settings.cert_file is not None and settings.key_file is not None:
            session.cert = (settings.cert_file, settings.key_file)
        client = Etcd3Client(
            host=endpoint.host,
            port=endpoint.port,
            protocol=endpoint.protocol,
            timeout=settings.timeout_seconds,
            session=session,
        )
        try:
            yield client
        finally:
            session.close()


@dataclass(frozen=True)
class _Endpoint:
    url: str
    protocol: str
    host: str
    port: int


def _parse_endpoint(url: str) -> _Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoints (ETCD_ENDPOINTS): {url!r} is not an http(s)://host[:port] URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"endpoints (ETCD_ENDPOINTS): {url!r} must not carry a path")
    try:
        port = parts.port or 2379
    except ValueError:
        raise ValueError(f"endpoints (ETCD_ENDPOINTS): {url!r} has an invalid port") from None
    return _Endpoint(url=url, protocol=parts.scheme, host=parts.hostname, port=port)


class _Unreachable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Entry:
    key: str
    value: bytes
    mod_revision: int


class _Delete:
    """Marker: the change is to delete the key."""


_DELETE: Final = _Delete()
# A change maps the key's current entry (None: absent) to new bytes, _DELETE, or None (no-op).
_Change = Callable[[_Entry | None], bytes | _Delete | None]


@dataclass
class _Progress:
    """Counts that survive a restart of the apply on another endpoint."""

    writes: int = 0
    last_revision: int = 0


class _Store:
    """One connection's worth of reads and compare-and-swap writes."""

    def __init__(self, client: Etcd3Client, endpoint: _Endpoint, settings: EtcdSettings) -> None:
        self._client = client
        self._endpoint = endpoint
        self._settings = settings

    def apply(self, desired: DesiredState, progress: _Progress) -> ApplyResult:
        owner = desired.owner
        peers = self.read_prefix(PEERS_PREFIX)
        owned_prefix = OWNED_PREFIX + owner + "/"
        owned = self.read_prefix(owned_prefix)
        nodes = self.read_keys(NODES_PREFIX, set(desired.cluster_ids) | set(owned))

        wanted = {str(peer["name"]): peer["spec"] for peer in desired.peers}
        conflicts = {
            name for name in wanted if name in peers and _owned_document(peers[name], owner) is None
        }
        to_set = {node: cid for node, cid in desired.cluster_ids.items() if cid is not None}
        to_clear = sorted(
            {node for node, cid in desired.cluster_ids.items() if cid is None}
            | (set(owned) - set(to_set))
        )
        missing = {node for node in to_set if node not in nodes}

        snapshot = {
            **{PEERS_PREFIX + n: e for n, e in peers.items()},
            **{NODES_PREFIX + n: e for n, e in nodes.items()},
            **{owned_prefix + n: e for n, e in owned.items()},
        }
        # Make before break: new reflectors, then their peerings, then drop old peerings,
        # then old reflectors. Each change is computed on the snapshot first, so a value we
        # cannot parse stops the apply before its first write. A node's ownership record is
        # written in the transaction that sets its cluster ID and deleted in the one that
        # clears it; alone only when the node itself needs no change.
        steps: list[tuple[str, _Change, tuple[dict[str, Any], ...]]] = []
        for node, cluster_id in sorted(to_set.items()):
            if node in missing:
                continue
            record = _owned_record(cluster_id)
            set_id = _set_cluster_id(cluster_id)
            if set_id(snapshot.get(NODES_PREFIX + node)) is None:
                steps.append((owned_prefix + node, _mark_owned(record), ()))
            else:
                steps.append((NODES_PREFIX + node, set_id, (_put_op(owned_prefix + node, record),)))
        for name, spec in sorted(wanted.items()):
            if name not in conflicts:
                steps.append((PEERS_PREFIX + name, _put_peer(name, spec, owner), ()))
        # A make that cannot happen (a foreign peer in the way, a reflector without a Calico
        # Node) holds every break: the old peerings and reflectors may be all that routes.
        if not conflicts and not missing:
            for name, entry in sorted(peers.items()):
                if name not in wanted and _owned_document(entry, owner) is not None:
                    steps.append((PEERS_PREFIX + name, _delete_peer(owner), ()))
            for node in to_clear:
                clear = _set_cluster_id(None)
                if node in nodes and clear(snapshot[NODES_PREFIX + node]) is not None:
                    unmark = (_delete_op(owned_prefix + node),) if node in owned else ()
                    steps.append((NODES_PREFIX + node, clear, unmark))
                elif node in owned:
                    steps.append((owned_prefix + node, _unmark_owned(), ()))
        pending = [step for step in steps if step[1](snapshot.get(step[0])) is not None]

        for key, change, also in pending:
            final = self.swap(key, snapshot.get(key), change, progress, also)
            name = key.rpartition("/")[2]
            if key.startswith(PEERS_PREFIX):
                if final is None:
                    peers.pop(name, None)
                else:
                    peers[name] = final
                    if name in wanted and _owned_document(final, owner) is None:
                        conflicts.add(name)
            elif key.startswith(OWNED_PREFIX):
                continue
            elif final is None:
                if name in to_set:
                    missing.add(name)
                nodes.pop(name, None)

        owned_revisions = [
            entry.mod_revision
            for entry in peers.values()
            if _owned_document(entry, owner) is not None
        ]
        revision = progress.last_revision or max(owned_revisions, default=0)
        return ApplyResult(
            writes=progress.writes,
            revision=revision,
            peers=len(owned_revisions),
            reflectors=len(set(to_set) - missing),
            missing_nodes=tuple(sorted(missing)),
            foreign_conflicts=tuple(sorted(conflicts)),
        )

    def read_prefix(self, prefix: str) -> dict[str, _Entry]:
        """Every key under `prefix` by name, paged but pinned to one revision."""
        entries: dict[str, _Entry] = {}
        start, end, revision = prefix, _prefix_end(prefix), 0
        while True:
            request: dict[str, Any] = {
                "key": _b64(start),
                "range_end": _b64(end),
                "limit": _PAGE_SIZE,
            }
            if revision:
                request["revision"] = revision
            response = self._call(self._range, request)
            revision = revision or int(response["header"]["revision"])
            kvs = response.get("kvs", [])
            for kv in kvs:
                entry = _entry(kv)
                entries[entry.key[len(prefix) :]] = entry
            if not response.get("more") or not kvs:
                return entries
            start = _unb64(kvs[-1]["key"]).decode() + "\0"

    def read_keys(self, prefix: str, names: Iterable[str]) -> dict[str, _Entry]:
        """The keys `prefix + name` that exist, by name.

        Up to one transaction's worth of names are read by key in that one transaction (one
        round trip, only the bytes we need); more than that are read as the whole prefix,
        which for thousands of nodes is fewer round trips than batches of per-key ranges.
        """
        wanted = sorted(set(names))
        if len(wanted) > _MAX_TXN_OPS:
            everything = self.read_prefix(prefix)
            return {name: everything[name] for name in wanted if name in everything}
        if not wanted:
            return {}
        txn = {
            "compare": [],
            "success": [{"request_range": {"key": _b64(prefix + name)}} for name in wanted],
            "failure": [],
        }
        response = self._call(self._client.transaction, txn)
        entries: dict[str, _Entry] = {}
        for item in response.get("responses", []):
            for kv in item.get("response_range", {}).get("kvs", []):
                entry = _entry(kv)
                entries[entry.key[len(prefix) :]] = entry
        return entries

    def swap(
        self,
        key: str,
        current: _Entry | None,
        change: _Change,
        progress: _Progress,
        also: Sequence[dict[str, Any]] = (),
    ) -> _Entry | None:
        """Apply `change` to `key` by compare-and-swap; on conflict re-read and recompute.

        `also`: operations on other keys made in the same transaction, only if the swap is."""
        encoded_key = _b64(key)
        for _ in range(self._settings.max_retries + 1):
            outcome = change(current)
            if outcome is None:
                return current
            if current is None:
                compare = {"key": encoded_key, "result": "EQUAL", "target": "VERSION", "version": 0}
            else:
                compare = {
                    "key": encoded_key,
                    "result": "EQUAL",
                    "target": "MOD",
                    "mod_revision": current.mod_revision,
                }
            if isinstance(outcome, _Delete):
                operation: dict[str, Any] = {"request_delete_range": {"key": encoded_key}}
            else:
                operation = {"request_put": {"key": encoded_key, "value": _b64(outcome)}}
            txn = {
                "compare": [compare],
                "success": [operation, *also],
                # On conflict the same round trip returns the key as it is now.
                "failure": [{"request_range": {"key": encoded_key}}],
            }
            response = self._call(self._client.transaction, txn)
            if response.get("succeeded"):
                revision = int(response["header"]["revision"])
                progress.writes += 1
                progress.last_revision = revision
                verb = "delete" if isinstance(outcome, _Delete) else "put"
                log.info("etcd %s %s at revision %d", verb, key, revision)
                if isinstance(outcome, _Delete):
                    return None
                return _Entry(key=key, value=outcome, mod_revision=revision)
            kvs = response["responses"][0].get("response_range", {}).get("kvs", [])
            current = _entry(kvs[0]) if kvs else None
            log.info("etcd compare-and-swap conflict on %s; retrying", key)
        raise EtcdConflict(
            f"{key}: still changing after {self._settings.max_retries + 1} "
            "compare-and-swap attempts"
        )

    def _range(self, request: dict[str, Any]) -> Any:
        # get_url() may be the first request of the session (API path discovery).
        return self._client.post(self._client.get_url("/kv/range"), json=request)

    def _call(self, request: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return request(*args, **kwargs)
        except etcd3gw_exceptions.Etcd3Exception as error:
            if isinstance(
                error,
                (
                    etcd3gw_exceptions.ConnectionFailedError,
                    etcd3gw_exceptions.ConnectionTimeoutError,
                    etcd3gw_exceptions.InternalServerError,
                ),
            ):
                raise _Unreachable(self._reason(error)) from error
            raise EtcdError(
                f"etcd {self._endpoint.url} refused the request: {_detail(error)}"
            ) from error

    def _reason(self, error: etcd3gw_exceptions.Etcd3Exception) -> str:
        cause = error.__context__
        detail = _detail(error)
        if isinstance(cause, requests.exceptions.SSLError):
            return f"TLS failure ({detail})"
        if isinstance(cause, requests.exceptions.Timeout) or isinstance(
            error, etcd3gw_exceptions.ConnectionTimeoutError
        ):
            return f"timed out after {self._settings.timeout_seconds:g}s ({detail})"
        if isinstance(error, etcd3gw_exceptions.InternalServerError):
            return f"server error ({detail})"
        if "refused" in detail.lower():
            return f"connection refused ({detail})"
        return f"connection failed ({detail})"


def _set_cluster_id(cluster_id: str | None) -> _Change:
    """Set or clear spec.bgp.routeReflectorClusterID, leaving every other field as it is."""

    def change(current: _Entry | None) -> bytes | None:
        if current is None:
            return None  # no Calico Node: we never create one
        if cluster_id is None and _CLUSTER_ID_BYTES not in current.value:
            return None  # nothing to clear; skips parsing thousands of plain nodes
        document = _load_object(current)
        spec = document.get("spec")
        if spec is None:
            spec = document["spec"] = {}
        bgp = spec.get("bgp") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(bgp, (dict, type(None))):
            raise EtcdError(f"{current.key}: spec.bgp is not an object; refusing to edit it")
        present = (bgp or {}).get(CLUSTER_ID_FIELD) or None
        if present == cluster_id:
            return None
        if cluster_id is None:
            assert bgp is not None
            del bgp[CLUSTER_ID_FIELD]
        else:
            spec.setdefault("bgp", {})[CLUSTER_ID_FIELD] = cluster_id
        return _dump(document)

    return change


def _owned_record(cluster_id: str) -> bytes:
    return _dump({CLUSTER_ID_FIELD: cluster_id})


def _put_op(key: str, value: bytes) -> dict[str, Any]:
    return {"request_put": {"key": _b64(key), "value": _b64(value)}}


def _delete_op(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


def _mark_owned(wanted: bytes) -> _Change:
    """Record that this owner set the node's cluster ID (a node that already carries it)."""

    def change(current: _Entry | None) -> bytes | None:
        return None if current is not None and current.value == wanted else wanted

    return change


def _unmark_owned() -> _Change:
    """Drop the record once the node's cluster ID is cleared (or the node is gone)."""

    def change(current: _Entry | None) -> _Delete | None:
        return None if current is None else _DELETE

    return change


def _put_peer(name: str, spec: Mapping[str, Any], owner: str) -> _Change:
    wanted_spec = json.loads(json.dumps(spec))

    def change(current: _Entry | None) -> bytes | None:
        if current is None:
            return _dump(
                {
                    "kind": "BGPPeer",
                    "apiVersion": "projectcalico.org/v3",
                    "metadata": {
                        "name": name,
                        "uid": str(uuid.uuid4()),
                        "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "labels": {OWNER_LABEL: owner},
                    },
                    "spec": wanted_spec,
                }
            )
        document = _owned_document(current, owner)
        if document is None:
            return None  # foreign: never overwritten
        if (
            document.get("spec") == wanted_spec
            and document.get("kind") == "BGPPeer"
            and document.get("apiVersion") == "projectcalico.org/v3"
            and document["metadata"].get("name") == name
        ):
            return None
        updated = dict(document)
        updated["kind"] = "BGPPeer"
        updated["apiVersion"] = "projectcalico.org/v3"
        updated["metadata"] = {**document["metadata"], "name": name}
        updated["spec"] = wanted_spec
        return _dump(updated)

    return change


def _delete_peer(owner: str) -> _Change:
    def change(current: _Entry | None) -> _Delete | None:
        if current is None or _owned_document(current, owner) is None:
            return None
        return _DELETE

    return change


def _owned_document(entry: _Entry, owner: str) -> dict[str, Any] | None:
    """The parsed BGPPeer if it carries our owner label, else None (foreign or unreadable)."""
    try:
        document = json.loads(entry.value)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    metadata = document.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    if isinstance(labels, dict) and labels.get(OWNER_LABEL) == owner:
        return document
    return None


def _load_object(entry: _Entry) -> dict[str, Any]:
    try:
        document = json.loads(entry.value)
    except ValueError as error:
        raise EtcdError(f"{entry.key}: value is not JSON ({error}); refusing to edit it") from None
    if not isinstance(document, dict):
        raise EtcdError(f"{entry.key}: value is not a JSON object; refusing to edit it")
    return document


def _dump(document: Mapping[str, Any]) -> bytes:
    # Compact and in the original key order, as Calico's Go client writes it.
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _entry(kv: Mapping[str, Any]) -> _Entry:
    return _Entry(
        key=_unb64(kv["key"]).decode(),
        value=_unb64(kv.get("value", "")),
        mod_revision=int(kv["mod_revision"]),
    )


def _is_object_name(name: str) -> bool:
    return len(name) <= 253 and _DNS_SUBDOMAIN.match(name) is not None


def _prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _unb64(data: str) -> bytes:
    return base64.b64decode(data)


def _detail(error: etcd3gw_exceptions.Etcd3Exception) -> str:
    text = error.detail_text or str(error) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
