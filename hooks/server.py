"""uvicorn settings that keep stalled or oversized clients from holding the server.

h11 (not httptools) parses requests: it caps an incomplete request head at
`MAX_HEADER_BYTES` (400 above that), where httptools accepts any size. On top of it, a
connection must finish each request head within `HEADER_TIMEOUT_SECONDS` of opening (or of
its previous response): otherwise it is answered 408 and closed. Body timeouts and limits are
in hooks.app.read_body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

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


def byte_count(env: Mapping[str, str], name: str, default: int) -> int:
    """A positive byte count from the environment, or a ValueError naming the variable."""
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) == 0:
        raise ValueError(f"{name} must be a positive number of bytes, got {raw[:40]!r}")
    return int(raw)


_TIMEOUT_BODY = json.dumps({"error": "request head not received in time", "field": None}).encode()
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


def protocol(header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline for every request head."""

    class HeadDeadline(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
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
            super().data_received(data)
            if self.cycle is not before:  # a request head was complete
                self._disarm()

        def on_response_complete(self) -> None:
            before = self.cycle
            super().on_response_complete()
            if self.cycle is before and not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

    return HeadDeadline


def uvicorn_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config from the environment."""
    return {
        "http": protocol(seconds(env, "HEADER_TIMEOUT_SECONDS", DEFAULT_HEADER_TIMEOUT)),
        "h11_max_incomplete_event_size": byte_count(
            env, "MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES
        ),
    }
