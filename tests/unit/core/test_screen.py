"""Screening of values read from Exchange: clean records pass untouched, a bad value anywhere
makes its record unknown and named (the one-pass check misses nothing)."""

from __future__ import annotations

from dataclasses import replace

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


def test_the_join_checks_every_mailbox_as_it_builds_it() -> None:
    assert tenant().screened is not None and tenant().screened.unclean == ()
    bad = tenant(Alias="bro\udc80ken")
    assert bad.screened is not None and bad.screened.mailboxes is bad.mailboxes
    assert bad.screened.unclean == (1,)


def test_mailboxes_built_without_a_partner_are_checked_too() -> None:
    # A CAS record with no Get-Mailbox record, and a Get-Mailbox record with no CAS record:
    # both are built when the join finishes, not as pages arrive.
    lonely = snapshot(
        org=False,
        cas_records=[cas(1, None), cas(2, None, Name="x" * (MAX_FIELD + 5))],
        mailboxes=[mbx(1), mbx(3, Alias="a\ud800")],
    )
    assert lonely.screened is not None and sorted(lonely.screened.unclean) == [1, 2]
    screened = screen(lonely)
    assert screened.mailboxes is not None
    assert [m.setting_present for m in screened.mailboxes] == [True, False, False]
    assert len([e for e in screened.errors if e.source.startswith(RECORD_SOURCE)]) == 2


def test_a_snapshot_whose_mailboxes_were_replaced_is_screened_whole() -> None:
    clean, bad = tenant(), tenant(Alias="bro\udc80ken")
    assert clean.mailboxes is not None and bad.mailboxes is not None
    # The join's record belongs to the clean tuple: the new one is checked record by record.
    swapped = replace(clean, mailboxes=(clean.mailboxes[0], bad.mailboxes[1]))
    screened = screen(swapped)
    assert screened.mailboxes is not None and not screened.mailboxes[1].setting_present
    assert screened.screened is None
