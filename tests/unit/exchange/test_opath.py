"""The OPATH subset the emulator reads (devkit/emulator/opath.py)."""

from __future__ import annotations

import pytest

from devkit.emulator.opath import FilterError, parse_filter


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        ("Name -like 'a*'", "alex", True),
        ("Name -like 'a*'", "ALEX", True),  # case-insensitive, as Exchange
        ("Name -like 'a*'", "sam", False),
        ("Name -like '*x'", "alex", True),
        ("Name -like 'a*x'", "alex", True),
        ("Name -like 'alex'", "alex", True),
        ("Name -like 'alex'", "alexa", False),
        ("Name -notlike 'a*'", "sam", True),
        ("Name -eq 'Alex'", "alex", True),
        ("Name -ne 'alex'", "alex", False),
        ("name -LIKE 'a*' -OR Name -like 's*'", "sam", True),
        ("Name -like 'a*' -and Name -like '*x'", "alex", True),
        ("Name -like 'a*' -and Name -like '*y'", "alex", False),
        ("-not (Name -like 'a*' -or Name -like 's*')", "kim", True),
        ("-not (Name -like 'a*' -or Name -like 's*')", "Sam", False),
        ("-not Name -like 'a*'", "kim", True),
        ("(Name -like 'k*')", "kim", True),
        ("Name -eq 'O''Brien'", "O'Brien", True),
        ('Name -eq "say ""hi"""', 'say "hi"', True),
        ("Name -like 'a.b*'", "axb", False),  # only * is a wildcard
        ("Name -like 'a*' -or Name -like 'b*' -and Name -like '*z'", "alex", True),  # -and first
    ],
)
def test_evaluates(text: str, name: str, expected: bool) -> None:
    assert parse_filter(text)({"Name": name}) is expected


def test_a_missing_property_matches_no_comparison_and_every_negation() -> None:
    assert parse_filter("Name -like '*'")({}) is False
    assert parse_filter("-not (Name -like '*')")({}) is True
    assert parse_filter("Name -ne 'x'")({"Name": None}) is True


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Name",
        "Name -like",
        "Name -gt 'a'",
        "Name -like a*",
        "(Name -like 'a*'",
        "Name -like 'a*')",
        "Name -like 'a*' Name -like 'b*'",
        "Name -like 'a*' -or",
        "-not",
        "Name -like 'unterminated",
        "{Name -like 'a*'}",
    ],
)
def test_refuses_what_it_does_not_read(text: str) -> None:
    with pytest.raises(FilterError, match="at position"):
        parse_filter(text)


@pytest.mark.parametrize(
    "clauses",
    [
        ["Name -like 'a*'", "Name -like 's*'", "Name -like '*x'", "Name -like 'k*m'"],
        ["Name -like 'a*'", "Name -eq 'sam'"],  # not all -like: evaluated clause by clause
        ["Name -like 'a*'", "Alias -like 's*'"],  # two properties
        ["Name -like '*'", "Name -like 'É*'", "Name -like '''*'"],
    ],
)
def test_a_disjunction_matches_what_its_clauses_match_one_by_one(clauses: list[str]) -> None:
    # The emulator reads `Name -like 'a*' -or ...` (a sharded read's filter) as one regular
    # expression: it must list exactly the records the clauses would, one by one.
    joined = parse_filter(" -or ".join(clauses))
    negated = parse_filter(f"-not ({' -or '.join(clauses)})")
    singles = [parse_filter(clause) for clause in clauses]
    names = ["alex", "ALEX", "sam", "Sam", "kim", "kXm", "max", "Émile", "émile", "'q", "", "\n"]
    for record in [{"Name": n, "Alias": n[::-1]} for n in names] + [{}, {"Name": None}]:
        expected = any(single(record) for single in singles)
        assert joined(record) is expected, (clauses, record)
        assert negated(record) is not expected, (clauses, record)
