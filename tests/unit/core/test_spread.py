"""The names per first character that balance a sharded read (core.spread)."""

from __future__ import annotations

import pytest

from auditor.core.spread import OTHER, name_spread, read_spread
from tests.support.builders import cas, snapshot


def spread_of(*names: str | None) -> dict[str, int]:
    records = [cas(n, Name=name) for n, name in enumerate(names)]
    parsed = snapshot(cas_records=records).mailboxes
    assert parsed is not None
    return name_spread(parsed)


def test_names_are_counted_by_their_lower_cased_first_character() -> None:
    assert spread_of("alex", "Ana", "sam", "9lives", "Zoë") == {"9": 1, "a": 2, "s": 1, "z": 1}


def test_a_start_no_prefix_can_name_is_counted_as_other() -> None:
    # Other scripts, accents, symbols: the complement shard lists them.
    assert spread_of("Émile", "李雷", "*star", "-dash", "'quoted'") == {OTHER: 5}


def test_a_mailbox_without_a_name_is_counted_as_other() -> None:
    # The record's Name is absent: the snapshot falls back to nothing for `name`.
    records = [cas(1), {k: v for k, v in cas(2).items() if k not in ("Name", "Identity")}]
    parsed = snapshot(cas_records=records).mailboxes
    assert parsed is not None
    assert name_spread(parsed) == {"u": 1, OTHER: 1}


def test_a_stored_spread_reads_back() -> None:
    stored = {"a": 3, "b": 0, OTHER: 2}
    assert read_spread(stored) == stored


def test_keys_no_prefix_names_fold_into_other() -> None:
    assert read_spread({"é": 2, "x": 1, OTHER: 1}) == {OTHER: 3, "x": 1}


@pytest.mark.parametrize(
    "value",
    [None, "a", 3, ["a", 1], {"a": -1}, {"a": 1.5}, {"a": True}, {"a": "3"}, {1: 2}],
)
def test_anything_else_reads_as_no_spread(value: object) -> None:
    assert read_spread(value) == {}
