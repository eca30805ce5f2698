"""A large topology request's Node map is decoded member by member (so the event loop gets the
interpreter lock between them), a member whose text the last body had already taken decoded,
and the result is always that of one decode."""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
import pytest

from bench.generate import Generator, steady_state
from hooks import wire

BODY = steady_state([Generator(1).node(i) for i in range(40)], "simple").topology_body()


class Counting:
    """The piece decoder, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def decode(self, data: bytes) -> Any:
        self.calls += 1
        return msgspec.json.decode(data, type=dict[str, wire.NodeWire])


@pytest.fixture
def pieces(monkeypatch: pytest.MonkeyPatch) -> Counting:
    """Every body is large enough, and a run of members decoded at once is ~40 KB (a few)."""
    counting = Counting()
    monkeypatch.setattr(wire, "PIECES_ABOVE", 0)
    monkeypatch.setattr(wire, "PIECE_BYTES", 40_000)
    monkeypatch.setattr(wire, "_NODE_PIECE", counting)
    return counting


def whole(body: bytes) -> bytes:
    return wire.encode(wire.decode(body, wire.TopologySyncRequest))


def test_a_body_decoded_in_pieces_is_the_body_decoded_whole(pieces: Counting) -> None:
    decoded = wire.decode_topology_request(BODY)
    assert pieces.calls > 5
    assert wire.encode(decoded) == whole(BODY)
    assert decoded.related is not None and decoded.related.nodes is not None
    assert list(decoded.related.nodes) == list(json.loads(BODY)["related"][wire.NODE_KEY])


def test_small_bodies_are_decoded_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting()
    monkeypatch.setattr(wire, "_NODE_PIECE", counting)
    assert len(BODY) < wire.PIECES_ABOVE
    assert wire.encode(wire.decode_topology_request(BODY)) == whole(BODY)
    assert counting.calls == 0


def _with_node_map_also_in_the_spec(body: bytes) -> bytes:
    request = json.loads(body)
    request["parent"]["spec"][wire.NODE_KEY] = request["related"][wire.NODE_KEY]
    return json.dumps(request, separators=(",", ":")).encode()


def test_a_node_map_outside_related_is_never_taken_for_it(pieces: Counting) -> None:
    # The first "Node.v1" is now the parent's spec: its pieces decode, and are thrown away.
    body = _with_node_map_also_in_the_spec(BODY)
    assert body.find(b'"Node.v1"') < body.find(b'"related"')
    assert wire.encode(wire.decode_topology_request(body)) == whole(body)
    spec_only = json.loads(body)
    del spec_only["related"][wire.NODE_KEY]
    body = json.dumps(spec_only, separators=(",", ":")).encode()
    decoded = wire.decode_topology_request(body)
    assert decoded.related is not None and decoded.related.nodes is None
    assert wire.encode(decoded) == whole(body)


def test_a_name_repeated_across_pieces_keeps_the_last_value_as_one_decode_does(
    pieces: Counting,
) -> None:
    text = BODY.decode()
    first = next(iter(json.loads(BODY)["related"][wire.NODE_KEY]))
    map_end = _node_map_end(text)  # a member named like the first is appended to the map
    extra = json.dumps({first: {"metadata": {"name": "renamed", "labels": {"x": "y"}}}})[1:-1]
    body = (text[:map_end] + "," + extra + text[map_end:]).encode()
    decoded = wire.decode_topology_request(body)
    assert wire.encode(decoded) == whole(body)
    assert decoded.related is not None and decoded.related.nodes is not None
    assert decoded.related.nodes[first].metadata.name == "renamed"


def _node_map_end(text: str) -> int:
    """Index of the `}` closing the Node map (the generator writes it compact)."""
    start = text.index('"' + wire.NODE_KEY + '":{') + len(wire.NODE_KEY) + 4
    depth, index, in_string = 1, start, False
    while depth:
        char = text[index]
        if in_string:
            if char == "\\":
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        index += 1
    return index - 1


def test_a_bad_node_in_a_piece_gets_the_same_400_as_one_decode(pieces: Counting) -> None:
    request = json.loads(BODY)
    name = list(request["related"][wire.NODE_KEY])[20]  # in a piece, not the rest
    request["related"][wire.NODE_KEY][name]["metadata"]["labels"] = {"a": 3}
    body = json.dumps(request, separators=(",", ":")).encode()
    with pytest.raises(wire.BadRequest) as one:
        wire.decode(body, wire.TopologySyncRequest)
    with pytest.raises(wire.BadRequest) as cut:
        wire.decode_topology_request(body)
    assert (cut.value.message, cut.value.field) == (one.value.message, one.value.field)
    assert cut.value.field == "related.Node.v1[...].metadata.labels[...]"


def test_a_node_holding_the_member_marker_deep_inside_is_still_decoded_right(
    pieces: Counting,
) -> None:
    # An annotation-like object whose text looks like a Node member's start: a cut there makes
    # a piece that is not JSON, and the body is decoded whole.
    request = json.loads(BODY)
    names = list(request["related"][wire.NODE_KEY])
    for name in names[::3]:
        request["related"][wire.NODE_KEY][name]["spec"]["extra"] = {
            "decoy": {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "decoy"}}
        }
    body = json.dumps(request, separators=(",", ":")).encode()
    assert body.count(b'"decoy":{"apiVersion":"v1","kind":"Node",') > 5
    assert wire.encode(wire.decode_topology_request(body)) == whole(body)


def test_text_that_is_not_json_after_the_pieces_is_the_same_400(pieces: Counting) -> None:
    body = BODY[:-2] + b"!}"
    with pytest.raises(wire.BadRequest) as one:
        wire.decode(body, wire.TopologySyncRequest)
    with pytest.raises(wire.BadRequest) as cut:
        wire.decode_topology_request(body)
    assert cut.value.message == one.value.message


def test_release_frees_the_decoded_nodes_and_leaves_the_rest() -> None:
    request = wire.decode_topology_request(BODY)
    assert request.related is not None and request.related.nodes
    nodes = request.related.nodes
    wire.release(request)
    assert request.related.nodes is None and nodes == {}
    assert request.related.topologies is not None and request.parent.metadata.name
    wire.release(request)  # twice, or with nothing related: nothing to do
    bare = wire.decode(
        b'{"parent":{"metadata":{"name":"a"}},"children":null,"related":null}',
        wire.TopologySyncRequest,
    )
    wire.release(bare)
    assert bare.related is None


def _nodes(body: bytes) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(body)["related"][wire.NODE_KEY]
    return found


def _with_nodes(body: bytes, nodes: dict[str, Any]) -> bytes:
    request = json.loads(body)
    request["related"][wire.NODE_KEY] = nodes
    return json.dumps(request, separators=(",", ":")).encode()


def test_an_unchanged_body_decodes_no_member_again(pieces: Counting) -> None:
    texts = wire.NodeTexts()
    first = wire.decode_topology_request(BODY, texts)
    decoded_first = pieces.calls
    assert decoded_first == len(_nodes(BODY)) - 1  # the last member goes with the rest
    again = wire.decode_topology_request(bytearray(BODY), texts)
    assert pieces.calls == decoded_first and texts.reused == decoded_first
    assert wire.encode(again) == wire.encode(first) == whole(BODY)
    assert again.related is not None and again.related.nodes
    assert first.related is not None and first.related.nodes
    name = next(iter(again.related.nodes))
    assert again.related.nodes[name] is first.related.nodes[name]  # taken, not decoded


def test_a_changed_member_is_decoded_again_and_the_others_taken(pieces: Counting) -> None:
    texts = wire.NodeTexts()
    wire.decode_topology_request(BODY, texts)
    nodes = _nodes(BODY)
    changed = list(nodes)[7]
    nodes[changed]["metadata"]["labels"]["topology.kubernetes.io/zone"] = "zone-moved"
    body = _with_nodes(BODY, nodes)
    pieces.calls = 0
    decoded = wire.decode_topology_request(body, texts)
    assert pieces.calls == 1 and texts.reused == len(nodes) - 2
    assert wire.encode(decoded) == whole(body)
    assert decoded.related is not None and decoded.related.nodes is not None
    labels = decoded.related.nodes[changed].metadata.labels or {}
    assert labels["topology.kubernetes.io/zone"] == "zone-moved"


def test_members_in_another_order_or_added_or_gone_give_the_one_decode(pieces: Counting) -> None:
    texts = wire.NodeTexts()
    wire.decode_topology_request(BODY, texts)
    nodes = _nodes(BODY)
    names = list(nodes)
    shuffled = {name: nodes[name] for name in [*reversed(names[5:25]), *names[27:], *names[:5]]}
    shuffled["node-new"] = {**nodes[names[0]], "metadata": {"name": "node-new", "labels": {}}}
    body = _with_nodes(BODY, shuffled)
    pieces.calls = 0
    decoded = wire.decode_topology_request(body, texts)
    assert wire.encode(decoded) == whole(body)
    assert pieces.calls <= 2  # the new member (the last one goes with the rest)
    assert texts.reused >= len(shuffled) - 3


def test_a_bad_body_leaves_the_kept_texts_as_they_were(pieces: Counting) -> None:
    texts = wire.NodeTexts()
    wire.decode_topology_request(BODY, texts)
    kept = texts.members
    nodes = _nodes(BODY)
    nodes[list(nodes)[3]]["metadata"]["labels"] = {"a": 3}
    with pytest.raises(wire.BadRequest):
        wire.decode_topology_request(_with_nodes(BODY, nodes), texts)
    with pytest.raises(wire.BadRequest):
        wire.decode_topology_request(BODY[:-2] + b"!}", texts)
    assert texts.members is kept


def test_a_kept_text_is_taken_only_where_it_is_a_whole_member(pieces: Counting) -> None:
    # Each Node's kept text also sits inside another member (as a string-free copy under a
    # field of the spec): there it is part of a member, never taken for one.
    texts = wire.NodeTexts()
    wire.decode_topology_request(BODY, texts)
    nodes = _nodes(BODY)
    names = list(nodes)
    for name, other in itertools.pairwise(names):
        nodes[name]["spec"]["extra"] = {other: nodes[other]}
    body = _with_nodes(BODY, nodes)
    assert wire.encode(wire.decode_topology_request(body, texts)) == whole(body)
    decoded = wire.decode_topology_request(body, texts)
    assert wire.encode(decoded) == whole(body)


def test_without_kept_texts_each_body_is_decoded_alone(pieces: Counting) -> None:
    wire.decode_topology_request(BODY)
    calls = pieces.calls
    assert wire.encode(wire.decode_topology_request(BODY)) == whole(BODY)
    assert pieces.calls == 2 * calls


def test_a_body_decoded_while_another_records_reads_the_kept_texts_and_adds_none(
    pieces: Counting,
) -> None:
    texts = wire.NodeTexts()
    wire.decode_topology_request(BODY, texts)
    kept = texts.members
    nodes = _nodes(BODY)
    nodes[list(nodes)[3]]["metadata"]["labels"]["example.com/new"] = "yes"
    body = _with_nodes(BODY, nodes)
    with texts.recording:  # another request is recording its members
        decoded = wire.decode_topology_request(body, texts)
    assert wire.encode(decoded) == whole(body) and texts.reused == len(nodes) - 2
    assert texts.members is kept  # not replaced: the changed member is decoded again next time
    pieces.calls = 0
    wire.decode_topology_request(body, texts)
    assert pieces.calls == 1 and texts.members is not kept


def test_a_comma_after_the_last_node_is_the_same_400_as_one_decode(pieces: Counting) -> None:
    texts = wire.NodeTexts()
    wire.decode_topology_request(BODY, texts)  # every member but the last is kept
    text = BODY.decode()
    end = _node_map_end(text)
    last = text.rindex(',"', 0, text.rindex('":{"apiVersion":"v1","kind":"Node",', 0, end))
    body = (text[:last] + "," + text[end:]).encode()  # the last member gone, its comma left
    with pytest.raises(wire.BadRequest) as one:
        wire.decode(body, wire.TopologySyncRequest)
    for kept in (texts, None):
        with pytest.raises(wire.BadRequest) as cut:
            wire.decode_topology_request(body, kept)
        assert cut.value.message == one.value.message


@pytest.mark.parametrize("piece", [1, 15_000, 33_333, 120_000, 10**9])
def test_any_piece_size_gives_the_one_decode(monkeypatch: pytest.MonkeyPatch, piece: int) -> None:
    # 1: every Node decoded alone; 10**9: the whole map but its last member in one run
    monkeypatch.setattr(wire, "PIECES_ABOVE", 0)
    monkeypatch.setattr(wire, "PIECE_BYTES", piece)
    assert wire.encode(wire.decode_topology_request(BODY)) == whole(BODY)
    texts = wire.NodeTexts()
    for _ in range(2):
        assert wire.encode(wire.decode_topology_request(BODY, texts)) == whole(BODY)


def test_a_kept_node_makes_its_node_info_once_and_no_json_reaches_it(pieces: Counting) -> None:
    texts = wire.NodeTexts()
    first = wire.decode_topology_request(BODY, texts)
    again = wire.decode_topology_request(BODY, texts)
    assert first.related is not None and first.related.nodes
    assert again.related is not None and again.related.nodes
    name = next(iter(first.related.nodes))
    info = first.related.nodes[name].to_info()
    assert again.related.nodes[name].to_info() is info and info.name == name
    sent = b'{"metadata":{"name":"a"},"info":{"name":"b"},"__dict__":{"info":{"name":"c"}}}'
    node = msgspec.json.decode(sent, type=wire.NodeWire)
    assert node.to_info().name == "a"
