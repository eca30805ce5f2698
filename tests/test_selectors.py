"""Calico selector parsing and evaluation, as BGPPeer nodeSelector/peerSelector use them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hooks.selectors import SelectorError, parse_selector

RR = {"calico-route-reflector": "", "route-reflector.dev/group": "zone-a", "zone": "a"}
CLIENT = {"route-reflector.dev/group": "zone-b", "zone": "b", "kubernetes.io/os": "linux"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("text", "rr", "client", "bare"),
    [
        ("has(calico-route-reflector)", True, False, False),
        ("has( calico-route-reflector )", True, False, False),
        ("!has(calico-route-reflector)", False, True, True),
        ("calico-route-reflector == ''", True, False, False),
        ('route-reflector.dev/group == "zone-a"', True, False, False),
        ("route-reflector.dev/group == 'zone-a'", True, False, False),
        ("route-reflector.dev/group != 'zone-a'", False, True, True),
        ("zone in {'a', 'b'}", True, True, False),
        ("zone in {'c'}", False, False, False),
        ("zone in {}", False, False, False),
        ("zone not in {'a'}", False, True, True),
        ("zone notin {'a'}", False, True, True),
        ("kubernetes.io/os contains 'inu'", False, True, False),
        ("zone starts with 'a'", True, False, False),
        ("route-reflector.dev/group ends with '-b'", False, True, False),
        ("all()", True, True, True),
        ("", True, True, True),
        ("  ", True, True, True),
        ("zone == 'a' && has(calico-route-reflector)", True, False, False),
        ("zone == 'b' || has(calico-route-reflector)", True, True, False),
        ("!(zone == 'a' || zone == 'b')", False, False, True),
        ("!!has(zone)", True, True, False),
    ],
)
def test_each_operator_matches_as_calico_does(
    text: str, rr: bool, client: bool, bare: bool
) -> None:
    selector = parse_selector(text)

    assert (selector.matches(RR), selector.matches(CLIENT), selector.matches(BARE)) == (
        rr,
        client,
        bare,
    )


def test_not_equal_and_not_in_match_a_node_without_the_key() -> None:
    assert parse_selector("rack != 'r1'").matches({})
    assert parse_selector("rack not in {'r1', 'r2'}").matches({"zone": "a"})
    assert not parse_selector("rack in {'r1'}").matches({})
    assert not parse_selector("rack == ''").matches({})


def test_and_binds_tighter_than_or_and_not_tighter_than_and() -> None:
    # a || b && c  ==  a || (b && c)
    selector = parse_selector("has(a) || has(b) && has(c)")
    assert selector.matches({"a": ""})
    assert not selector.matches({"b": ""})
    # !a && b  ==  (!a) && b
    negated = parse_selector("!has(a) && has(b)")
    assert negated.matches({"b": ""})
    assert not negated.matches({"a": "", "b": ""})
    assert not negated.matches({})


def test_parentheses_override_precedence() -> None:
    selector = parse_selector("(has(a) || has(b)) && has(c)")
    assert not selector.matches({"a": ""})
    assert selector.matches({"a": "", "c": ""})


def test_quotes_may_hold_the_other_quote_and_operators() -> None:
    assert parse_selector("""k == "it's" """).matches({"k": "it's"})
    assert parse_selector("k == '&& || !'").matches({"k": "&& || !"})


def test_a_label_key_that_starts_with_a_keyword_is_still_a_key() -> None:
    assert parse_selector("inventory == 'x'").matches({"inventory": "x"})
    assert parse_selector("hash == 'x'").matches({"hash": "x"})
    assert parse_selector("all-nodes == 'x'").matches({"all-nodes": "x"})


def test_parsed_selectors_are_cached_and_keep_their_text() -> None:
    assert parse_selector("has(x)") is parse_selector("has(x)")
    assert str(parse_selector("has(x)")) == "has(x)"


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("zone == a", 8),  # unquoted value
        ("zone = 'a'", 5),  # Calico has no single '='
        ("zone == 'a", 8),  # unterminated quote
        ("has(zone", 0),  # unterminated has(
        ("(has(a)", 7),  # missing ')'
        ("has(a) &&", 9),  # dangling operator
        ("has(a) has(b)", 7),  # missing operator between expressions
        ("zone in {'a' 'b'}", 13),  # missing comma
        ("zone in 'a'", 8),  # a set needs braces
        ("!= 'a'", 0),
        ("zone", 4),  # key without operator
        ("has(a) & has(b)", 7),
    ],
)
def test_parse_errors_name_the_position(text: str, position: int) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)

    assert caught.value.position == position
    assert f"position {position}" in str(caught.value)
    assert caught.value.text == text


_KEYS = st.sampled_from(["a", "b", "route-reflector.dev/group"])
_VALUES = st.sampled_from(["", "x", "y"])


@settings(max_examples=200, deadline=None, database=None)
@given(
    labels=st.dictionaries(_KEYS, _VALUES),
    key=_KEYS,
    values=st.frozensets(_VALUES, max_size=3),
)
def test_not_in_is_the_negation_of_in_and_ne_of_eq(
    labels: dict[str, str], key: str, values: frozenset[str]
) -> None:
    members = ", ".join(f"'{v}'" for v in sorted(values))
    is_in = parse_selector(f"{key} in {{{members}}}").matches(labels)
    assert parse_selector(f"{key} not in {{{members}}}").matches(labels) is not is_in
    assert parse_selector(f"!({key} in {{{members}}})").matches(labels) is not is_in
    for value in values:
        equal = parse_selector(f"{key} == '{value}'").matches(labels)
        assert parse_selector(f"{key} != '{value}'").matches(labels) is not equal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("zone == 'a'", ("zone", frozenset({"a"}))),
        ("zone in {'a', 'b'}", ("zone", frozenset({"a", "b"}))),
        ("zone in {}", ("zone", frozenset())),
        ("zone != 'a'", None),
        ("has(zone)", None),
        ("zone == 'a' && has(b)", None),
    ],
)
def test_only_equality_and_membership_offer_a_label_lookup(
    text: str, expected: tuple[str, frozenset[str]] | None
) -> None:
    assert parse_selector(text).lookup() == expected


@settings(max_examples=200, deadline=None, database=None)
@given(labels=st.dictionaries(_KEYS, _VALUES), key=_KEYS, values=st.frozensets(_VALUES, max_size=3))
def test_a_lookup_selects_exactly_what_the_selector_matches(
    labels: dict[str, str], key: str, values: frozenset[str]
) -> None:
    members = ", ".join(f"'{v}'" for v in sorted(values))
    for text in [f"{key} in {{{members}}}", *(f"{key} == '{v}'" for v in values)]:
        selector = parse_selector(text)
        lookup = selector.lookup()
        assert lookup is not None
        found = lookup[0] in labels and labels[lookup[0]] in lookup[1]
        assert found is selector.matches(labels)
