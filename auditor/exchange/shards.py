"""The `-Filter` ranges of a sharded read (issue 17 item 6; docs/exchange-protocol.md,
"Sharded reads").

`shard_filters(k)` splits a listing into `k` OPATH filters on `Name`: `k - 1` shards of
first-character prefixes (`Name -like 'a*' -or Name -like 'b*' ...`) and one complement shard,
`-not (...)` of every prefix of the others. The complement is what makes the partition
gap-free: a name that starts with a character no prefix names (unicode, a symbol, nothing at
all) lands in it, and since the server evaluates both sides with the same case folding, no
name can match two shards or none. `k == 1` is no filter at all: the unsharded read.
"""

from __future__ import annotations

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
_WEIGHTS.update(dict.fromkeys("0123456789", 0.2))
ALPHABET = "".join(_WEIGHTS)


def quote(value: str) -> str:
    """An OPATH string literal: single quotes, a quote inside doubled."""
    return "'" + value.replace("'", "''") + "'"


def groups(k: int) -> list[str]:
    """`ALPHABET` split into `k` groups of near-equal weight (heaviest first, into the lightest
    group); the last group is the complement shard's share."""
    if not 1 <= k <= MAX_SHARDS:
        raise ValueError(f"shards must be between 1 and {MAX_SHARDS}, got {k}")
    bins: list[list[str]] = [[] for _ in range(k)]
    loads = [0.0] * k
    for char in sorted(ALPHABET, key=lambda c: (-_WEIGHTS[c], c)):
        lightest = loads.index(min(loads))
        bins[lightest].append(char)
        loads[lightest] += _WEIGHTS[char]
    return ["".join(sorted(chars)) for chars in bins]


def _any_prefix(chars: str) -> str:
    return " -or ".join(f"Name -like {quote(char + '*')}" for char in chars)


def shard_filters(k: int) -> list[str | None]:
    """The `k` filters of a sharded read; `[None]` (no filter) when `k == 1`."""
    parts = groups(k)
    if k == 1:
        return [None]
    named = parts[:-1]
    filters: list[str | None] = [_any_prefix(chars) for chars in named]
    filters.append(f"-not ({_any_prefix(''.join(named))})")
    return filters
