"""The JSON shapes we read and write: Metacontroller requests and responses, a Node subset.

Requests decode with msgspec into structs holding only the fields we read: a 5,000-node request
is ~50 MB, and skipping what we never look at (managedFields, images) is what keeps the sync fast.

Longer than ~400 lines on purpose: decoding is part of this one concern, not a second one. The
error paths (`decode`, `locate`, `unreadable`) name the fields of these structs in a 400, and the
large-body path (`decode_topology_request` in pieces, the collector pause) exists only for their
Node map; apart, each half would import the other's private layout.
"""

from __future__ import annotations

import gc
import re
import threading
from typing import Any, TypeVar

import msgspec

from hooks.model import NodeInfo, Taint

T = TypeVar("T")

NODE_KEY = "Node.v1"
GROUP = "route-reflector.dev"
VERSION = "v1alpha1"
TOPOLOGY_API = f"{GROUP}/{VERSION}"
TOPOLOGY_KEY = f"RouteReflectorTopology.{TOPOLOGY_API}"
BGPPEER_API = "crd.projectcalico.org/v1"
BGPPEER_KEY = f"BGPPeer.{BGPPEER_API}"
NODESTATUS_KEY = f"CalicoNodeStatus.{BGPPEER_API}"


class BadRequest(ValueError):
    """A request we cannot read: answered with 400 and `{"error", "field"}`."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


CLUSTER_ID_ANNOTATION = "projectcalico.org/RouteReflectorClusterID"
MANAGED_ANNOTATION = "route-reflector.dev/managed"


class AnnotationsWire(msgspec.Struct):
    """Only the annotations we read; nodes carry many large ones we skip while decoding."""

    cluster_id: str | None = msgspec.field(default=None, name=CLUSTER_ID_ANNOTATION)
    managed: str | None = msgspec.field(default=None, name=MANAGED_ANNOTATION)

    def as_dict(self) -> dict[str, str]:
        found = {}
        if self.cluster_id is not None:
            found[CLUSTER_ID_ANNOTATION] = self.cluster_id
        if self.managed is not None:
            found[MANAGED_ANNOTATION] = self.managed
        return found


class Meta(msgspec.Struct):
    name: str
    uid: str = ""
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    generation: int = 0
    labels: dict[str, str] | None = None
    annotations: AnnotationsWire | None = None


class TopologyMeta(msgspec.Struct):
    name: str
    uid: str = ""
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    generation: int = 0


class TaintWire(msgspec.Struct):
    key: str = ""
    value: str = ""
    effect: str = ""


class NodeSpecWire(msgspec.Struct):
    unschedulable: bool = False
    taints: list[TaintWire] | None = None


class ConditionWire(msgspec.Struct):
    type: str
    status: str


class NodeStatusWire(msgspec.Struct):
    conditions: list[ConditionWire] | None = None


class NodeWire(msgspec.Struct, dict=True):
    """A Node as decoded. Its NodeInfo is made once (a Node kept from the last body, see
    NodeTexts, is read by every sync after: 20,000 NodeInfo cost ~70 ms a sync) and held in the
    instance's `__dict__`, which no JSON field can reach."""

    metadata: Meta
    spec: NodeSpecWire | None = None
    status: NodeStatusWire | None = None

    def to_info(self) -> NodeInfo:
        made: NodeInfo | None = self.__dict__.get("info")
        if made is None:
            made = self.__dict__["info"] = self._made_info()
        return made

    def _made_info(self) -> NodeInfo:
        meta = self.metadata
        spec = self.spec
        ready = False
        status = self.status
        if status is not None and status.conditions:
            for condition in status.conditions:
                if condition.type == "Ready":
                    ready = condition.status == "True"
        taints: tuple[Taint, ...] = ()
        if spec is not None and spec.taints:
            taints = tuple(Taint(t.key, t.value, t.effect) for t in spec.taints)
        return NodeInfo(
            meta.name,
            meta.labels or {},
            meta.annotations.as_dict() if meta.annotations is not None else {},
            meta.creationTimestamp or "",
            ready,
            meta.deletionTimestamp is not None,
            spec.unschedulable if spec is not None else False,
            taints,
        )


# The topology's status, written by hooks/status.py and read back by every reader. What every
# status carries is a field without a default or a plain default (always encoded); what only some
# carry is UNSET until set (left out). The field order is the order the bytes have.


class ReflectorWire(msgspec.Struct, omit_defaults=True):
    node: str
    zone: str
    clusterID: str
    state: str
    role: str = ""
    serves: str | None = None
    since: str = ""
    plane: int = 0
    hub: bool = False
    nextClusterID: str = ""

    def served(self) -> str:
        """The zone (hierarchy: rack) this RR serves."""
        return self.serves if self.serves is not None else self.zone


class GroupWire(msgspec.Struct, omit_defaults=True):
    name: str
    zone: str
    reflectors: list[str]
    rack: str = ""
    retiringSince: str = ""


class ZoneStatusWire(msgspec.Struct):
    name: str = ""
    nodes: int = 0
    ready: int = 0
    eligible: int = 0
    demand: int = 0
    expected: int = 0
    actual: int = 0


class ConditionStatusWire(msgspec.Struct):
    type: str
    status: str
    reason: str = ""
    message: str = ""
    lastTransitionTime: str = ""
    observedGeneration: int = 0


class DatastoreStatusWire(msgspec.Struct):
    """What the etcd applier reported (etcdv3 mode)."""

    type: str = ""
    revision: int = 0
    peers: int = 0
    foreignBGPPeers: int = 0
    orphaned: list[dict[str, Any]] = []


class LegacyOperatorWire(msgspec.Struct):
    """The original operator's leftovers seen last sync; while `keepLabels`, its RR label values
    stay on the nodes (its client BGPPeers select them) until ours carry every session."""

    count: int = 0
    bgpPeers: list[str] = []
    keepLabels: bool = False


class GuardStatusWire(msgspec.Struct):
    """When this service first saw the Node set that tripped the guard (its own clock)."""

    trippedSince: str = ""


class TopologyStatusWire(msgspec.Struct):
    """The topology's status: what the topology sync writes (hooks/status.py) and what its
    readers share (the next sync, the node hook's plan view, plan's table and picture)."""

    topology: str = ""
    reflectors: int = 0
    zoneCount: int = 0
    routeReflectors: list[ReflectorWire] = []
    zones: list[ZoneStatusWire] = []
    groups: list[GroupWire] = []
    datastore: DatastoreStatusWire | msgspec.UnsetType = msgspec.UNSET
    bgpPeers: int = 0
    legacyOperator: LegacyOperatorWire | msgspec.UnsetType | None = msgspec.UNSET
    conditions: list[ConditionStatusWire] = []
    guard: GuardStatusWire | msgspec.UnsetType | None = msgspec.UNSET


class TopologyWire(msgspec.Struct):
    metadata: TopologyMeta
    apiVersion: str = TOPOLOGY_API
    kind: str = "RouteReflectorTopology"
    spec: dict[str, Any] | None = None
    status: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))

    def read_status(self) -> TopologyStatusWire:
        return read_status(bytes(self.status))


def read_status(raw: bytes) -> TopologyStatusWire:
    """A topology's status; one that does not parse (edited by hand) counts as none."""
    if raw == b"null":
        return TopologyStatusWire()
    try:
        return msgspec.json.decode(raw, type=TopologyStatusWire)
    except msgspec.ValidationError:
        return TopologyStatusWire()


class CustomizeRequest(msgspec.Struct):
    parent: dict[str, Any]
    controller: dict[str, Any] | None = None


class Related(msgspec.Struct):
    """`related` as Metacontroller sends it, decoded in the same pass as the envelope: the
    Node map is most of a topology request, and a second pass over it would cost a third more."""

    nodes: dict[str, NodeWire] | None = msgspec.field(default=None, name=NODE_KEY)
    topologies: dict[str, TopologyWire] | None = msgspec.field(default=None, name=TOPOLOGY_KEY)
    # BGPPeers not ours (no owner label): where the original operator's are found.
    bgp_peers: dict[str, dict[str, Any]] | None = msgspec.field(default=None, name=BGPPEER_KEY)


class TopologySyncRequest(msgspec.Struct):
    parent: TopologyWire
    children: dict[str, dict[str, msgspec.Raw]] | None
    related: Related | None
    controller: dict[str, Any] | None = None
    finalizing: bool = False


class NodeSyncRequest(msgspec.Struct):
    object: NodeWire
    related: Related | None
    controller: dict[str, Any] | None = None
    attachments: dict[str, Any] | None = None
    finalizing: bool = False


class NodeSyncResponse(msgspec.Struct, forbid_unknown_fields=True):
    labels: dict[str, str | None]
    annotations: dict[str, str | None]
    status: None = None
    attachments: list[dict[str, Any]] = []


class TopologySyncResponse(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    status: dict[str, Any]
    children: list[dict[str, Any]]
    resyncAfterSeconds: float | None = None


class TopologyFinalizeResponse(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The finalize hook's answer: `finalized` lets Metacontroller remove its finalizer."""

    status: dict[str, Any]
    children: list[dict[str, Any]]
    finalized: bool
    resyncAfterSeconds: float | None = None


class CustomizeResponse(msgspec.Struct, forbid_unknown_fields=True):
    relatedResources: list[dict[str, Any]]


_PATH = re.compile(r"at `\$\.?([^`]*)`")


class _GarbageCollectorPause:
    """Pause the cyclic garbage collector while a request is decoded and answered.

    Decoding 20,000 Nodes builds ~10^6 containers; the collector then runs full passes over them
    although none can be in a cycle (plain dicts, lists and structs, freed by reference count):
    at 20,000 nodes that is 600 ms of decoding instead of 330 ms, and a pass that lands while
    the plan is computed adds 300 ms more. Nested and concurrent pauses count, so the collector
    comes back when the last one ends (if it was on to begin with)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._was_enabled:
                gc.enable()


collector_paused = _GarbageCollectorPause()
_NO_GC = collector_paused


# Nesting deeper than this is refused before the decoder's recursion limit is reached.
MAX_DEPTH = 200
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]')


def _path_text(path: list[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + part
    return text


def locate(body: bytes | bytearray, offset: int | None = None, depth: int | None = None) -> str:
    """The JSON path (`a.b[2].c`) at byte `offset`, or where nesting first exceeds `depth`.

    Only called for a body already known to be bad, so a plain scan over its tokens is fine;
    a string that is not UTF-8 is named by the key it sits under (its own text may not print)."""
    stack: list[list[Any]] = []  # [opening byte, its current key or index]
    for token in _TOKEN.finditer(body):
        start, text = token.start(), token.group()
        if offset is not None and start > offset:
            break
        if text in (b"{", b"["):
            if depth is not None and len(stack) >= depth:
                break
            stack.append([text, None if text == b"{" else 0])
        elif text in (b"}", b"]"):
            if stack:
                stack.pop()
        elif text == b",":
            if stack:
                stack[-1][1] = stack[-1][1] + 1 if stack[-1][0] == b"[" else None
        elif (
            text != b":"
            and stack
            and stack[-1][0] == b"{"
            and stack[-1][1] is None
            and body[token.end() : token.end() + 64].lstrip()[:1] == b":"
        ):
            stack[-1][1] = text[1:-1].decode("utf-8", "replace")
            if offset is not None and offset < token.end():
                break
    path: list[str | int] = [slot for _, slot in stack if slot is not None]
    return _path_text(path[:24]) + (" …" if len(path) > 24 else "")


def unreadable(body: bytes | bytearray, error: Exception) -> BadRequest | None:
    """A 400 for a body msgspec cannot take at all: text that is not UTF-8, or nesting so deep
    it would exhaust the decoder's recursion. None when the body shows neither (a bug)."""
    if isinstance(error, UnicodeDecodeError):
        try:
            bytes(body).decode("utf-8")
            return None
        except UnicodeDecodeError as found:
            field = locate(body, offset=found.start)
            return BadRequest(f"a string is not valid UTF-8 (byte {found.start})", field or None)
    if isinstance(error, RecursionError):
        deep = _deeper_than(body, MAX_DEPTH)
        if deep:
            field = locate(body, depth=MAX_DEPTH)
            return BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels", field or None)
    return None


def _deeper_than(body: bytes | bytearray, limit: int) -> bool:
    level = 0
    for token in _TOKEN.finditer(body):
        text = token.group()
        if text in (b"{", b"["):
            level += 1
            if level > limit:
                return True
        elif text in (b"}", b"]"):
            level -= 1
    return False


def without_path(message: str) -> str:
    return _PATH.sub("", message).strip().rstrip("-").strip()


def wire_path(message: str) -> str:
    """The `.a.b[0]` suffix msgspec names in a validation error ("" at the top)."""
    found = _PATH.search(message)
    if found is None or not found.group(1):
        return ""
    path = found.group(1)
    return path if path.startswith("[") else "." + path


def decode(body: bytes | bytearray, kind: type[T]) -> T:
    """Decode a request body, or raise BadRequest naming the field that is wrong."""
    try:
        with _NO_GC:
            return msgspec.json.decode(body, type=kind)
    except (UnicodeDecodeError, RecursionError) as error:
        bad = unreadable(body, error)
        if bad is None:
            raise
        raise bad from None
    except msgspec.ValidationError as error:
        text = str(error)
        found = _PATH.search(text)
        field = found.group(1) if found else None
        if field is None and "missing required field" in text:
            field = text.split("`")[1]
        message = _PATH.sub("", text).strip().rstrip("-").strip()
        raise BadRequest(message, field) from None
    except msgspec.DecodeError as error:
        raise BadRequest(f"body is not valid JSON: {error}") from None


# Bodies above this decode their Node map member by member (decode_topology_request), those not
# kept from the last body in runs of about PIECE_BYTES.
PIECES_ABOVE = 4 * 1024 * 1024
PIECE_BYTES = 1024 * 1024
_NODES_KEY = f'"{NODE_KEY}"'.encode()
# How a Node member of the map begins, as Metacontroller writes it (Go sorts an object's keys).
_NODE_MEMBER = b'":{"apiVersion":"v1","kind":"Node",'
_NODE_PIECE = msgspec.json.Decoder(dict[str, NodeWire])


class NodeTexts:
    """The Node members of the last large topology request, each as its text and decoded.

    Metacontroller sends every Node on every sync, and most are the bytes they were the sync
    before. A member whose text is byte for byte one kept here is taken decoded (a compare
    instead of a decode); every other one is decoded and kept. What is kept is exactly the
    members of the last request decoded whole without error, so it holds one body's Node text
    at most; while one request records its members, one decoded at the same time
    only reads them (two copies of the text would double the memory). The decoded Nodes are
    shared by the requests that read them: nothing may change them (the plan reads Nodes, it
    never writes them)."""

    def __init__(self) -> None:
        # a member's raw name → (its text: `"name":{...}`, its decoded name, its Node)
        self.members: dict[bytes, tuple[bytes, str, NodeWire]] = {}
        self.recording = threading.Lock()
        self._last = threading.local()

    @property
    def reused(self) -> int:
        """Members taken as kept by the last request this thread decoded."""
        found: int = getattr(self._last, "reused", 0)
        return found

    def count(self, reused: int) -> None:
        self._last.reused = reused


def decode_topology_request(
    body: bytes | bytearray, texts: NodeTexts | None = None
) -> TopologySyncRequest:
    """`decode(body, TopologySyncRequest)`, with a large body's Node map decoded member by
    member, each one decoded only if `texts` does not hold its text already.

    One decode of a 20,000-node body holds the interpreter lock for most of a second, and the
    event loop (/healthz, every other request) waits that long; member by member the lock can
    change hands. The result is the same: see `_in_pieces`."""
    if len(body) > PIECES_ABOVE:
        recording = texts is not None and texts.recording.acquire(blocking=False)
        try:
            members: dict[bytes, tuple[bytes, str, NodeWire]] | None = {} if recording else None
            with _NO_GC:
                found = _in_pieces(body, texts.members if texts else {}, members)
            if found is not None:
                if texts is not None:
                    if members is not None:
                        texts.members = members
                    texts.count(found[1])
                return found[0]
        finally:
            if texts is not None and recording:
                texts.recording.release()
    return decode(body, TopologySyncRequest)


def _in_pieces(
    body: bytes | bytearray,
    kept: dict[bytes, tuple[bytes, str, NodeWire]],
    members: dict[bytes, tuple[bytes, str, NodeWire]] | None,
) -> tuple[TopologySyncRequest, int] | None:
    """The request with its Node map decoded member by member (a member whose text is in `kept`
    taken from there; every member that is one Node's goes into `members`, unless None), and how
    many were taken; None when the body is not of the shape this needs (it is then decoded
    whole, which also names what is wrong).

    The map's text, `{M}`, is cut at commas into P1,P2,...,Pn,R, before each `"name":{"apiVersion":
    "v1","kind":"Node",` after the first. Each Pi is either decoded alone as `{Pi}`, or is byte for
    byte a text kept from an earlier body, where it was decoded alone as `{Pi}` (so it is one valid
    member there and here). The rest of the body, with `{R}` in the map's place, is decoded as a
    whole. When every part decodes, M is a valid member list made of theirs, and since JSON has
    one parse only, the members of `{M}` are theirs in that order (a later duplicate name wins,
    as in one decode). A cut in the wrong place makes a part invalid JSON: then None. The map cut
    is the first `"Node.v1"` in the body (that text cannot occur inside a string: its quotes would
    be escaped); it is the one under `related` when the rest decodes with related nodes and holds
    no other `"Node.v1"` after the pieces (a key of `related` sits outside the map cut, so before
    it or after it)."""
    key = body.find(_NODES_KEY)
    start = key + len(_NODES_KEY) + 2
    if key < 0 or body[start - 2 : start] != b":{":
        return None
    view = memoryview(body)
    found = _Members(body, members)
    begin = start  # where the next piece begins: a member's name
    # Members mostly come in the order they came last time: the kept one after the last one
    # seen is tried first. Its text there, followed by a comma, is the next member (no search).
    order = list(kept.items())
    place = {name: index for index, name in enumerate(kept)}
    guess = 0
    # with nothing to find or keep, the map is cut into pieces of PIECE_BYTES, not members
    skip = PIECE_BYTES if not kept and members is None else 0
    while True:
        if guess < len(order):
            name, entry = order[guess]
            end = begin + len(entry[0])
            if body.startswith(entry[0], begin) and body[end : end + 1] == b",":
                if not found.take(name, entry):
                    return None
                begin, guess = end + 1, guess + 1
                continue
        marker = body.find(_NODE_MEMBER, begin)
        after = body.find(_NODE_MEMBER, max(marker + len(_NODE_MEMBER), begin + skip))
        cut = body.rfind(b',"', begin, after) if after >= 0 else -1
        if cut <= begin:
            break
        name = bytes(view[begin + 1 : marker]) if begin < marker < cut else b""
        same = kept.get(name)
        if same is not None and len(same[0]) == cut - begin and body.startswith(same[0], begin):
            if not found.take(name, same):
                return None
        elif not found.pending(begin, cut, name):
            return None
        if name in place:
            guess = place[name] + 1
        begin = cut + 1
    if not found.flush():
        return None
    if begin > start and body[begin : begin + 1] != b'"':
        return None  # what follows the last member cut off is not one (`,}` is no JSON)
    if body.find(_NODES_KEY, begin) >= 0:
        return None
    try:
        request = msgspec.json.decode(
            b"".join((view[:start], view[begin:])), type=TopologySyncRequest
        )
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if request.related is None or request.related.nodes is None:
        return None
    found.nodes.update(request.related.nodes)
    request.related.nodes = found.nodes
    return request, found.reused


class _Members:
    """The Node members of one map as `_in_pieces` cuts them: taken from the kept ones, or
    decoded. Recording (`members` given), each is decoded alone, so that a kept text is exactly
    one member; otherwise consecutive ones are decoded together in runs of about PIECE_BYTES
    (a decode call per member costs a third more). Between decodes, the event loop's thread may
    take the lock."""

    def __init__(
        self, body: bytes | bytearray, members: dict[bytes, tuple[bytes, str, NodeWire]] | None
    ) -> None:
        self.view, self.members = memoryview(body), members
        self.nodes: dict[str, NodeWire] = {}
        self.reused = 0
        self.run: tuple[int, int] | None = None  # consecutive members to decode: from, to

    def take(self, name: bytes, entry: tuple[bytes, str, NodeWire]) -> bool:
        """The kept member `entry` is next (after the run, which keeps the map's order)."""
        if not self.flush():
            return False
        self.nodes[entry[1]] = entry[2]
        if self.members is not None:
            self.members[name] = entry
        self.reused += 1
        return True

    def pending(self, begin: int, cut: int, name: bytes) -> bool:
        """The member at [begin, cut) is to be decoded; False when what was decoded is not
        JSON (a cut in the wrong place)."""
        if self.members is not None:
            decoded = self._decode(begin, cut)
            if decoded is None:
                return False
            if len(decoded) == 1 and name:
                ((decoded_name, node),) = decoded.items()
                self.members[name] = (bytes(self.view[begin:cut]), decoded_name, node)
            return True
        self.run = (begin if self.run is None else self.run[0], cut)
        return cut - self.run[0] < PIECE_BYTES or self.flush()

    def flush(self) -> bool:
        if self.run is None:
            return True
        run, self.run = self.run, None
        return self._decode(*run) is not None

    def _decode(self, begin: int, cut: int) -> dict[str, NodeWire] | None:
        try:
            decoded = _NODE_PIECE.decode(b"".join((b"{", self.view[begin:cut], b"}")))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None
        self.nodes.update(decoded)
        return decoded


def release(request: TopologySyncRequest | NodeSyncRequest) -> None:
    """Free a request's decoded Nodes one at a time. Freed at once, 20,000 of them hold the
    interpreter lock for ~100 ms (the event loop waits); one by one, the lock can change hands.
    The caller must hold no other reference to them."""
    related = request.related
    nodes = related.nodes if related is not None else None
    if related is None or not nodes:
        return
    related.nodes = None
    while nodes:
        nodes.popitem()


def decode_nodes(related: Related | None) -> list[NodeWire]:
    return list((related.nodes or {}).values()) if related is not None else []


def decode_bgp_peers(related: Related | None) -> list[dict[str, Any]]:
    """Related BGPPeers (not ours), sorted by name."""
    found = (related.bgp_peers or {}) if related is not None else {}
    return [found[name] for name in sorted(found)]


def decode_topologies(related: Related | None) -> list[TopologyWire]:
    """The related topologies, oldest first (the oldest is the one applied)."""
    found = (related.topologies or {}).values() if related is not None else ()
    return sorted(found, key=lambda t: (t.metadata.creationTimestamp or "", t.metadata.name))


_ENCODER = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    return _ENCODER.encode(value)
