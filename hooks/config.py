"""CR spec + environment → validated settings; every error names the field it is about.

Longer than ~400 lines on purpose: one concern, the spec, whose every field carries its check
and its message (label keys, tolerations, selectors, guards, the cluster-ID template, the
environment's names for the same fields); splitting by field would part a rule from its message.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hooks.model import Datastore, Topology

LABEL_KEY = re.compile(
    r"^(?:(?=.{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

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
class LabelMatch:
    """`k=v` (exact), `k=` (present and empty), or `k` (present)."""

    key: str
    value: str | None

    @classmethod
    def parse(cls, text: str) -> LabelMatch:
        key, sep, value = text.partition("=")
        if not LABEL_KEY.match(key):
            raise ValueError(f"{text!r} is not a label key, `key=value` or `key=`")
        if sep and not LABEL_VALUE.match(value):
            raise ValueError(f"{value!r} is not a valid label value")
        return cls(key, value if sep else None)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.key not in labels:
            return False
        return self.value is None or labels[self.key] == self.value

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


RESERVED_LABEL_DOMAINS = ("kubernetes.io", "k8s.io")


def reserved_label_key(key: str) -> bool:
    """A label key in the kubernetes.io/ or k8s.io/ namespace (or a subdomain of either)."""
    prefix, slash, _ = key.partition("/")
    if not slash:
        return False
    return any(prefix == d or prefix.endswith("." + d) for d in RESERVED_LABEL_DOMAINS)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class Step(_Model):
    nodes: int = Field(ge=0)
    reflectors: int = Field(ge=0)


class Toleration(_Model):
    key: str = ""
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    tolerationSeconds: int | None = None

    def tolerates(self, key: str, value: str, effect: str) -> bool:
        if self.effect and self.effect != effect:
            return False
        if self.operator == "Exists":
            return not self.key or self.key == key
        return self.key == key and self.value == value


class SelectorRequirement(_Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = []


class LabelSelector(_Model):
    matchLabels: dict[str, str] = {}
    matchExpressions: list[SelectorRequirement] = []

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.matchLabels.items()):
            return False
        for req in self.matchExpressions:
            present = req.key in labels
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
            if req.operator == "In" and labels.get(req.key) not in req.values:
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
        return True


class Guard(_Model):
    maxMissingFraction: float = Field(default=0.5, ge=0, le=1)
    minNodes: int = Field(default=1, ge=0)
    holdSeconds: int = Field(default=600, ge=0, le=86400)


class Spec(_Model):
    """The RouteReflectorTopology spec as written; unset fields fall back to the environment."""

    topology: Literal["simple", "multi", "quorum", "hierarchy"] | None = None
    datastore: Literal["incluster", "kubernetes", "etcdv3"] | None = None
    nodeLabel: str | None = None
    zoneLabel: str | None = None
    rackLabel: str | None = None
    clusterID: str | None = None
    min: int | None = Field(default=None, ge=0, le=1000)
    max: int | None = Field(default=None, ge=1, le=1000)
    ratio: float | None = Field(default=None, gt=0, le=1)
    steps: list[Step] | None = Field(default=None, max_length=64)
    incompatibleLabels: list[str] | None = None
    preferredLabels: list[str] | None = None
    nodeSelector: LabelSelector | None = None
    tolerations: list[Toleration] | None = None
    peersPerNode: int | None = Field(default=None, ge=1, le=10)
    waitSeconds: int | None = Field(default=None, ge=0, le=3600)
    paused: bool | None = None
    nodeToNodeMesh: Literal["Keep", "DisableWhenReady"] | None = None
    legacyBGPPeers: Literal["Keep", "RemoveWhenReady"] | None = None
    guard: Guard | None = None


class EnvSpec(Spec):
    """The same fields read from environment strings, so "3" may mean 3."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


ALLOWED = {
    "topology": "one of simple, multi, quorum, hierarchy",
    "datastore": "one of incluster, kubernetes, etcdv3",
    "min": "an integer from 0 to 1000",
    "max": "an integer from 1 to 1000",
    "ratio": "a number greater than 0, at most 1",
    "peersPerNode": "an integer from 1 to 10",
    "waitSeconds": "an integer from 0 to 3600",
    "paused": "true or false",
    "nodeToNodeMesh": "Keep or DisableWhenReady",
    "legacyBGPPeers": "Keep or RemoveWhenReady",
    "steps": "a list of {nodes, reflectors}, non-negative integers",
}


DEFAULTS: dict[str, Any] = {
    "topology": "simple",
    "datastore": "incluster",
    "nodeLabel": "calico-route-reflector=",
    "zoneLabel": "",
    "rackLabel": "",
    "clusterID": "224.0.0.%d",
    "min": 3,
    "max": 25,
    "ratio": 0.005,
    "steps": (),
    "incompatibleLabels": (),
    "preferredLabels": (),
    "nodeSelector": None,
    "tolerations": (),
    "peersPerNode": 3,
    "waitSeconds": 0,
    "paused": False,
    "nodeToNodeMesh": "Keep",
    "legacyBGPPeers": "Keep",
    "guard": Guard(),
}


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


def load_settings(spec: Mapping[str, Any] | None, environ: Mapping[str, str]) -> Settings:
    """Spec wins, then the environment variable, then the default; raises SpecError."""
    try:
        given = Spec.model_validate(dict(spec or {}))
    except ValidationError as error:
        raise _describe(error, "spec") from None
    merged = dict(DEFAULTS)
    merged.update(_from_environ(environ))
    merged.update(
        {k: getattr(given, k) for k in given.model_fields_set if getattr(given, k) is not None}
    )
    source = {
        k: ("spec." + k if k in given.model_fields_set else ENVIRONMENT.get(k, k)) for k in merged
    }

    def fail(name: str, message: str) -> SpecError:
        return SpecError(source[name], message)

    if merged["min"] > merged["max"]:
        # Blame the bound that was set (spec before environment), not a default.
        given_spec = [k for k in ("min", "max") if k in given.model_fields_set]
        given_env = [k for k in ("min", "max") if ENVIRONMENT[k] in environ]
        culprit = (given_spec or given_env or ["min"])[0]
        raise fail(culprit, f"min ({merged['min']}) must be <= max ({merged['max']})")
    try:
        node_label = LabelMatch.parse(merged["nodeLabel"])
    except ValueError as error:
        raise fail("nodeLabel", str(error)) from None
    if reserved_label_key(node_label.key):
        raise fail(
            "nodeLabel",
            f"{node_label.key!r} is in a namespace Kubernetes reserves (kubernetes.io/, k8s.io/):"
            " the hook removes this key from nodes that are not route reflectors",
        )
    try:
        template = _check_template(merged["clusterID"])
    except ValueError as error:
        raise fail("clusterID", str(error)) from None
    for name in ("zoneLabel", "rackLabel"):
        if merged[name] and not LABEL_KEY.match(merged[name]):
            raise fail(name, f"{merged[name]!r} is not a label key")
    matches: dict[str, tuple[LabelMatch, ...]] = {}
    for name in ("incompatibleLabels", "preferredLabels"):
        try:
            matches[name] = tuple(LabelMatch.parse(text) for text in merged[name])
        except ValueError as error:
            raise fail(name, str(error)) from None
    if merged["topology"] == "hierarchy" and not merged["rackLabel"]:
        field = (
            "spec.rackLabel" if "topology" in given.model_fields_set else ENVIRONMENT["rackLabel"]
        )
        raise SpecError(
            field, "the hierarchy topology needs rackLabel (the node label naming a rack)"
        )
    steps = tuple(sorted(merged["steps"], key=lambda step: step.nodes))
    return Settings(
        topology=merged["topology"],
        datastore=merged["datastore"],
        node_label=LabelMatch(node_label.key, node_label.value or ""),
        zone_label=merged["zoneLabel"],
        rack_label=merged["rackLabel"],
        cluster_id=template,
        min=merged["min"],
        max=merged["max"],
        ratio=float(merged["ratio"]),
        steps=steps,
        incompatible_labels=matches["incompatibleLabels"],
        preferred_labels=matches["preferredLabels"],
        node_selector=merged["nodeSelector"],
        tolerations=tuple(merged["tolerations"]),
        peers_per_node=merged["peersPerNode"],
        wait_seconds=merged["waitSeconds"],
        paused=merged["paused"],
        node_to_node_mesh=merged["nodeToNodeMesh"],
        legacy_bgp_peers=merged["legacyBGPPeers"],
        guard=merged["guard"],
    )
