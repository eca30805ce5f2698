"""The request boundary: decoding pauses the garbage collector and always restores it."""

from __future__ import annotations

import gc

import msgspec
import pytest

from hooks import wire


def test_decoding_pauses_the_collector_and_restores_it() -> None:
    seen: list[bool] = []
    original = msgspec.json.decode

    def spy(body: bytes, type: object) -> object:
        seen.append(gc.isenabled())
        return original(body, type=type)

    assert gc.isenabled()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(msgspec.json, "decode", spy)
        wire.decode(b'{"parent": {}}', wire.CustomizeRequest)
    assert seen == [False]
    assert gc.isenabled()


def test_a_failed_decode_restores_the_collector() -> None:
    with pytest.raises(wire.BadRequest):
        wire.decode(b"{", wire.CustomizeRequest)
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_host_stays_off() -> None:
    gc.disable()
    try:
        wire.decode(b'{"parent": {}}', wire.CustomizeRequest)
        assert not gc.isenabled()
    finally:
        gc.enable()
