"""The `-Filter` ranges of a sharded read (issue 17 item 6; docs/exchange-protocol.md,
"Sharded reads").

`shard_filters(k)` splits a listing into `k` OPATH filters on `Name`: `k - 1` shards of
first-character prefixes (`Name -like 'a*' -or Name -like 'b*' ...`) and one complement shard,
`-not (...)` of every prefix of the others. The complement is what makes the partition
gap-free: a name that starts with a character no prefix names (unicode, a symbol, nothing at
all) lands in it, and since the server evaluates both sides with the same case folding, no
name can match two shards or none. `k == 1` is no filter at all: the unsharded read.

The groups are balanced by a *spread*: the names the last complete run counted per first
character (`core.spread.name_spread`, kept with the commit), or without one a typical spread
of given names. The spread only moves characters between shards; the partition is gap-free
whatever it says.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from auditor.core.spread import PREFIXES

__all__ = ["ALPHABET", "MAX_SHARDS", "groups", "quote", "shard_filters"]

MAX_SHARDS = 16

# A typical spread of the first characters of mailbox names (given names, aliases): rough
# shares, so the groups come out balanced on a usual tenant. Exchange's `-like` is
# case-insensitive, so lower case covers upper case.
_WEIGHTS = {
    "a": 7.0, "b": 4.0, "c": 5.0, "d": 5.0, "e": 4.0, "f": 2.0, "g": 3.0, "h": 3.0,
    "i": 1.5, "j": 6.0, "k": 4.0, "l": 5.0, "m": 7.0, "n": 3.0, "o": 1.5, "p": 4.0,
    "q": 0.2, "r": 5.0, "s": 8.0, "t": 4.0, "u": 0.5, "v": 1.5, "w": 2.0, "x": 0.2,
    "y": 0.7, "z": 0.7,
}  # fmt: skip
_WEIGHTS.update(dict.fromkeys(string.digits, 0.2))
ALPHABET = PREFIXES  # what the spread counts by name (core.spread), the rest is OTHER


def quote(value: str) -> str:
    """An OPATH string literal: single quotes, a quote inside doubled."""
    return "'" + value.replace("'", "''") + "'"


def _weights(spread: Mapping[str, int] | None) -> tuple[dict[str, float], float]:
    """(weight per `ALPHABET` character, weight of the names only the complement lists).

    From `spread` (names per lower-cased first character; any other key, `""` included, is a
    name no prefix names) when it counts any name, else `_WEIGHTS`. Every character keeps a
    sliver of its typical weight, so one missing from the spread still lands somewhere sensible
    and every group gets a character."""
    spread = spread or {}
    total = sum(n for n in spread.values() if n > 0)
    if not total:
        return dict(_WEIGHTS), 0.0
    sliver = total / sum(_WEIGHTS.values()) / 1000
    weights = {c: max(spread.get(c, 0), 0) + _WEIGHTS[c] * sliver for c in ALPHABET}
    other = sum(n for c, n in spread.items() if c not in weights and n > 0)
    return weights, float(other)


def groups(k: int, spread: Mapping[str, int] | None = None) -> list[str]:
    """`ALPHABET` split into `k` groups of near-equal weight (heaviest first, into the lightest
    group); the last group is the complement shard's share, which starts with the weight of the
    names no prefix names. `spread`: see `_weights`."""
    if not 1 <= k <= MAX_SHARDS:
        raise ValueError(f"shards must be between 1 and {MAX_SHARDS}, got {k}")
    weights, other = _weights(spread)
    bins: list[list[str]] = [[] for _ in range(k)]
    loads = [0.0] * k
    loads[-1] = other
    for char in sorted(ALPHABET, key=lambda c: (-weights[c], c)):
        lightest = loads.index(min(loads))
        bins[lightest].append(char)
        loads[lightest] += weights[char]
    return ["".join(sorted(chars)) for chars in bins]


def _any_prefix(chars: str) -> str:
    return " -or ".join(f"Name -like {quote(char + '*')}" for char in chars)


def shard_filters(k: int, spread: Mapping[str, int] | None = None) -> list[str | None]:
    """The `k` filters of a sharded read, grouped by `spread` (see `groups`); `[None]` (no
    filter) when `k == 1`."""
    parts = groups(k, spread)
    if k == 1:
        return [None]
    named = parts[:-1]
    filters: list[str | None] = [_any_prefix(chars) for chars in named]
    filters.append(f"-not ({_any_prefix(''.join(named))})")
    return filters
