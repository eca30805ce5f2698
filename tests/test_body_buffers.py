"""A topology body is read into the buffer the last one was read into, and its Nodes that are
byte for byte the last body's are taken decoded: a resync of an unchanged cluster neither faults
in fresh memory for its body nor decodes its Nodes again, and it answers the same bytes."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
from served import serving
from starlette.requests import Request

from bench.generate import Generator, steady_state
from hooks import wire
from hooks.intake import BodyBuffers, read_body

# Over wire.PIECES_ABOVE: decoded member by member, as a real cluster's body is
BODY = steady_state([Generator(1).node(i) for i in range(320)], "simple").topology_body()
NODES = len(json.loads(BODY)["related"][wire.NODE_KEY])


def test_the_largest_buffer_is_kept_and_never_one_still_read() -> None:
    buffers = BodyBuffers(kept=1)
    assert buffers.take() is None
    small, large = bytearray(10), bytearray(100)
    assert buffers.give(small) and buffers.give(large)
    assert buffers.take() is large and buffers.take() is None
    assert buffers.give(large) and buffers.give(small)  # the smaller one is not kept
    assert buffers.take() is large and buffers.take() is None
    read = bytearray(50)
    view = memoryview(read)  # as a decoded msgspec.Raw of the body would
    assert not buffers.give(read) and buffers.take() is None
    view.release()
    assert buffers.give(read) and buffers.take() is read and buffers.reused == 3
    none = BodyBuffers(kept=0)
    none.give(large)
    assert none.take() is None


def _request(chunks: list[bytes], length: int) -> Request:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/topology/sync",
        "headers": [(b"content-length", str(length).encode())],
    }
    return Request(scope, receive)


def test_a_body_is_read_into_the_kept_buffer_whatever_it_held() -> None:
    async def read(chunks: list[bytes], kept: bytearray) -> bytearray:
        return await read_body(_request(chunks, sum(map(len, chunks))), 10**6, kept=kept)

    longer = bytearray(b"x" * 100)
    body = asyncio.run(read([b"0123", b"456789"], longer))
    assert body is longer and body == b"0123456789"
    shorter = bytearray(b"y" * 3)
    body = asyncio.run(read([b"abc", b"defgh", b"ij"], shorter))
    assert body is shorter and body == b"abcdefghij"


def _lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for text in log.read_text(errors="replace").splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("hook") == "topology_sync":
            lines.append(line)
    return lines


def test_a_resync_over_http_reuses_the_buffer_and_the_nodes_and_answers_the_same_bytes() -> None:
    request = json.loads(BODY)
    name = list(request["related"][wire.NODE_KEY])[10]
    request["related"][wire.NODE_KEY][name]["metadata"]["labels"]["example.com/new"] = "yes"
    changed = json.dumps(request, separators=(",", ":")).encode()
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        with log.open("wb") as stderr, serving({"LOG_LEVEL": "info"}, stderr) as (_, port):
            url = f"http://127.0.0.1:{port}/topology/sync"
            answers = [httpx.post(url, content=body, timeout=60) for body in (BODY, BODY, changed)]
            fresh = httpx.post(url, content=BODY, timeout=60)
        lines = _lines(log)
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[0].content == answers[1].content == fresh.content
    assert [(line["body_buffer"], line["nodes_kept"]) for line in lines] == [
        ("new", 0),  # the first body: a new buffer, every Node decoded
        ("kept", NODES - 1),  # the same again: all but the last, decoded with the rest
        ("kept", NODES - 2),  # one Node changed: decoded again
        ("kept", NODES - 2),  # back as before: that one again
    ]
