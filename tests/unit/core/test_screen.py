"""Screening of values read from Exchange: clean records pass untouched, a bad value anywhere
makes its record unknown and named (the one-pass check misses nothing)."""

from __future__ import annotations

import pytest

from auditor.core.model import Snapshot
from auditor.core.screen import MAX_FIELD, RECORD_SOURCE, screen
from tests.support.builders import cas, mbx, snapshot


def tenant(**bad: object) -> Snapshot:
    box = mbx(2)
    box.update(bad)
    return snapshot(org=False, cas_records=[cas(1, None), cas(2, None)], mailboxes=[mbx(1), box])


def test_clean_records_pass_untouched() -> None:
    clean = tenant()
    assert screen(clean) is clean


@pytest.mark.parametrize(
    "bad",
    [
        {"Alias": "bro\udc80ken"},
        {"UserPrincipalName": "x" * (MAX_FIELD + 1) + "@contoso.com"},
        {"EmailAddresses": ["SMTP:user2@contoso.com", "smtp:\ud800@contoso.com"]},
        # two lone surrogates in neighbouring fields: joined, they are still not text
        {"Alias": "a\ud800", "Name": "\udc00b"},
    ],
)
def test_a_bad_value_anywhere_makes_its_record_unknown_and_named(bad: dict[str, object]) -> None:
    screened = screen(tenant(**bad))
    assert screened.mailboxes is not None
    first, second = screened.mailboxes
    assert first.setting_present and not second.setting_present and second.setting is None
    named = [e for e in screened.errors if e.source.startswith(RECORD_SOURCE)]
    assert len(named) == 1
    for value in (second.alias, second.name, second.user_principal_name):
        if isinstance(value, str):
            value.encode("utf-8")
            assert len(value) <= MAX_FIELD
