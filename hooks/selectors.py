"""Calico selectors as BGPPeer nodeSelector/peerSelector use them: parse once, match labels."""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Selector", "SelectorError", "parse_selector"]


class SelectorError(ValueError):
    """A selector that Calico would reject; `position` is the 0-based offset of the problem."""

    def __init__(self, text: str, position: int, reason: str) -> None:
        super().__init__(f"{reason} at position {position} in selector {text!r}")
        self.text = text
        self.position = position
        self.reason = reason


class _Expr(ABC):
    """A parsed selector expression."""

    __slots__ = ()

    @abstractmethod
    def matches(self, labels: Mapping[str, str]) -> bool: ...


@dataclass(frozen=True, slots=True)
class _All(_Expr):
    def matches(self, labels: Mapping[str, str]) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class _Has(_Expr):
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels


@dataclass(frozen=True, slots=True)
class _Equals(_Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) == self.value


@dataclass(frozen=True, slots=True)
class _NotEquals(_Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) != self.value


@dataclass(frozen=True, slots=True)
class _In(_Expr):
    key: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is not None and value in self.values


@dataclass(frozen=True, slots=True)
class _NotIn(_Expr):
    key: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is None or value not in self.values


@dataclass(frozen=True, slots=True)
class _Contains(_Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is not None and self.value in value


@dataclass(frozen=True, slots=True)
class _StartsWith(_Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is not None and value.startswith(self.value)


@dataclass(frozen=True, slots=True)
class _EndsWith(_Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        return value is not None and value.endswith(self.value)


@dataclass(frozen=True, slots=True)
class _Not(_Expr):
    operand: _Expr

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)


@dataclass(frozen=True, slots=True)
class _And(_Expr):
    operands: tuple[_Expr, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(operand.matches(labels) for operand in self.operands)


@dataclass(frozen=True, slots=True)
class _Or(_Expr):
    operands: tuple[_Expr, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(operand.matches(labels) for operand in self.operands)


@dataclass(frozen=True)
class Selector:
    """A parsed Calico selector; `matches` evaluates it against a node's labels."""

    text: str
    expr: _Expr

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.expr.matches(labels)

    def lookup(self) -> tuple[str, frozenset[str]] | None:
        """(key, values) when this selector is `key == 'v'` or `key in {...}`: it matches exactly
        the nodes whose label `key` has one of `values`, so callers may look them up by label."""
        if isinstance(self.expr, _Equals):
            return self.expr.key, frozenset((self.expr.value,))
        if isinstance(self.expr, _In):
            return self.expr.key, self.expr.values
        return None

    def __str__(self) -> str:
        return self.text


_SPACE = re.compile(r"[ \t\r\n]*")
_KEY = re.compile(r"[A-Za-z0-9_./-]{1,512}")  # libcalico-go's label key matcher
_HAS = re.compile(r"has\(\s*([A-Za-z0-9_./-]{1,512})\s*\)")
_ALL = re.compile(r"all\(\s*\)")
_STRING = re.compile(r"\"([^\"]*)\"|'([^']*)'")
_NOT_IN = re.compile(r"not\s*in\b")
_IN = re.compile(r"in\b")
_CONTAINS = re.compile(r"contains\b")
_STARTS_WITH = re.compile(r"starts\s*with\b")
_ENDS_WITH = re.compile(r"ends\s*with\b")


class _Parser:
    """Recursive descent over Calico's grammar: `||` binds loosest, then `&&`, then `!`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, reason: str, position: int | None = None) -> SelectorError:
        return SelectorError(self.text, self.pos if position is None else position, reason)

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None  # `*` always matches
        self.pos = match.end()

    def take(self, literal: str) -> bool:
        self.skip_space()
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def take_re(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        self.skip_space()
        match = pattern.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()
        return match

    def parse(self) -> _Expr:
        self.skip_space()
        if self.pos == len(self.text):
            return _All()  # Calico treats an empty selector as all()
        expr = self.parse_or()
        self.skip_space()
        if self.pos != len(self.text):
            raise self.fail("expected '&&', '||' or the end of the selector")
        return expr

    def parse_or(self) -> _Expr:
        operands = [self.parse_and()]
        while self.take("||"):
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else _Or(tuple(operands))

    def parse_and(self) -> _Expr:
        operands = [self.parse_unary()]
        while self.take("&&"):
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else _And(tuple(operands))

    def parse_unary(self) -> _Expr:
        self.skip_space()
        if self.pos == len(self.text):
            raise self.fail("unexpected end of selector, expected an expression")
        if self.text.startswith("!=", self.pos):
            raise self.fail("expected an expression, found '!='")
        if self.take("!"):
            return _Not(self.parse_unary())
        if self.take("("):
            expr = self.parse_or()
            if not self.take(")"):
                raise self.fail("expected ')'")
            return expr
        if (match := self.take_re(_HAS)) is not None:
            return _Has(match.group(1))
        if self.take_re(_ALL) is not None:
            return _All()
        start = self.pos
        key_match = self.take_re(_KEY)
        if key_match is None:
            raise self.fail("expected a label key, 'has(', 'all()', '!' or '('")
        key = key_match.group(0)
        if key in ("has", "all") and self.text.startswith("(", self.pos):
            raise self.fail(f"malformed {key}(...)", start)
        return self.parse_comparison(key)

    def parse_comparison(self, key: str) -> _Expr:
        if self.take("=="):
            return _Equals(key, self.parse_string())
        if self.take("!="):
            return _NotEquals(key, self.parse_string())
        if self.take_re(_NOT_IN) is not None:
            return _NotIn(key, self.parse_set())
        if self.take_re(_IN) is not None:
            return _In(key, self.parse_set())
        if self.take_re(_CONTAINS) is not None:
            return _Contains(key, self.parse_string())
        if self.take_re(_STARTS_WITH) is not None:
            return _StartsWith(key, self.parse_string())
        if self.take_re(_ENDS_WITH) is not None:
            return _EndsWith(key, self.parse_string())
        raise self.fail(f"expected an operator after label {key!r}")

    def parse_string(self) -> str:
        match = self.take_re(_STRING)
        if match is None:
            raise self.fail("expected a quoted value")
        return match.group(1) if match.group(1) is not None else match.group(2)

    def parse_set(self) -> frozenset[str]:
        if not self.take("{"):
            raise self.fail("expected '{'")
        values: list[str] = []
        if self.take("}"):
            return frozenset()
        values.append(self.parse_string())
        while self.take(","):
            values.append(self.parse_string())
        if not self.take("}"):
            raise self.fail("expected ',' or '}'")
        return frozenset(values)


@functools.lru_cache(maxsize=4096)
def parse_selector(text: str) -> Selector:
    """Parse a Calico selector (cached); raise SelectorError naming the position of a mistake."""
    return Selector(text, _Parser(text).parse())
