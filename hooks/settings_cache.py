"""Validated settings per topology spec and environment, cached: the node hook runs once per Node
against the same spec."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import msgspec

from hooks.config import ENVIRONMENT, Settings, SpecError, load_settings

Environ = Mapping[str, str]


def _environment_key(environ: Environ) -> tuple[tuple[str, str], ...]:
    return tuple((name, environ[name]) for name in sorted(ENVIRONMENT.values()) if name in environ)


@lru_cache(maxsize=64)
def _cached_settings(spec: bytes, environment: tuple[tuple[str, str], ...]) -> Settings | SpecError:
    try:
        return load_settings(msgspec.json.decode(spec), dict(environment))
    except SpecError as error:
        return error


def settings_for(spec: Mapping[str, Any] | None, environ: Environ) -> Settings:
    """Validated settings, cached by spec and environment (the node hook runs once per Node)."""
    found = _cached_settings(msgspec.json.encode(spec or {}), _environment_key(environ))
    if isinstance(found, SpecError):
        raise found
    return found


def datastore_of(spec: Mapping[str, Any] | None, environ: Environ) -> str:
    """The topology's datastore; with an invalid spec, the environment's (or the default)."""
    try:
        return settings_for(spec, environ).datastore
    except SpecError:
        return environ.get("DATASTORE_TYPE", "")
