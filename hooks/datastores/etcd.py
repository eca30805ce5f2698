"""Apply a route-reflector plan to Calico's etcdv3 datastore: connections, endpoint failover,
paged reads and compare-and-swap transactions. What to change is computed in `etcd_changes`.

About 500 lines: failover, paged reads pinned to one revision, the compare-and-swap loop and
the mapping of etcd3gw's errors to unavailable/refused are one concern, the transport, and
splitting them would only scatter the retry rules that bind them; the three actions on top of it
(apply or release a plan, switch the mesh) are a few reads and swaps each."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

import requests
from etcd3gw import exceptions as etcd3gw_exceptions
from etcd3gw.client import Etcd3Client

from hooks.calico import OWNER_LABEL
from hooks.datastores.etcd_changes import Changes, DesiredState, plan_changes
from hooks.datastores.etcd_documents import (
    DELETE,
    NODES_PREFIX,
    OWNED_PREFIX,
    OWNERS_PREFIX,
    PEERS_PREFIX,
    STATUSES_PREFIX,
    Change,
    Delete,
    DocumentError,
    Entry,
    Fresh,
    claimed_by,
    drop_record,
    owned_document,
)
from hooks.datastores.etcd_mesh import (
    CONFIG_KEY,
    CONFIG_NAME,
    CONFIGS_PREFIX,
    MESH_RECORD_KEY,
    MESH_RECORDS_PREFIX,
    MeshRecord,
    mesh_off,
    mesh_on,
    recording,
)
from hooks.datastores.etcd_settings import Endpoint, EtcdSettings, parse_endpoint
from hooks.datastores.etcd_sweep import MeshHeld, Orphan
from hooks.stamps import stamp

__all__ = [
    "NODES_PREFIX",
    "OWNED_PREFIX",
    "OWNERS_PREFIX",
    "OWNER_LABEL",
    "PEERS_PREFIX",
    "ApplyResult",
    "DesiredState",
    "EtcdApplier",
    "EtcdConflict",
    "EtcdError",
    "EtcdSettings",
    "EtcdUnavailable",
    "MeshResult",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")
Operations = Sequence[tuple[str, bytes | Delete]]
Also = Operations | Callable[[Entry | None], Operations]

MeshResult = Literal["created", "patched", "unchanged"]

# The most CalicoNodeStatus documents one topology's report read takes (one per RR; a topology
# plans far fewer RRs): past it the read is refused, so the sessions count as unproven.
_MAX_REPORTS: Final = 1000
# etcd's default --max-txn-ops: the most range requests one read transaction may carry.
_MAX_TXN_OPS: Final = 128
# Keys per page of a prefix range: the gRPC gateway refuses responses past a few MB
# (networking-calico saw it at ~3000 workload endpoints), and a Calico Node is 0.5-2 KB.
_PAGE_SIZE: Final = 500


class EtcdError(Exception):
    """An etcd operation failed; the hook must answer non-200 and retry later."""


class EtcdUnavailable(EtcdError):
    """No endpoint could be reached: connection refused, timeout or TLS failure."""


class EtcdConflict(EtcdError):
    """A key kept changing under us for more than `max_retries` compare-and-swap attempts."""


@dataclass(frozen=True)
class ApplyResult:
    """What one apply did and found.

    `revision`: mod revision of our last write, or, when nothing was written, of the newest
    BGPPeer we own (Calico Node keys are left out: foreign writers move them). 0 if neither.
    `peers`: BGPPeers we own after the apply; `reflectors`: nodes that carry a cluster ID
    we set; `missing_nodes`: nodes we were to give a cluster ID that have no Calico Node;
    `foreign_conflicts`: BGPPeer names we wanted that exist without our owner label.
    While `missing_nodes` or `foreign_conflicts` is non-empty nothing is deleted or cleared.
    `foreign_peers`: BGPPeers carrying no owner label of this service (never touched);
    `orphans`: other owners no sync shows as live (swept once unseen for SWEEP_GRACE).
    """

    writes: int
    revision: int
    peers: int
    reflectors: int
    missing_nodes: tuple[str, ...]
    foreign_conflicts: tuple[str, ...]
    foreign_peers: int = 0
    orphans: tuple[Orphan, ...] = ()


class EtcdApplier:
    """Applies DesiredState to etcd; one short-lived HTTP session per call, so nothing leaks."""

    def __init__(self, settings: EtcdSettings) -> None:
        self._settings = settings
        self._endpoints = tuple(parse_endpoint(url) for url in settings.endpoints)
        self._preferred = 0

    def apply(self, desired: DesiredState) -> ApplyResult:
        progress = _Progress()
        return self._with_endpoint(lambda store: store.apply(desired, progress))

    def release(self, owner: str) -> ApplyResult:
        """Remove everything `owner` has in etcd (its topology is being deleted): its BGPPeers,
        the cluster IDs it set (with their records), then its owner record."""
        progress = _Progress()

        def release(store: _Store) -> ApplyResult:
            result = store.apply(DesiredState(owner=owner, peers=(), cluster_ids={}), progress)
            key = OWNERS_PREFIX + owner
            store.swap(key, store.read_keys(OWNERS_PREFIX, [owner]).get(owner), _gone, progress)
            return replace(result, writes=progress.writes)

        return self._with_endpoint(release)

    def mesh_off(self, owner: str, uid: str) -> MeshResult:
        """Turn Calico's node-to-node mesh off in BGPConfiguration `default`, recording in the
        same transaction what was there for `mesh_restore`; nothing is written when it is off."""
        found: list[Entry | None] = []  # the entry each write attempt was computed from

        def record(current: Entry | None) -> Operations:
            found.append(current)
            return recording(owner, uid)(current)

        def switch(store: _Store) -> MeshResult:
            progress = _Progress()
            current = store.read_keys(CONFIGS_PREFIX, [CONFIG_NAME]).get(CONFIG_NAME)
            fresh = Fresh(new_uid=lambda: str(uuid.uuid4()), created=stamp(datetime.now(UTC)))
            store.swap(CONFIG_KEY, current, mesh_off(fresh), progress, record)
            if not progress.writes:
                return "unchanged"
            return "created" if found[-1] is None else "patched"

        return self._with_endpoint(switch)

    def mesh_restore(self, owner: str) -> bool:
        """Turn the mesh back on if `owner` switched it off (its record says so), and drop the
        record; True when BGPConfiguration `default` was written."""

        def restore(store: _Store) -> bool:
            progress = _Progress()
            try:
                found = store.mesh_record()
            except DocumentError as error:
                raise EtcdError(str(error)) from None
            if found is None or found[1].owner != owner:
                return False
            entry, record = found
            current = store.read_keys(CONFIGS_PREFIX, [CONFIG_NAME]).get(CONFIG_NAME)
            drop = ((MESH_RECORD_KEY, DELETE),)
            store.swap(CONFIG_KEY, current, mesh_on(record), progress, drop)
            if progress.writes:
                return True
            store.swap(MESH_RECORD_KEY, entry, drop_record(entry.value), progress)
            return False

        return self._with_endpoint(restore)

    def read_reports(self, owner: str, prefix: str) -> dict[str, bytes]:
        """The CalicoNodeStatus documents named `prefix`... that may be `owner`'s (they carry its
        owner label, or cannot be read as a document: the caller reports those), by name: one
        range read of at most `_MAX_REPORTS` keys; more is an EtcdError."""

        def read(store: _Store) -> dict[str, bytes]:
            found = store.read_page(STATUSES_PREFIX + prefix, _MAX_REPORTS)
            return {
                prefix + name: entry.value
                for name, entry in sorted(found.items())
                if claimed_by(entry, owner)
            }

        return self._with_endpoint(read)

    def read_owned(self, owner: str) -> dict[str, Mapping[str, Any]]:
        """The BGPPeers carrying our owner label, by name."""

        def read(store: _Store) -> dict[str, Mapping[str, Any]]:
            peers = store.read_prefix(PEERS_PREFIX)
            return {
                name: document
                for name, entry in sorted(peers.items())
                if (document := owned_document(entry, owner)) is not None
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
    def _connect(self, endpoint: Endpoint) -> Iterator[Etcd3Client]:
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


class _Unreachable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Progress:
    """Counts that survive a restart of the apply on another endpoint."""

    writes: int = 0
    last_revision: int = 0


class _Store:
    """One connection's worth of reads and compare-and-swap writes."""

    def __init__(self, client: Etcd3Client, endpoint: Endpoint, settings: EtcdSettings) -> None:
        self._client = client
        self._endpoint = endpoint
        self._settings = settings

    def plan(self, desired: DesiredState) -> tuple[Changes, dict[str, Entry]]:
        """Read what `desired` touches (every BGPPeer, the cluster-ID records, the owner records,
        the Calico Nodes they name) and compute the changes; returns them with the BGPPeers."""
        owner = desired.owner
        peers = self.read_prefix(PEERS_PREFIX)
        records: dict[str, dict[str, Entry]] = {}
        # Every owner's cluster-ID records when orphans are looked for, else only ours.
        tree = OWNED_PREFIX if desired.liveness is not None else OWNED_PREFIX + owner + "/"
        for path, entry in self.read_prefix(tree).items():
            label, _, node = (owner + "/" + path if tree != OWNED_PREFIX else path).partition("/")
            records.setdefault(label, {})[node] = entry
        owned = records.pop(owner, {})
        owners = self.read_prefix(OWNERS_PREFIX) if desired.liveness is not None else {}
        statuses = self.read_prefix(STATUSES_PREFIX)
        named = set(desired.cluster_ids) | set(owned) | {n for r in records.values() for n in r}
        nodes = self.read_keys(NODES_PREFIX, named)
        fresh = Fresh(
            new_uid=lambda: str(uuid.uuid4()),
            created=stamp(datetime.now(UTC)),
        )
        try:
            # Every change is computed on the snapshot first, so a value we cannot parse stops
            # the apply before its first write.
            mesh = self.mesh_held() if desired.liveness is not None else None
            changes = plan_changes(
                desired, peers, nodes, owned, fresh, records, owners, statuses, mesh
            )
        except DocumentError as error:
            raise EtcdError(str(error)) from None
        return changes, peers

    def apply(self, desired: DesiredState, progress: _Progress) -> ApplyResult:
        owner = desired.owner
        changes, peers = self.plan(desired)
        conflicts, missing = set(changes.conflicts), set(changes.missing)
        stopped: set[str] = set()  # owners seen again while being swept
        for step in changes.steps:
            if step.sweeps in stopped:
                continue
            current = changes.snapshot.get(step.key)
            final = self.swap(step.key, current, step.change, progress, step.also)
            name = step.key.rpartition("/")[2]
            if step.sweeps and step.key == OWNERS_PREFIX + step.sweeps and final is not None:
                stopped.add(step.sweeps)
            elif step.key.startswith(PEERS_PREFIX):
                if final is None:
                    peers.pop(name, None)
                else:
                    peers[name] = final
                    if name in changes.wanted and owned_document(final, owner) is None:
                        conflicts.add(name)
            elif step.key.startswith(NODES_PREFIX) and final is None and name in changes.to_set:
                missing.add(name)

        owned_revisions = [
            entry.mod_revision
            for entry in peers.values()
            if owned_document(entry, owner) is not None
        ]
        revision = progress.last_revision or max(owned_revisions, default=0)
        return ApplyResult(
            writes=progress.writes,
            revision=revision,
            peers=len(owned_revisions),
            reflectors=len(changes.to_set - missing),
            missing_nodes=tuple(sorted(missing)),
            foreign_conflicts=tuple(sorted(conflicts)),
            foreign_peers=changes.foreign,
            orphans=tuple(
                replace(orphan, swept=False) if orphan.owner in stopped else orphan
                for orphan in changes.orphans
            ),
        )

    def mesh_held(self) -> MeshHeld | None:
        """The mesh record and BGPConfiguration `default`, when some owner switched the mesh off;
        None without a record, or with one that is not ours (logged; no sweep acts on it)."""
        try:
            found = self.mesh_record()
        except DocumentError as error:
            log.warning("etcd mesh record ignored by the sweep: %s", error)
            return None
        if found is None:
            return None
        config = self.read_keys(CONFIGS_PREFIX, [CONFIG_NAME]).get(CONFIG_NAME)
        return MeshHeld(found[1], found[0], config)

    def mesh_record(self) -> tuple[Entry, MeshRecord] | None:
        """The mesh record as read, and decoded; None when there is none (DocumentError: it is
        not a record of this service)."""
        entry = self.read_keys(MESH_RECORDS_PREFIX, [CONFIG_NAME]).get(CONFIG_NAME)
        return None if entry is None else (entry, MeshRecord.decode(entry))

    def read_page(self, prefix: str, limit: int) -> dict[str, Entry]:
        """Every key under `prefix` by name, in one range read of at most `limit` keys; more than
        that is an EtcdError."""
        request = {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix)), "limit": limit}
        response = self._call(self._range, request)
        if response.get("more"):
            raise EtcdError(f"more than {limit} keys under {prefix}")
        entries = (_entry(kv) for kv in response.get("kvs", []))
        return {entry.key[len(prefix) :]: entry for entry in entries}

    def read_prefix(self, prefix: str) -> dict[str, Entry]:
        """Every key under `prefix` by name, paged but pinned to one revision."""
        entries: dict[str, Entry] = {}
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

    def read_keys(self, prefix: str, names: Iterable[str]) -> dict[str, Entry]:
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
        entries: dict[str, Entry] = {}
        for item in response.get("responses", []):
            for kv in item.get("response_range", {}).get("kvs", []):
                entry = _entry(kv)
                entries[entry.key[len(prefix) :]] = entry
        return entries

    def swap(
        self,
        key: str,
        current: Entry | None,
        change: Change,
        progress: _Progress,
        also: Also = (),
    ) -> Entry | None:
        """Apply `change` to `key` by compare-and-swap; on conflict re-read and recompute.

        `also`: operations on other keys made in the same transaction, only if the swap is (a
        function of the key's current entry: recomputed with the change)."""
        encoded_key = _b64(key)
        for _ in range(self._settings.max_retries + 1):
            try:
                outcome = change(current)
            except DocumentError as error:  # what another writer left cannot be edited
                raise EtcdError(str(error)) from None
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
            others = also(current) if callable(also) else also
            txn = {
                "compare": [compare],
                "success": [_operation(key, outcome), *(_operation(k, v) for k, v in others)],
                # On conflict the same round trip returns the key as it is now.
                "failure": [{"request_range": {"key": encoded_key}}],
            }
            response = self._call(self._client.transaction, txn)
            if response.get("succeeded"):
                revision = int(response["header"]["revision"])
                progress.writes += 1
                progress.last_revision = revision
                verb = "delete" if isinstance(outcome, Delete) else "put"
                log.info("etcd %s %s at revision %d", verb, key, revision)
                if isinstance(outcome, Delete):
                    return None
                return Entry(key=key, value=outcome, mod_revision=revision)
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


def _entry(kv: Mapping[str, Any]) -> Entry:
    return Entry(
        key=_unb64(kv["key"]).decode(),
        value=_unb64(kv.get("value", "")),
        mod_revision=int(kv["mod_revision"]),
    )


def _gone(current: Entry | None) -> Delete | None:
    return None if current is None else DELETE


def _operation(key: str, outcome: bytes | Delete) -> dict[str, Any]:
    if isinstance(outcome, Delete):
        return {"request_delete_range": {"key": _b64(key)}}
    return {"request_put": {"key": _b64(key), "value": _b64(outcome)}}


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
