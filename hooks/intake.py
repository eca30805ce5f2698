"""What one request may hold while it is read and computed: its body's size and time, the bodies
in memory at once across requests, the topology requests computed and queued at once, and the
buffers topology bodies are read into, kept from one request to the next."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request

from hooks.server import byte_count, count, seconds

DEFAULT_MAX_BODY = 512 * 1024 * 1024
DEFAULT_INFLIGHT_BODY = 1024 * 1024 * 1024
DEFAULT_BODY_IDLE_TIMEOUT = 30.0
DEFAULT_BODY_TIMEOUT = 300.0
DEFAULT_SYNC_SLOTS = 2
DEFAULT_SYNC_QUEUE = 16
DEFAULT_KEPT_BUFFERS = 1
PREALLOCATE = 1024 * 1024


class TooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


class Busy(Exception):
    """Other requests hold the byte budget for bodies in memory: 503, Metacontroller retries."""


class ByteBudget:
    """Bytes of request bodies held in memory at once, across requests.

    Taken as bytes arrive (a client that declares 500 MB and stalls holds what it sent, not
    what it declared) and given back when its request is answered. Only the event loop thread
    touches it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.total:
            raise Busy(
                f"request bodies in memory would exceed MAX_INFLIGHT_BODY_BYTES ({self.total})"
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


class BodyBuffers:
    """Buffers that topology bodies are read into, kept from one request to the next.

    A 20,000-node body is ~280 MB. Read into fresh memory, every page of it is faulted in anew on
    each sync (~0.25 s of a resync on the benchmark machine); read into a kept buffer, its pages
    are already there. At most `kept` buffers stay (KEPT_BODY_BUFFERS, 1), the largest ones; a
    buffer something still points into (a decoded part of the request outliving it) is not
    kept, so a kept buffer is never overwritten under a reader. Only the event loop thread
    touches it."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._free: list[bytearray] = []
        self.reused = 0  # requests read into a kept buffer

    def take(self) -> bytearray | None:
        """The largest kept buffer (bodies of one cluster are all about the same size), or None
        (read_body then starts a new one)."""
        if not self._free:
            return None
        self.reused += 1
        return self._free.pop()

    def give(self, buffer: bytearray) -> bool:
        """Keep `buffer` for a later request, unless as many larger ones are kept (the smallest
        goes for a larger one); False, and nothing kept, while something still reads it."""
        if any(kept is buffer for kept in self._free):
            return True
        try:  # a buffer with exports (a memoryview, msgspec.Raw) cannot change its size
            buffer.append(0)
            buffer.pop()
        except BufferError:
            return False
        self._free.append(buffer)
        self._free.sort(key=len)  # the largest last, taken first
        del self._free[: max(0, len(self._free) - self.kept)]
        return True


class SyncSlots:
    """Topology requests read and computed at once (`running`), and how many may wait their turn
    (`queued`, first come first served); one more is Busy (503). A slot is taken before the body
    is read: a waiting request's body stays in its socket (uvicorn stops reading past 64 KiB), so
    memory grows with `running` bodies and their decoding, not with how many clients send at once.

    Not bound to an event loop until used (tests run one app under several loops); only the
    event loop thread touches it."""

    def __init__(self, running: int, queued: int) -> None:
        self.running_max = running
        self.queued_max = queued
        self.running = 0
        self._turns: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return sum(1 for turn in self._turns if not turn.done())

    async def take(self) -> None:
        if self.running < self.running_max and not self.queued:
            self.running += 1
            return
        if self.queued >= self.queued_max:
            raise Busy(
                f"{self.running_max} topology requests are being computed and {self.queued_max}"
                " wait (MAX_CONCURRENT_SYNCS, MAX_QUEUED_SYNCS)"
            )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.give()  # handed a slot as we were cancelled: pass it on
            elif turn in self._turns:
                self._turns.remove(turn)
            raise

    def give(self) -> None:
        """A running request is done: its slot goes to the first still waiting, if any."""
        while self._turns:
            turn = self._turns.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1


async def read_body(
    request: Request,
    limit: int,
    budget: ByteBudget | None = None,
    idle_timeout: float | None = None,
    total_timeout: float | None = None,
    kept: bytearray | None = None,
) -> bytearray:
    """The body, refused (413) before it is read whole when it is over `limit` bytes.

    Memory grows with the bytes that arrived, never with the declared Content-Length: at most
    PREALLOCATE bytes are reserved up front. Each chunk must arrive within `idle_timeout` and the
    whole body within `total_timeout` (BodyTimeout, 408): a Content-Length longer than the body
    ends there. Every byte held is taken from `budget` (Busy when it is spent) and counted in
    `request.state.body_bytes`: the caller gives that back once the request is answered. With
    `kept` (see BodyBuffers), the body is read into that buffer, whatever it held before."""
    declared = request.headers.get("content-length")
    size = int(declared) if declared is not None and declared.isdigit() else None
    if size is not None and size > limit:
        raise TooLarge(f"request body of {size} bytes is over MAX_BODY_BYTES ({limit})")
    if kept is not None:
        buffer = kept
    else:
        buffer = bytearray(min(size, PREALLOCATE)) if size is not None else bytearray()
    request.state.body_bytes = 0
    loop = asyncio.get_running_loop()
    deadline = None if total_timeout is None else loop.time() + total_timeout
    filled = 0
    stream = request.stream().__aiter__()
    while True:
        wait = idle_timeout
        if deadline is not None:
            left = deadline - loop.time()
            wait = left if wait is None else min(wait, left)
        try:
            async with asyncio.timeout(wait):
                chunk = await anext(stream)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise BodyTimeout(f"request body not received in time ({filled} bytes read)") from None
        end = filled + len(chunk)
        if end > limit:
            raise TooLarge(f"request body is over MAX_BODY_BYTES ({limit})")
        if budget is not None and end > request.state.body_bytes:
            budget.take(end - request.state.body_bytes)
            request.state.body_bytes = end
        if end <= len(buffer):
            buffer[filled:end] = chunk
        else:
            del buffer[filled:]
            buffer += chunk
        filled = end
    if filled < len(buffer):
        del buffer[filled:]
    return buffer


@dataclass(frozen=True)
class Limits:
    """What one request may hold: its body's size and time, the bodies in memory at once, the
    topology requests computed and queued at once."""

    body: int
    budget: ByteBudget
    idle_timeout: float
    body_timeout: float
    slots: SyncSlots
    buffers: BodyBuffers

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Limits:
        return cls(
            body=int(env.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY)),
            budget=ByteBudget(byte_count(env, "MAX_INFLIGHT_BODY_BYTES", DEFAULT_INFLIGHT_BODY)),
            idle_timeout=seconds(env, "BODY_IDLE_TIMEOUT_SECONDS", DEFAULT_BODY_IDLE_TIMEOUT),
            body_timeout=seconds(env, "BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT),
            slots=SyncSlots(
                count(env, "MAX_CONCURRENT_SYNCS", DEFAULT_SYNC_SLOTS),
                count(env, "MAX_QUEUED_SYNCS", DEFAULT_SYNC_QUEUE, least=0),
            ),
            buffers=BodyBuffers(count(env, "KEPT_BODY_BUFFERS", DEFAULT_KEPT_BUFFERS, least=0)),
        )
