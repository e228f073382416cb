"""The subset of OPATH `-Filter` the emulated endpoint evaluates (docs/exchange-protocol.md,
"Sharded reads").

Comparisons `Property -like 'pattern'` (`*` matches any run of characters), `-notlike`, `-eq`,
`-ne`, joined with `-and`, `-or`, `-not` and parentheses; values in single quotes (a quote
inside is doubled) or double quotes. Comparisons are case-insensitive, as Exchange's are.
`-not` binds tighter than `-and`, which binds tighter than `-or`. Anything else raises
`FilterError` with the position, which the endpoint answers as Exchange answers an invalid
filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FilterError", "Predicate", "parse_filter"]

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>\() | (?P<close>\)) |
        (?P<op>-[A-Za-z]+) |
        '(?P<single>(?:[^']|'')*)' |
        "(?P<double>(?:[^"]|"")*)" |
        (?P<word>[A-Za-z][A-Za-z0-9]*)
    )""",
    re.VERBOSE,
)
_COMPARISONS = frozenset({"-like", "-notlike", "-eq", "-ne"})


class FilterError(ValueError):
    def __init__(self, text: str, position: int) -> None:
        super().__init__(f'"{text}" at position {position + 1}.')
        self.text = text
        self.position = position


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    at = 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None:
            raise FilterError(text, at)
        kind = match.lastgroup or ""
        value, start = match.group(kind), match.start(kind)
        if kind == "single":
            kind, value = "string", value.replace("''", "'")
        elif kind == "double":
            kind, value = "string", value.replace('""', '"')
        elif kind == "op":
            value = value.lower()
        out.append((kind, value, start))
        at = match.end()
    return out


def _like_source(pattern: str) -> str:
    return ".*".join(re.escape(part) for part in pattern.split("*"))


def _like(pattern: str) -> Callable[[str], bool]:
    regex = re.compile(_like_source(pattern), re.IGNORECASE | re.DOTALL)
    return lambda value: regex.fullmatch(value) is not None


class _Like:
    """`Name -like 'a*' -or Name -like 'b*' ...`: one property against any of its patterns,
    as one regular expression (the emulator's own speed: a sharded read filters every record
    of the tenant once per chain, and 25 predicates a record cost it seconds of CPU that the
    benchmark's client would wait for). Matches exactly what the predicates one by one do."""

    def __init__(self, name: str, sources: list[str]) -> None:
        self.name = name
        self.sources = sources
        alternatives = "|".join(f"(?:{source})" for source in sources)
        self._regex = re.compile(alternatives, re.IGNORECASE | re.DOTALL)

    def __call__(self, record: Mapping[str, Any]) -> bool:
        value = record.get(self.name)
        return value is not None and self._regex.fullmatch(str(value)) is not None


def _compare(name: str, operator: str, operand: str) -> Predicate:
    wanted = operand.casefold()
    like = _like(operand)

    def value_of(record: Mapping[str, Any]) -> str | None:
        value = record.get(name)
        return None if value is None else str(value)

    if operator == "-like":
        return _Like(name, [_like_source(operand)])
    if operator == "-notlike":
        return lambda record: not ((v := value_of(record)) is not None and like(v))
    if operator == "-eq":
        return lambda record: (v := value_of(record)) is not None and v.casefold() == wanted
    return lambda record: not ((v := value_of(record)) is not None and v.casefold() == wanted)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def fail(self) -> FilterError:
        position = self.tokens[self.at][2] if self.at < len(self.tokens) else len(self.text)
        return FilterError(self.text, position)

    def peek(self, kind: str, value: str | None = None) -> bool:
        if self.at >= len(self.tokens):
            return False
        token_kind, token_value, _ = self.tokens[self.at]
        return token_kind == kind and (value is None or token_value == value)

    def take(self, kind: str, value: str | None = None) -> str:
        if not self.peek(kind, value):
            raise self.fail()
        self.at += 1
        return self.tokens[self.at - 1][1]

    def parse(self) -> Predicate:
        predicate = self.either()
        if self.at != len(self.tokens):
            raise self.fail()
        return predicate

    def either(self) -> Predicate:
        parts = [self.both()]
        while self.peek("op", "-or"):
            self.at += 1
            parts.append(self.both())
        if len(parts) == 1:
            return parts[0]
        likes = [p for p in parts if isinstance(p, _Like)]
        if len(likes) == len(parts) and all(p.name == likes[0].name for p in likes):
            return _Like(likes[0].name, [source for p in likes for source in p.sources])
        return lambda r: any(p(r) for p in parts)

    def both(self) -> Predicate:
        parts = [self.unary()]
        while self.peek("op", "-and"):
            self.at += 1
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def unary(self) -> Predicate:
        if self.peek("op", "-not"):
            self.at += 1
            inner = self.unary()
            return lambda r: not inner(r)
        if self.peek("open"):
            self.at += 1
            inner = self.either()
            self.take("close")
            return inner
        name = self.take("word")
        if self.at >= len(self.tokens) or self.tokens[self.at][1] not in _COMPARISONS:
            raise self.fail()
        operator = self.take("op")
        return _compare(name, operator, self.take("string"))


def parse_filter(text: str) -> Predicate:
    """A predicate over records (property name -> value) for an OPATH filter; FilterError for
    what the subset does not read."""
    if not isinstance(text, str) or not text.strip():
        raise FilterError(str(text), 0)
    return _Parser(text).parse()
