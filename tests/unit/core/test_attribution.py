"""Who changed it: audit records parsed, joined to a change, pending while they lag, never
guessed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from auditor.core.attribution import (
    AdminChange,
    ChangeLog,
    attribute,
    decode_changelog,
    encode_changelog,
    merge_changes,
    parse_audit_record,
)

PREV = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
SEEN = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
AT = datetime(2026, 11, 26, 14, 2, 7, tzinfo=UTC)


def row(value: str, *, identity: str = "scanner2@contoso.com", op: str = "Set-CASMailbox",
        when: datetime = AT, status: str = "True", rid: str = "r1") -> dict[str, Any]:  # fmt: skip
    parameters = [{"Name": "SmtpClientAuthenticationDisabled", "Value": value}]
    if op == "Set-CASMailbox":
        parameters.insert(0, {"Name": "Identity", "Value": identity})
    data = {
        "CreationTime": when.strftime("%Y-%m-%dT%H:%M:%S"),
        "Id": rid,
        "Operation": op,
        "RecordType": 1,
        "ResultStatus": status,
        "UserId": "alice@contoso.com",
        "ClientIP": "203.0.113.5",
        "ObjectId": "scanner2",
        "Parameters": parameters,
    }
    return {"RecordType": "ExchangeAdmin", "AuditData": json.dumps(data), "ResultIndex": 1}


def test_parse_reads_value_actor_time_and_target() -> None:
    change = parse_audit_record(row("False"))
    assert change == AdminChange(
        id="r1",
        at=AT,
        actor="alice@contoso.com",
        operation="Set-CASMailbox",
        target="scanner2@contoso.com",
        value=False,
        client_ip="203.0.113.5",
    )
    inherit = parse_audit_record(row(""))
    assert inherit is not None and inherit.value is None  # "" is $null: back to the org value
    org = parse_audit_record(row("True", op="Set-TransportConfig"))
    assert org is not None and org.target == "organisation" and org.value is True
    other = row("False")
    data = json.loads(other["AuditData"])
    data["Parameters"] = [{"Name": "PopEnabled", "Value": "False"}]
    assert parse_audit_record({"AuditData": json.dumps(data)}) is None
    assert parse_audit_record({"AuditData": "{not json"}) is None


def log(*changes: AdminChange, at: datetime = SEEN + timedelta(hours=1)) -> ChangeLog:
    return ChangeLog("collected", collected_at=at, since=PREV - timedelta(days=30), changes=changes)


def who(changes: ChangeLog | None, after: bool | None = False, **kw: Any) -> str:
    return attribute(
        changes,
        identities=kw.pop("identities", {"scanner2@contoso.com", "guid-2"}),
        after=after,
        after_known=True,
        previous_run_at=kw.pop("previous", PREV),
        seen_at=SEEN,
        **kw,
    ).text()


def test_attributed_to_the_record_in_the_window_with_the_observed_value() -> None:
    change = parse_audit_record(row("False"))
    assert change is not None
    assert who(log(change)) == "changed by alice@contoso.com at 14:02 UTC (from 203.0.113.5)"
    org = parse_audit_record(row("True", op="Set-TransportConfig", rid="r2"))
    assert org is not None
    assert who(log(org), True, identities=(), organisation=True).startswith(
        "changed by alice@contoso.com at 14:02 UTC"
    )


def test_never_guessed() -> None:
    wrong_value = parse_audit_record(row("True"))
    too_early = parse_audit_record(row("False", when=PREV - timedelta(minutes=1), rid="r3"))
    other_box = parse_audit_record(row("False", identity="printer@contoso.com", rid="r4"))
    failed = parse_audit_record(row("False", status="False", rid="r5"))
    candidates = [c for c in (wrong_value, too_early, other_box, failed) if c is not None]
    assert len(candidates) == 4
    text = who(log(*candidates, at=SEEN + timedelta(days=3)))
    assert text == "changed by: unknown (no audit record of this change (false) was found)"


def test_lag_is_pending_then_annotated_by_a_later_log() -> None:
    early = log(at=SEEN + timedelta(minutes=5))  # the record is not searchable yet
    assert who(early) == "changed by: not yet in the audit log (audit records can take up to 24 h)"
    change = parse_audit_record(row("False"))
    assert change is not None
    later = log(change, at=SEEN + timedelta(days=1))
    assert who(later).startswith("changed by alice@contoso.com at 14:02 UTC")


def test_failed_or_missing_reads_are_unknown() -> None:
    refused = ChangeLog("unknown", "missing the View-Only Audit Logs role: ...")
    assert who(refused) == (
        "changed by: unknown (the audit log read failed: missing the View-Only Audit Logs "
        "role: ...)"
    )
    assert who(None) == "changed by: unknown (the audit log was not read)"
    assert who(log(), previous=None).startswith("changed by: unknown (first observation")


def test_stored_form_round_trips_and_dedupes() -> None:
    change = parse_audit_record(row("False"))
    assert change is not None
    merged = merge_changes([change], [change], since=PREV - timedelta(days=1))
    assert merged == (change,)
    kept = log(*merged)
    assert decode_changelog(encode_changelog(kept)) == kept
