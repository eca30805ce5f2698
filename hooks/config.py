"""CR spec + environment → validated settings; every error names the field it is about (the
spec's shape and defaults are in spec.py, the checks across fields and the environment here)."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from hooks.model import Datastore, Topology
from hooks.spec import (
    ALLOWED,
    DEFAULTS,
    LABEL_KEY,
    EnvSpec,
    Guard,
    LabelMatch,
    LabelSelector,
    Spec,
    Step,
    Toleration,
    reserved_label_key,
)

T = TypeVar("T")

ENVIRONMENT = {
    "datastore": "DATASTORE_TYPE",
    "clusterID": "ROUTE_REFLECTOR_CLUSTER_ID",
    "min": "ROUTE_REFLECTOR_MIN",
    "max": "ROUTE_REFLECTOR_MAX",
    "ratio": "ROUTE_REFLECTOR_RATIO",
    "nodeLabel": "ROUTE_REFLECTOR_NODE_LABEL",
    "zoneLabel": "ROUTE_REFLECTOR_ZONE_LABEL",
    "topology": "ROUTE_REFLECTOR_TOPOLOGY",
    "incompatibleLabels": "ROUTE_REFLECTOR_INCOMPATIBLE_NODE_LABELS",
    "waitSeconds": "ROUTE_REFLECTOR_WAIT_TIMEOUT",
    "rackLabel": "ROUTE_REFLECTOR_RACK_LABEL",
    "preferredLabels": "ROUTE_REFLECTOR_PREFERRED_NODE_LABELS",
    "peersPerNode": "ROUTE_REFLECTOR_PEERS_PER_NODE",
}
LIST_FIELDS = frozenset({"incompatibleLabels", "preferredLabels"})


class SpecError(ValueError):
    """An invalid setting: `field` is its path (`spec.min`, or the environment variable)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ClusterIDTemplate:
    """`224.0.0.%d` style: each `%d` takes 1..254, so one `%d` gives 254 IDs; none is a literal."""

    template: str

    @property
    def slots(self) -> int:
        return self.template.count("%d")

    @property
    def capacity(self) -> int:
        return int(254**self.slots)

    def format(self, index: int) -> str:
        """The ID for 0-based `index`; the last `%d` varies fastest."""
        if not 0 <= index < self.capacity:
            raise IndexError(f"cluster ID template {self.template!r} has {self.capacity} IDs")
        digits = []
        for _ in range(self.slots):
            index, digit = divmod(index, 254)
            digits.append(digit + 1)
        return self.template.replace("%d", "{}").format(*reversed(digits))

    def index_of(self, cluster_id: str) -> int | None:
        if self.slots == 0:
            return 0 if cluster_id == self.template else None
        pattern = re.escape(self.template).replace("%d", r"(\d{1,3})")
        found = re.fullmatch(pattern, cluster_id)
        if not found:
            return None
        index = 0
        for group in found.groups():
            digit = int(group)
            if not 1 <= digit <= 254:
                return None
            index = index * 254 + digit - 1
        return index


def _check_template(text: str) -> ClusterIDTemplate:
    template = ClusterIDTemplate(text)
    if "%" in text.replace("%d", ""):
        raise ValueError(f"{text!r}: only `%d` placeholders are allowed")
    for probe in {0, template.capacity - 1}:
        try:
            ipaddress.IPv4Address(template.format(probe))
        except ValueError:
            raise ValueError(
                f"{text!r} does not give valid IPv4 addresses (e.g. {template.format(probe)!r});"
                " use a literal IPv4 or a template like 224.0.0.%d"
            ) from None
    # Each `%d` is 1..254, so only a literal 0.0.0.0 can give the unset ID.
    if ipaddress.IPv4Address(template.format(0)) == ipaddress.IPv4Address(0):
        raise ValueError(
            f"{text!r} gives the cluster ID 0.0.0.0, which BIRD reads as unset (each RR would use"
            " its router ID, so RRs meant to share an ID would not); choose another"
        )
    return template


@dataclass(frozen=True, slots=True)
class Settings:
    topology: Topology
    datastore: Datastore
    node_label: LabelMatch
    zone_label: str
    rack_label: str
    cluster_id: ClusterIDTemplate
    min: int
    max: int
    ratio: float
    steps: tuple[Step, ...]
    incompatible_labels: tuple[LabelMatch, ...]
    preferred_labels: tuple[LabelMatch, ...]
    node_selector: LabelSelector | None
    tolerations: tuple[Toleration, ...]
    peers_per_node: int
    wait_seconds: int
    paused: bool
    node_to_node_mesh: Literal["Keep", "DisableWhenReady"]
    # The original Go operator's BGPPeers: reported, and deleted by the service once ours carry
    # every session only with RemoveWhenReady.
    legacy_bgp_peers: Literal["Keep", "RemoveWhenReady"]
    guard: Guard

    @property
    def reflector_label(self) -> tuple[str, str]:
        return self.node_label.key, self.node_label.value or ""


def _describe(error: ValidationError, prefix: str) -> SpecError:
    first = error.errors()[0]
    loc = ".".join(str(part) for part in first["loc"] if part != "function-after")
    field = f"{prefix}.{loc}" if loc else prefix
    if first["type"] == "extra_forbidden" and len(first["loc"]) == 1:
        return SpecError(field, _unknown_field(str(first["loc"][0])))
    return SpecError(field, _with_range(str(first["loc"][0]) if first["loc"] else "", first["msg"]))


def _unknown_field(name: str) -> str:
    """A typo such as `zonelabel` must not pass for a setting: say which one was meant."""
    known = list(Spec.model_fields)
    folded = {k.lower(): k for k in known}
    guess = folded.get(name.lower()) or next(
        iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)), None
    )
    hint = f"; did you mean {guess}?" if guess else f" (known: {', '.join(sorted(known))})"
    return f"unknown setting{hint}"


def _with_range(name: str, message: str) -> str:
    allowed = ALLOWED.get(name)
    return f"{message} (allowed: {allowed})" if allowed else message


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, variable in ENVIRONMENT.items():
        raw = environ.get(variable)
        if raw is None or (raw == "" and name not in {"zoneLabel", "nodeLabel"}):
            continue
        if name in LIST_FIELDS:
            values[name] = [part.strip() for part in raw.split(",") if part.strip()]
        else:
            values[name] = raw
    for name, raw in values.items():
        try:
            EnvSpec.model_validate({name: raw})
        except ValidationError as error:
            raise SpecError(
                ENVIRONMENT[name], _with_range(name, error.errors()[0]["msg"])
            ) from None
    return EnvSpec.model_validate(values).model_dump(exclude_none=True)


@dataclass(frozen=True)
class _Merged:
    """The spec over the environment over the defaults, and where each value came from (the
    field a SpecError names)."""

    values: dict[str, Any]
    given: frozenset[str]  # the fields the spec sets
    environ: Mapping[str, str]

    def fail(self, name: str, message: str) -> SpecError:
        where = "spec." + name if name in self.given else ENVIRONMENT.get(name, name)
        return SpecError(where, message)

    def parsed(self, name: str, parse: Callable[[Any], T]) -> T:
        """The field parsed by `parse`; its ValueError becomes a SpecError naming the field."""
        try:
            return parse(self.values[name])
        except ValueError as error:
            raise self.fail(name, str(error)) from None


def _merge(spec: Mapping[str, Any] | None, environ: Mapping[str, str]) -> _Merged:
    try:
        given = Spec.model_validate(dict(spec or {}))
    except ValidationError as error:
        raise _describe(error, "spec") from None
    values = dict(DEFAULTS)
    values.update(_from_environ(environ))
    values.update(
        {k: getattr(given, k) for k in given.model_fields_set if getattr(given, k) is not None}
    )
    return _Merged(values, frozenset(given.model_fields_set), environ)


def _check_bounds(merged: _Merged) -> None:
    low, high = merged.values["min"], merged.values["max"]
    if low > high:
        # Blame the bound that was set (spec before environment), not a default.
        given_spec = [k for k in ("min", "max") if k in merged.given]
        given_env = [k for k in ("min", "max") if ENVIRONMENT[k] in merged.environ]
        culprit = (given_spec or given_env or ["min"])[0]
        raise merged.fail(culprit, f"min ({low}) must be <= max ({high})")


def _node_label(merged: _Merged) -> LabelMatch:
    node_label = merged.parsed("nodeLabel", LabelMatch.parse)
    if reserved_label_key(node_label.key):
        raise merged.fail(
            "nodeLabel",
            f"{node_label.key!r} is in a namespace Kubernetes reserves (kubernetes.io/, k8s.io/):"
            " the hook removes this key from nodes that are not route reflectors",
        )
    return LabelMatch(node_label.key, node_label.value or "")


def _check_label_keys(merged: _Merged) -> None:
    for name in ("zoneLabel", "rackLabel"):
        key = merged.values[name]
        if key and not LABEL_KEY.match(key):
            raise merged.fail(name, f"{key!r} is not a label key")


def _check_rack_label(merged: _Merged) -> None:
    """The hierarchy topology needs rackLabel; blamed on where the topology was chosen."""
    if merged.values["topology"] == "hierarchy" and not merged.values["rackLabel"]:
        field = "spec.rackLabel" if "topology" in merged.given else ENVIRONMENT["rackLabel"]
        raise SpecError(
            field, "the hierarchy topology needs rackLabel (the node label naming a rack)"
        )


def _label_matches(texts: Sequence[str]) -> tuple[LabelMatch, ...]:
    return tuple(LabelMatch.parse(text) for text in texts)


def load_settings(spec: Mapping[str, Any] | None, environ: Mapping[str, str]) -> Settings:
    """Spec wins, then the environment variable, then the default; raises SpecError."""
    merged = _merge(spec, environ)
    _check_bounds(merged)
    node_label = _node_label(merged)
    template = merged.parsed("clusterID", _check_template)
    _check_label_keys(merged)
    incompatible = merged.parsed("incompatibleLabels", _label_matches)
    preferred = merged.parsed("preferredLabels", _label_matches)
    _check_rack_label(merged)
    values = merged.values
    return Settings(
        topology=values["topology"],
        datastore=values["datastore"],
        node_label=node_label,
        zone_label=values["zoneLabel"],
        rack_label=values["rackLabel"],
        cluster_id=template,
        min=values["min"],
        max=values["max"],
        ratio=float(values["ratio"]),
        steps=tuple(sorted(values["steps"], key=lambda step: step.nodes)),
        incompatible_labels=incompatible,
        preferred_labels=preferred,
        node_selector=values["nodeSelector"],
        tolerations=tuple(values["tolerations"]),
        peers_per_node=values["peersPerNode"],
        wait_seconds=values["waitSeconds"],
        paused=values["paused"],
        node_to_node_mesh=values["nodeToNodeMesh"],
        legacy_bgp_peers=values["legacyBGPPeers"],
        guard=values["guard"],
    )
