"""The RouteReflectorTopology spec as written: each field's type, bounds and default, what the
allowed values are called in an error, and the label grammar its label fields follow."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LABEL_KEY = re.compile(
    r"^(?:(?=.{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


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
