"""Topology requests computed at once are bounded (MAX_CONCURRENT_SYNCS), a few more wait their
turn (MAX_QUEUED_SYNCS), and beyond that a 503 with Retry-After: memory follows the slots, not
the number of clients sending at once."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from golden import FIXTURES
from served import serving
from starlette.applications import Starlette

from hooks import wire
from hooks.app import create_app
from hooks.intake import Busy, SyncSlots

CONVERGED = (FIXTURES / "topology-sync" / "converged" / "request.json").read_bytes()


def test_slots_run_the_first_ones_queue_the_next_and_refuse_the_rest_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        slots = SyncSlots(running=2, queued=2)
        order: list[str] = []
        await slots.take()
        await slots.take()
        assert slots.running == 2

        async def waiter(name: str) -> None:
            await slots.take()
            order.append(name)

        third = asyncio.ensure_future(waiter("third"))
        fourth = asyncio.ensure_future(waiter("fourth"))
        await asyncio.sleep(0)
        assert slots.queued == 2 and order == []
        with pytest.raises(Busy, match="MAX_CONCURRENT_SYNCS"):
            await slots.take()
        slots.give()  # one of the first two is answered: the slot goes to the third
        await third
        assert order == ["third"] and slots.running == 2 and slots.queued == 1
        slots.give()
        await fourth
        slots.give()
        slots.give()
        assert order == ["third", "fourth"] and slots.running == 0 and slots.queued == 0
        return order

    assert asyncio.run(scenario()) == ["third", "fourth"]


def test_a_waiter_that_gives_up_leaves_the_queue_and_never_holds_a_slot() -> None:
    async def scenario() -> None:
        slots = SyncSlots(running=1, queued=1)
        await slots.take()
        gone = asyncio.ensure_future(slots.take())
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert slots.queued == 0
        await asyncio.wait_for(asyncio.ensure_future(queued_then_given(slots)), 1)
        assert slots.running == 1
        slots.give()
        assert slots.running == 0

    async def queued_then_given(slots: SyncSlots) -> None:
        waiting = asyncio.ensure_future(slots.take())
        await asyncio.sleep(0)
        slots.give()  # the running one ends: the slot passes to the live waiter
        await waiting

    asyncio.run(scenario())


def test_a_waiter_cancelled_after_its_turn_came_passes_the_slot_on() -> None:
    async def scenario() -> None:
        slots = SyncSlots(running=1, queued=2)
        await slots.take()
        first = asyncio.ensure_future(slots.take())
        second = asyncio.ensure_future(slots.take())
        await asyncio.sleep(0)
        slots.give()  # first's turn comes ...
        first.cancel()  # ... and it is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)
        assert slots.running == 1 and slots.queued == 0

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_CONCURRENT_SYNCS", "0"),
        ("MAX_CONCURRENT_SYNCS", "two"),
        ("MAX_QUEUED_SYNCS", "-1"),
        ("KEPT_BODY_BUFFERS", "one"),
    ],
)
def test_bad_slot_settings_are_refused_at_start_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        create_app({name: value})


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\nconnection: close\r\n\r\n"
    ).encode()


def _answer(sock: socket.socket) -> tuple[int, bytes, bytes]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


@pytest.fixture(scope="module")
def one_slot() -> Iterator[int]:
    with serving(
        {
            "MAX_CONCURRENT_SYNCS": "1",
            "MAX_QUEUED_SYNCS": "1",
            "BODY_IDLE_TIMEOUT_SECONDS": "2",
        }
    ) as (_, port):
        yield port


def test_past_the_queue_a_topology_sync_gets_503_with_retry_after_and_the_queued_one_is_served(
    one_slot: int,
) -> None:
    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", one_slot), timeout=10)

    holder, queued = connect(), connect()
    try:
        holder.sendall(_head("/topology/sync", len(CONVERGED)) + CONVERGED[:100])  # then stalls
        time.sleep(0.3)
        queued.sendall(_head("/topology/sync", len(CONVERGED)) + CONVERGED)
        time.sleep(0.3)
        with connect() as refused:
            refused.sendall(_head("/topology/sync", len(CONVERGED)) + CONVERGED)
            status, head, body = _answer(refused)
        assert status == 503
        assert b"retry-after: 5" in head.lower()
        assert "MAX_QUEUED_SYNCS" in json.loads(body)["error"]
        # The hooks that are not slotted, and /healthz, answer meanwhile.
        url = f"http://127.0.0.1:{one_slot}"
        assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        node = (FIXTURES / "node-sync" / "former-reflector" / "request.json").read_bytes()
        assert httpx.post(f"{url}/node/sync", content=node, timeout=2).status_code == 200
        assert _answer(holder)[0] == 408  # its body stalls past the idle timeout
        status, _, body = _answer(queued)  # and its slot goes to the one waiting
        assert status == 200 and "children" in json.loads(body)
    finally:
        holder.close()
        queued.close()
    answer = httpx.post(f"http://127.0.0.1:{one_slot}/topology/sync", content=CONVERGED, timeout=5)
    assert answer.status_code == 200  # every slot given back


async def _call(app: Starlette, body: bytes, sent: Callable[[], Awaitable[None]]) -> int:
    """POST /topology/sync straight to the ASGI app; `sent` is awaited as its answer's last
    bytes go out; the status."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/topology/sync",
        "raw_path": b"/topology/sync",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body", False):
            await sent()

    await app(scope, receive, send)
    return status


def test_the_decoded_nodes_are_freed_after_the_answer_is_sent_with_the_slot_held_till_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    release = wire.release

    def counted(request: wire.TopologySyncRequest | wire.NodeSyncRequest) -> None:
        events.append("released")
        release(request)

    monkeypatch.setattr(wire, "release", counted)
    app = create_app({"MAX_CONCURRENT_SYNCS": "1", "MAX_QUEUED_SYNCS": "0"})

    async def scenario() -> None:
        async def first_sent() -> None:
            events.append("answered")
            # the Nodes are not yet freed: the slot is still held, a second sync is refused
            events.append(f"second {await _call(app, CONVERGED, nothing)}")

        async def nothing() -> None:
            pass

        assert await _call(app, CONVERGED, first_sent) == 200
        assert events == ["answered", "second 503", "released"]
        assert await _call(app, CONVERGED, nothing) == 200  # the slot was given back

    asyncio.run(scenario())
    assert events[-1] == "released"
