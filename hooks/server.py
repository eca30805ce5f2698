"""uvicorn settings that keep stalled or oversized clients from holding the server.

httptools parses requests (h11 costs ~40% more on a 70 MB body: 0.56 s against 0.39 s for a
5,000-node sync over curl), but httptools caps no request head, so the protocol below does: a
request head still incomplete after `MAX_HEADER_BYTES` is answered 400 and the connection closed.
A connection must also finish each request head within `HEADER_TIMEOUT_SECONDS` of opening (or
of its previous response): otherwise it is answered 408 and closed. Body timeouts and limits are
in hooks.intake.read_body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024


def seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds from the environment, or a ValueError naming the variable."""
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw[:40]!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be above 0, got {raw[:40]!r}")
    return value


def count(env: Mapping[str, str], name: str, default: int, least: int = 1, unit: str = "") -> int:
    """A whole number of at least `least` from the environment, or a ValueError naming the
    variable."""
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < least:
        raise ValueError(
            f"{name} must be a whole number{unit} of at least {least}, got {raw[:40]!r}"
        )
    return int(raw)


def byte_count(env: Mapping[str, str], name: str, default: int) -> int:
    """A positive byte count from the environment, or a ValueError naming the variable."""
    return count(env, name, default, unit=" of bytes")


_TIMEOUT_BODY = json.dumps({"error": "request head not received in time", "field": None}).encode()
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


def protocol(header_timeout: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline and a size cap for every request head."""

    class HeadDeadline(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _awaiting_head = True
        _head_bytes = 0
        _message_done = False

        def _arm(self) -> None:
            self._disarm()
            self._awaiting_head, self._head_bytes = True, 0
            self._head_timer = self.loop.call_later(header_timeout, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.write(TIMEOUT_RESPONSE)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            if self._awaiting_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self.cycle is not before:  # a request head was complete
                self._disarm()
                self._awaiting_head = False
            elif (
                self._awaiting_head
                and self._head_bytes > max_header_bytes
                and not self.transport.is_closing()
            ):
                self._disarm()
                self.send_400_response("request head too large")

        def on_message_begin(self) -> None:
            self._message_done = False
            super().on_message_begin()

        def on_message_complete(self) -> None:
            self._message_done = True
            super().on_message_complete()
            if self.cycle.response_complete and not self.transport.is_closing():
                self._arm()  # answered before its body ended: the next head's deadline starts now

        def on_response_complete(self) -> None:
            before = self.cycle
            super().on_response_complete()
            # The next request on this connection gets its own deadline, once this one's body
            # has been read to its end (an early answer, e.g. 503, leaves the rest arriving).
            if self.cycle is before and self._message_done and not self.transport.is_closing():
                self._arm()

    return HeadDeadline


def uvicorn_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config from the environment."""
    return {
        "http": protocol(
            seconds(env, "HEADER_TIMEOUT_SECONDS", DEFAULT_HEADER_TIMEOUT),
            byte_count(env, "MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES),
        ),
    }
