"""The `-Filter` ranges of a sharded read: a partition of every name, whatever it starts with
(docs/exchange-protocol.md, "Sharded reads")."""

from __future__ import annotations

import random

import pytest

from auditor.core.spread import OTHER
from auditor.exchange.shards import ALPHABET, MAX_SHARDS, groups, quote, shard_filters
from devkit.emulator.opath import parse_filter

ODD_NAMES = [
    "",
    " ",
    "a",
    "A",
    "Zoë",
    "Émile",
    "élodie",
    "Øyvind",
    "ßtraße",
    "İstanbul",
    "ıdris",
    "\u212aelvin",  # KELVIN SIGN, which case-folds to k
    "李雷",
    "Юлия",
    "O'Brien",
    "'quoted'",
    "''",
    "*star",
    "?what",
    "-dash",
    "_under",
    ".dot",
    "(paren",
    "9lives",
    "0",
    "😀 emoji",
    "\t tab",
    "a*b",
    "\udc80 lone surrogate",
]


def generated_names(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    accents = "ÀÉÎÕÜàéîõüçñøåæœßđłĳ"
    pool = ALPHABET + ALPHABET.upper() + accents + "'\"*?()-_. 中文日本語한국어ЖЯΩ😀\u0301"
    names = []
    for _ in range(count):
        length = rng.randint(0, 12)
        names.append("".join(rng.choice(pool) for _ in range(length)))
    return names


def test_one_shard_is_no_filter() -> None:
    assert shard_filters(1) == [None]


@pytest.mark.parametrize("k", range(1, MAX_SHARDS + 1))
def test_groups_split_the_alphabet_exactly(k: int) -> None:
    parts = groups(k)
    assert len(parts) == k
    assert all(parts), "every shard gets some characters"
    assert sorted("".join(parts)) == sorted(ALPHABET)


@pytest.mark.parametrize("k", [2, 3, 4, 7, MAX_SHARDS])
def test_every_name_is_in_exactly_one_shard(k: int) -> None:
    predicates = [parse_filter(text) for text in shard_filters(k) if text is not None]
    assert len(predicates) == k
    for name in ODD_NAMES + generated_names(3000):
        hits = [i for i, matches in enumerate(predicates) if matches({"Name": name})]
        assert len(hits) == 1, f"{name!r} is in shards {hits}"


@pytest.mark.parametrize("k", [2, 3, 16])
def test_a_record_without_a_name_lands_in_the_complement(k: int) -> None:
    predicates = [parse_filter(text) for text in shard_filters(k) if text is not None]
    assert [p({}) for p in predicates] == [False] * (k - 1) + [True]


def test_the_filters_name_prefixes_and_a_complement() -> None:
    filters = shard_filters(3)
    first, second, _ = groups(3)
    assert filters[0] == " -or ".join(f"Name -like '{c}*'" for c in first)
    assert filters[1] == " -or ".join(f"Name -like '{c}*'" for c in second)
    assert filters[2] == f"-not ({filters[0]} -or {filters[1]})"
    assert not any(c in (filters[2] or "") for c in '"`$')  # nothing PowerShell would expand


def test_quote_doubles_single_quotes() -> None:
    assert quote("O'Brien") == "'O''Brien'"
    assert parse_filter(f"Name -eq {quote(chr(39) + 'x' + chr(39))}")({"Name": "'x'"})


@pytest.mark.parametrize("k", [0, MAX_SHARDS + 1, -1])
def test_out_of_range_is_refused(k: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 16"):
        shard_filters(k)


def test_three_shards_are_balanced_on_a_usual_spread() -> None:
    # The weights make the groups near-equal: no group over 40% of the weight at K=3.
    from auditor.exchange import shards

    weights = shards._WEIGHTS
    total = sum(weights.values())
    loads = [sum(weights[c] for c in part) / total for part in groups(3)]
    assert max(loads) < 0.4


def loads_of(parts: list[str], spread: dict[str, int]) -> list[int]:
    """Names per shard: the named shards' characters, and the complement's plus the rest."""
    named = set("".join(parts[:-1]))
    loads = [sum(spread.get(c, 0) for c in part) for part in parts[:-1]]
    loads.append(sum(n for c, n in spread.items() if c not in named))
    return loads


# The demo and benchmark tenants' spread (devkit.tenantgen): given names start with a few
# letters only, which the typical weights split 27/31/42% into three shards.
SKEWED = {"a": 143, "e": 92, "j": 72, "k": 72, "l": 143, "m": 143, "n": 72, "p": 72, "r": 30,
          "s": 161}  # fmt: skip


def test_a_spread_balances_the_shards_by_what_the_tenant_holds() -> None:
    total = sum(SKEWED.values())
    typical = max(loads_of(groups(3), SKEWED)) / total
    balanced = max(loads_of(groups(3, SKEWED), SKEWED)) / total
    assert typical > 0.4 and balanced < 0.37


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_no_shard_holds_more_than_an_equal_share_and_one_character(k: int) -> None:
    # Greedy heaviest-first into the lightest shard: the largest shard exceeds an equal
    # share by at most its last character.
    spread = {c: (7 * i) % 23 + 1 for i, c in enumerate(ALPHABET)}
    loads = loads_of(groups(k, spread), spread)
    assert max(loads) <= sum(spread.values()) / k + max(spread.values())


def test_names_no_prefix_names_weigh_on_the_complement_shard() -> None:
    spread = {"a": 50, "b": 50, OTHER: 100}
    parts = groups(3, spread)
    assert parts[-1] == "" or all(spread.get(c, 0) == 0 for c in parts[-1])
    assert sorted(loads_of(parts, spread)) == [50, 50, 100]


@pytest.mark.parametrize("spread", [None, {}, {"a": 0}, {OTHER: 0}])
def test_no_names_counted_is_the_typical_spread(spread: dict[str, int] | None) -> None:
    assert groups(3, spread) == groups(3)


@pytest.mark.parametrize("k", [2, 3, MAX_SHARDS])
def test_every_named_shard_gets_a_character_whatever_the_spread(k: int) -> None:
    for spread in ({"s": 1000}, {OTHER: 1000}, {"a": 1, "b": 10**9}):
        parts = groups(k, spread)
        assert all(parts[:-1]), (spread, parts)
        assert sorted("".join(parts)) == sorted(ALPHABET)


@pytest.mark.parametrize("spread", [SKEWED, {"s": 1000}, {OTHER: 1000}])
def test_a_balanced_partition_still_lists_every_name_once(spread: dict[str, int]) -> None:
    predicates = [parse_filter(text) for text in shard_filters(3, spread) if text is not None]
    for name in ODD_NAMES + generated_names(2000):
        hits = [i for i, matches in enumerate(predicates) if matches({"Name": name})]
        assert len(hits) == 1, f"{name!r} is in shards {hits}"


def test_every_prefix_the_spread_counts_has_a_typical_weight_and_no_other_does() -> None:
    from auditor.core.spread import PREFIXES
    from auditor.exchange import shards

    assert ALPHABET == PREFIXES and set(shards._WEIGHTS) == set(PREFIXES)
