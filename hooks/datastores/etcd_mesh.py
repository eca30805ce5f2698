"""Calico's node-to-node mesh switch in etcd, as compare-and-swap changes: no I/O.

In etcdv3 mode Calico reads BGPConfiguration `default` from etcd (the `projectcalico.org/v3`
resource JSON under `CONFIG_KEY`). Only `spec.nodeToNodeMeshEnabled` is ever edited, and as text:
every other byte of the document stays as its writer left it (Go's escaping, number forms, key
order), where a decode and re-encode would not keep them. What the switch changed is recorded
under `MESH_RECORD_KEY` in the same transaction, so the finalize hook can turn the mesh back on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from hooks.datastores.etcd_documents import (
    DELETE,
    Change,
    Delete,
    DocumentError,
    Entry,
    Fresh,
    dump,
    load_object,
)

__all__ = [
    "CONFIGS_PREFIX",
    "CONFIG_KEY",
    "CONFIG_NAME",
    "MESH_FIELD",
    "MESH_RECORDS_PREFIX",
    "MESH_RECORD_KEY",
    "MeshRecord",
    "mesh_off",
    "mesh_on",
    "mesh_state",
    "recording",
]

CONFIGS_PREFIX: Final = "/calico/resources/v3/projectcalico.org/bgpconfigurations/"
CONFIG_NAME: Final = "default"
CONFIG_KEY: Final = CONFIGS_PREFIX + CONFIG_NAME
MESH_FIELD: Final = "nodeToNodeMeshEnabled"
MESH_RECORDS_PREFIX: Final = "/route-reflector.dev/v1/mesh/"
MESH_RECORD_KEY: Final = MESH_RECORDS_PREFIX + CONFIG_NAME
# What a document this service created holds, besides spec: nothing a person added.
_CREATED_METADATA: Final = frozenset({"name", "uid", "creationTimestamp", "resourceVersion"})

_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class MeshRecord:
    """The mesh was switched off by `owner` (its uid): `created` when no BGPConfiguration existed,
    else `previous`, the field's value before (None: absent, which Calico reads as on)."""

    owner: str
    uid: str
    created: bool
    previous: bool | None

    def encode(self) -> bytes:
        return dump(
            {
                "owner": self.owner,
                "ownerUID": self.uid,
                "created": self.created,
                "previous": self.previous,
            }
        )

    @classmethod
    def decode(cls, entry: Entry) -> MeshRecord:
        document = load_object(entry)
        owner, uid = document.get("owner"), document.get("ownerUID", "")
        created, previous = document.get("created"), document.get("previous")
        if not (
            isinstance(owner, str)
            and isinstance(uid, str)
            and isinstance(created, bool)
            and isinstance(previous, (bool, type(None)))
        ):
            raise DocumentError(f"{entry.key}: not a mesh record of this service; refusing it")
        return cls(owner, uid, created, previous)


def mesh_state(entry: Entry | None) -> bool | None:
    """`spec.nodeToNodeMeshEnabled` of the document; None when it (or the field) is absent, which
    Calico treats as enabled."""
    if entry is None:
        return None
    value = _spec_of(entry).get(MESH_FIELD)
    return value if isinstance(value, bool) else None


def mesh_off(fresh: Fresh) -> Change:
    """Turn the mesh off: create `default` with only the field, or set the field in place."""

    def change(current: Entry | None) -> bytes | None:
        if current is None:
            return dump(
                {
                    "kind": "BGPConfiguration",
                    "apiVersion": "projectcalico.org/v3",
                    "metadata": {
                        "name": CONFIG_NAME,
                        "uid": fresh.new_uid(),
                        "creationTimestamp": fresh.created,
                    },
                    "spec": {MESH_FIELD: False},
                }
            )
        if mesh_state(current) is False:
            return None
        return _with_field(current, False)

    return change


def recording(owner: str, uid: str) -> Callable[[Entry | None], tuple[tuple[str, bytes], ...]]:
    """The record written with a `mesh_off` change, from the document it changes."""

    def record(current: Entry | None) -> tuple[tuple[str, bytes], ...]:
        made = MeshRecord(owner, uid, created=current is None, previous=mesh_state(current))
        return ((MESH_RECORD_KEY, made.encode()),)

    return record


def mesh_on(record: MeshRecord) -> Change:
    """Undo what `record` says the switch did, only while the mesh is still off: a document this
    service created and nobody changed is deleted; otherwise the field goes back to what it was
    (removed when it was absent). A mesh someone turned on already is left as it is."""

    def change(current: Entry | None) -> bytes | Delete | None:
        if current is None or mesh_state(current) is not False:
            return None
        if record.created and _as_created(current):
            return DELETE
        return _with_field(current, True if record.previous else None)

    return change


def _spec_of(entry: Entry) -> dict[str, Any]:
    spec = load_object(entry).get("spec")
    if not isinstance(spec, (dict, type(None))):
        raise DocumentError(f"{entry.key}: spec is not an object; refusing to edit it")
    return spec or {}


def _as_created(entry: Entry) -> bool:
    document = load_object(entry)
    metadata = document.get("metadata")
    return (
        set(document) <= {"kind", "apiVersion", "metadata", "spec"}
        and isinstance(metadata, dict)
        and set(metadata) <= _CREATED_METADATA
        and document.get("spec") == {MESH_FIELD: False}
    )


@dataclass(frozen=True)
class _Member:
    """One member of a JSON object in the text: where its key starts, where its value is."""

    key: object
    start: int
    value_start: int
    value_end: int


def _skip(text: str, at: int) -> int:
    """The index of the first character at or after `at` that is not JSON whitespace."""
    while at < len(text) and text[at] in " \t\n\r":
        at += 1
    return at


def _members(text: str, start: int) -> tuple[list[_Member], int]:
    """The members of the object whose `{` is at `start`, and the index of its `}`."""
    members: list[_Member] = []
    at = _skip(text, start + 1)
    if text[at] == "}":
        return members, at
    while True:
        if text[at] != '"':
            raise ValueError(f"expected a key at {at}")
        key, after = _DECODER.raw_decode(text, at)
        colon = _skip(text, after)
        if text[colon] != ":":
            raise ValueError(f"expected ':' at {colon}")
        value = _skip(text, colon + 1)
        _, end = _DECODER.raw_decode(text, value)
        members.append(_Member(key, at, value, end))
        at = _skip(text, end)
        if text[at] == "}":
            return members, at
        if text[at] != ",":
            raise ValueError(f"expected ',' or '}}' at {at}")
        at = _skip(text, at + 1)


def _with_field(entry: Entry, value: bool | None) -> bytes:
    """The document with `spec.nodeToNodeMeshEnabled` set to `value` (None: removed), every
    other byte as it was. The document must parse (`mesh_state` was called on it)."""
    _spec_of(entry)  # refuses a spec that is not an object
    try:
        text = entry.value.decode()
        edited = _edit(text, value)
    except (UnicodeDecodeError, ValueError, IndexError) as error:
        raise DocumentError(f"{entry.key}: cannot edit it in place ({error})") from None
    return edited.encode()


def _edit(text: str, value: bool | None) -> str:
    field = json.dumps(MESH_FIELD) + ":" + json.dumps(value)
    top, top_end = _members(text, _skip(text, 0))
    specs = [m for m in top if m.key == "spec"]
    if len(specs) > 1:
        raise ValueError("spec appears twice")
    if not specs or text[specs[0].value_start : specs[0].value_end] == "null":
        if value is None:
            return text
        if specs:
            spec = specs[0]
            return text[: spec.value_start] + "{" + field + "}" + text[spec.value_end :]
        return text[:top_end] + ("," if top else "") + '"spec":{' + field + "}" + text[top_end:]
    spec = specs[0]
    inner, _ = _members(text, spec.value_start)
    found = [i for i, m in enumerate(inner) if m.key == MESH_FIELD]
    if len(found) > 1:
        raise ValueError(f"{MESH_FIELD} appears twice")
    if found:
        index = found[0]
        member = inner[index]
        if value is not None:
            return text[: member.value_start] + json.dumps(value) + text[member.value_end :]
        if index + 1 < len(inner):  # the member up to the next one's key, its comma included
            return text[: member.start] + text[inner[index + 1].start :]
        if index > 0:  # the last one: from the end of the one before
            return text[: inner[index - 1].value_end] + text[member.value_end :]
        return text[: member.start] + text[member.value_end :]
    if value is None:
        return text
    opening = spec.value_start + 1
    return text[:opening] + field + ("," if inner else "") + text[opening:]
