"""Kubernetes timestamps (`2026-11-28T04:00:00Z`): the one format we write and read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

__all__ = ["STAMP_FORMAT", "parse_stamp", "stamp"]

STAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


def stamp(moment: datetime) -> str:
    """`moment` in UTC, to the second, as Kubernetes writes times."""
    return moment.astimezone(UTC).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> datetime | None:
    """The UTC time `text` names, or None when it is not in the format `stamp` writes."""
    try:
        return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
