"""Settings: the spec wins over the environment, which wins over the default (README, Settings);
every invalid value is refused with a message naming the field and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest

from hooks.config import ClusterIDTemplate, Settings, SpecError, load_settings
from hooks.spec import LabelMatch


def _label(s: Settings) -> tuple[str, str]:
    return s.reflector_label


def _labels(found: tuple[LabelMatch, ...]) -> tuple[str, ...]:
    return tuple(str(m) for m in found)


# field, environment variable, spec value, environment value, default, reader,
# and what the reader gives for (spec, env, default)
FIELDS: list[tuple[str, str, Any, str, Any, Any]] = [
    (
        "datastore",
        "DATASTORE_TYPE",
        "etcdv3",
        "kubernetes",
        lambda s: s.datastore,
        ("etcdv3", "kubernetes", "incluster"),
    ),
    (
        "clusterID",
        "ROUTE_REFLECTOR_CLUSTER_ID",
        "10.0.0.%d",
        "10.1.0.%d",
        lambda s: s.cluster_id.template,
        ("10.0.0.%d", "10.1.0.%d", "224.0.0.%d"),
    ),
    ("min", "ROUTE_REFLECTOR_MIN", 1, "2", lambda s: s.min, (1, 2, 3)),
    ("max", "ROUTE_REFLECTOR_MAX", 7, "8", lambda s: s.max, (7, 8, 25)),
    ("ratio", "ROUTE_REFLECTOR_RATIO", 0.2, "0.3", lambda s: s.ratio, (0.2, 0.3, 0.005)),
    (
        "nodeLabel",
        "ROUTE_REFLECTOR_NODE_LABEL",
        "example.com/rr=yes",
        "env-rr=",
        _label,
        (("example.com/rr", "yes"), ("env-rr", ""), ("calico-route-reflector", "")),
    ),
    (
        "zoneLabel",
        "ROUTE_REFLECTOR_ZONE_LABEL",
        "topology.kubernetes.io/zone",
        "rack-zone",
        lambda s: s.zone_label,
        ("topology.kubernetes.io/zone", "rack-zone", ""),
    ),
    (
        "topology",
        "ROUTE_REFLECTOR_TOPOLOGY",
        "quorum",
        "multi",
        lambda s: s.topology,
        ("quorum", "multi", "simple"),
    ),
    (
        "incompatibleLabels",
        "ROUTE_REFLECTOR_INCOMPATIBLE_NODE_LABELS",
        ["a=b"],
        "c, d=",
        lambda s: _labels(s.incompatible_labels),
        (("a=b",), ("c", "d="), ()),
    ),
    (
        "waitSeconds",
        "ROUTE_REFLECTOR_WAIT_TIMEOUT",
        30,
        "60",
        lambda s: s.wait_seconds,
        (30, 60, 0),
    ),
]
IDS = [f[0] for f in FIELDS]


@pytest.mark.parametrize(("field", "variable", "spec", "env", "read", "want"), FIELDS, ids=IDS)
def test_spec_wins_over_environment(
    field: str, variable: str, spec: Any, env: str, read: Any, want: tuple[Any, Any, Any]
) -> None:
    assert read(load_settings({field: spec}, {variable: env})) == want[0]


@pytest.mark.parametrize(("field", "variable", "spec", "env", "read", "want"), FIELDS, ids=IDS)
def test_environment_wins_over_default(
    field: str, variable: str, spec: Any, env: str, read: Any, want: tuple[Any, Any, Any]
) -> None:
    assert read(load_settings({}, {variable: env})) == want[1]
    assert read(load_settings({field: None}, {variable: env})) == want[1]


@pytest.mark.parametrize(("field", "variable", "spec", "env", "read", "want"), FIELDS, ids=IDS)
def test_default_applies_when_neither_is_set(
    field: str, variable: str, spec: Any, env: str, read: Any, want: tuple[Any, Any, Any]
) -> None:
    assert read(load_settings(None, {})) == want[2]
    assert read(load_settings({}, {"UNRELATED": "1"})) == want[2]


def test_every_variable_of_the_original_operator_is_read() -> None:
    environ = {
        "DATASTORE_TYPE": "kubernetes",
        "ROUTE_REFLECTOR_CLUSTER_ID": "10.9.9.%d",
        "ROUTE_REFLECTOR_MIN": "2",
        "ROUTE_REFLECTOR_MAX": "9",
        "ROUTE_REFLECTOR_RATIO": "0.1",
        "ROUTE_REFLECTOR_NODE_LABEL": "rr=on",
        "ROUTE_REFLECTOR_ZONE_LABEL": "zone",
        "ROUTE_REFLECTOR_TOPOLOGY": "multi",
        "ROUTE_REFLECTOR_INCOMPATIBLE_NODE_LABELS": "edge,gpu=",
        "ROUTE_REFLECTOR_WAIT_TIMEOUT": "15",
    }
    s = load_settings({}, environ)
    assert (s.datastore, s.cluster_id.template, s.min, s.max, s.ratio) == (
        "kubernetes",
        "10.9.9.%d",
        2,
        9,
        0.1,
    )
    assert (s.reflector_label, s.zone_label, s.topology, s.wait_seconds) == (
        ("rr", "on"),
        "zone",
        "multi",
        15,
    )
    assert _labels(s.incompatible_labels) == ("edge", "gpu=")


INVALID_SPEC = [
    ({"min": -1}, "spec.min", "0 to 1000"),
    ({"min": "three"}, "spec.min", "0 to 1000"),
    ({"max": 0}, "spec.max", "1 to 1000"),
    ({"max": 1001}, "spec.max", "1 to 1000"),
    ({"ratio": 0}, "spec.ratio", "greater than 0, at most 1"),
    ({"ratio": 1.5}, "spec.ratio", "greater than 0, at most 1"),
    ({"topology": "ring"}, "spec.topology", "simple, multi, quorum, hierarchy"),
    ({"datastore": "consul"}, "spec.datastore", "incluster, kubernetes, etcdv3"),
    ({"waitSeconds": 4000}, "spec.waitSeconds", "0 to 3600"),
    ({"peersPerNode": 0}, "spec.peersPerNode", "1 to 10"),
    ({"paused": "yes"}, "spec.paused", "true or false"),
    ({"min": 4, "max": 2}, "spec.min", "<= max"),
    ({"nodeLabel": "bad key!=x"}, "spec.nodeLabel", "label key"),
    ({"nodeLabel": "rr=not valid"}, "spec.nodeLabel", "label value"),
    ({"zoneLabel": "not a key"}, "spec.zoneLabel", "label key"),
    ({"incompatibleLabels": ["ok", "bad key"]}, "spec.incompatibleLabels", "label key"),
    ({"clusterID": "300.0.0.%d"}, "spec.clusterID", "IPv4"),
    ({"clusterID": "10.0.0.%s"}, "spec.clusterID", "%d"),
    ({"clusterID": "0.0.0.0"}, "spec.clusterID", "0.0.0.0"),
    ({"unknownField": 1}, "spec.unknownField", ""),
]


@pytest.mark.parametrize(("spec", "field", "allowed"), INVALID_SPEC, ids=lambda v: str(v))
def test_invalid_spec_names_the_field_and_the_allowed_range(
    spec: dict[str, Any], field: str, allowed: str
) -> None:
    with pytest.raises(SpecError) as raised:
        load_settings(spec, {})
    assert raised.value.field == field
    assert allowed in raised.value.message
    assert str(raised.value).startswith(f"{field}: ")


INVALID_ENV = [
    ("ROUTE_REFLECTOR_MIN", "x", "0 to 1000"),
    ("ROUTE_REFLECTOR_MIN", "-2", "0 to 1000"),
    ("ROUTE_REFLECTOR_MAX", "0", "1 to 1000"),
    ("ROUTE_REFLECTOR_RATIO", "2", "greater than 0, at most 1"),
    ("ROUTE_REFLECTOR_TOPOLOGY", "ring", "simple, multi, quorum, hierarchy"),
    ("DATASTORE_TYPE", "consul", "incluster, kubernetes, etcdv3"),
    ("ROUTE_REFLECTOR_WAIT_TIMEOUT", "-1", "0 to 3600"),
    ("ROUTE_REFLECTOR_MIN", "30", "<= max"),
    ("ROUTE_REFLECTOR_CLUSTER_ID", "300.0.0.%d", "IPv4"),
    ("ROUTE_REFLECTOR_NODE_LABEL", "bad key=", "label key"),
    ("ROUTE_REFLECTOR_INCOMPATIBLE_NODE_LABELS", "ok,bad key", "label key"),
]


@pytest.mark.parametrize(("variable", "value", "allowed"), INVALID_ENV, ids=lambda v: str(v))
def test_invalid_environment_names_the_variable_and_the_allowed_range(
    variable: str, value: str, allowed: str
) -> None:
    with pytest.raises(SpecError) as raised:
        load_settings({}, {variable: value})
    assert raised.value.field == variable
    assert allowed in raised.value.message


def test_a_valid_spec_value_hides_an_invalid_environment_value_of_another_field_not() -> None:
    """The spec overrides a variable, but a broken variable is still reported, never ignored."""
    with pytest.raises(SpecError) as raised:
        load_settings({"min": 1}, {"ROUTE_REFLECTOR_MAX": "zero"})
    assert raised.value.field == "ROUTE_REFLECTOR_MAX"


def test_min_above_max_from_spec_and_environment_blames_the_spec_field() -> None:
    with pytest.raises(SpecError) as raised:
        load_settings({"min": 9}, {"ROUTE_REFLECTOR_MAX": "4"})
    assert raised.value.field == "spec.min"
    assert "9" in raised.value.message and "4" in raised.value.message


@pytest.mark.parametrize(
    ("spec", "environ", "field"),
    [
        ({"max": 2}, {}, "spec.max"),
        ({}, {"ROUTE_REFLECTOR_MAX": "2"}, "ROUTE_REFLECTOR_MAX"),
    ],
)
def test_min_above_max_blames_the_field_that_was_set_not_a_default(
    spec: dict[str, Any], environ: dict[str, str], field: str
) -> None:
    """Only `max` was given (below the default min of 3): the error must point at it."""
    with pytest.raises(SpecError) as raised:
        load_settings(spec, environ)
    assert raised.value.field == field


def test_hierarchy_without_a_rack_label_names_a_spec_field() -> None:
    with pytest.raises(SpecError) as raised:
        load_settings({"topology": "hierarchy"}, {})
    assert raised.value.field in ("spec.rackLabel", "spec.topology")
    assert "rackLabel" in raised.value.message


@pytest.mark.parametrize(
    ("text", "key", "value", "matches", "misses"),
    [
        ("rr=yes", "rr", "yes", {"rr": "yes"}, {"rr": "no"}),
        ("rr=", "rr", "", {"rr": ""}, {"rr": "x"}),
        ("rr", "rr", None, {"rr": "anything"}, {"other": ""}),
        ("example.com/rr=on", "example.com/rr", "on", {"example.com/rr": "on"}, {"rr": "on"}),
    ],
)
def test_label_forms(
    text: str, key: str, value: str | None, matches: dict[str, str], misses: dict[str, str]
) -> None:
    found = LabelMatch.parse(text)
    assert (found.key, found.value) == (key, value)
    assert found.matches(matches)
    assert not found.matches(misses)
    assert str(found) == text


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("rr=yes", ("rr", "yes")),
        ("rr=", ("rr", "")),
        ("rr", ("rr", "")),
        ("example.com/route-reflector=true", ("example.com/route-reflector", "true")),
    ],
)
def test_node_label_forms(text: str, label: tuple[str, str]) -> None:
    assert load_settings({"nodeLabel": text}, {}).reflector_label == label


def test_literal_cluster_id_is_accepted_and_gives_one_id() -> None:
    template = load_settings({"clusterID": "10.20.30.40"}, {}).cluster_id
    assert template.capacity == 1
    assert template.format(0) == "10.20.30.40"
    assert template.index_of("10.20.30.40") == 0
    assert template.index_of("10.20.30.41") is None
    with pytest.raises(IndexError):
        template.format(1)


def test_one_placeholder_gives_254_ids() -> None:
    template = load_settings({}, {}).cluster_id
    assert template.capacity == 254
    assert (template.format(0), template.format(253)) == ("224.0.0.1", "224.0.0.254")
    with pytest.raises(IndexError):
        template.format(254)
    assert template.index_of("224.0.0.0") is None
    assert template.index_of("224.0.0.255") is None


def test_two_placeholders_give_254_squared_ids() -> None:
    template = load_settings({"clusterID": "10.%d.%d.1"}, {}).cluster_id
    assert template.capacity == 254 * 254
    assert template.format(0) == "10.1.1.1"
    assert template.format(1) == "10.1.2.1"
    assert template.format(254) == "10.2.1.1"
    assert template.format(254 * 254 - 1) == "10.254.254.1"
    ids = {template.format(i) for i in range(0, 254 * 254, 97)}
    assert all(template.index_of(cid) is not None for cid in ids)
    assert [template.index_of(template.format(i)) for i in (0, 300, 64515)] == [0, 300, 64515]


@pytest.mark.parametrize("text", ["300.0.0.%d", "224.0.0", "10.0.0.0.%d", "a.b.c.%d", "%d.%d"])
def test_templates_that_do_not_give_ipv4_are_refused(text: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_settings({"clusterID": text}, {})
    assert raised.value.field == "spec.clusterID"


def test_cluster_id_template_formats_the_last_placeholder_fastest() -> None:
    assert ClusterIDTemplate("%d.0.%d.0").format(255) == "2.0.2.0"


def test_steps_are_sorted_by_nodes() -> None:
    steps = [{"nodes": 100, "reflectors": 5}, {"nodes": 10, "reflectors": 2}]
    s = load_settings({"steps": steps}, {})
    assert [step.nodes for step in s.steps] == [10, 100]
