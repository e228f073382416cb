"""Property: no mailbox that may use SMTP AUTH without a valid exception is ever passed or lost."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.core.model import Effective, Status
from auditor.core.policy import effective_state, evaluate
from auditor.core.snapshot import build_snapshot
from tests.support.builders import MISSING, NOT_COLLECTED, allowlist, cas, document, mbx

TODAY = date(2026, 11, 27)
SETTINGS = st.sampled_from([True, False, None, MISSING])
ORG = st.sampled_from([True, False, NOT_COLLECTED])
ENTRY = st.tuples(
    st.integers(0, 11),
    st.sampled_from(["guid", "address", "alias", "upn"]),
    st.sampled_from([None, "2026-11-26", "2026-11-27", "2027-01-01"]),
)


def identity(n: int, kind: str) -> str:
    return {
        "guid": f"00000000-0000-4000-8000-{n:012d}",
        "address": f"USER{n}@contoso.com",
        "alias": f"user{n}",
        "upn": f"u{n}@contoso.onmicrosoft.com",
    }[kind]


@settings(max_examples=300, deadline=None)
@given(
    org=ORG,
    values=st.lists(SETTINGS, min_size=0, max_size=10),
    entries=st.lists(ENTRY, max_size=6),
    shared_name=st.booleans(),
)
def test_enabled_and_not_validly_allowlisted_always_fails(
    org: object, values: list[object], entries: list[tuple[int, str, str | None]], shared_name: bool
) -> None:
    records = [cas(n, value) for n, value in enumerate(values)]
    if shared_name and len(records) > 1:
        records[1]["Name"] = records[0]["Name"]  # makes "user0" ambiguous
    doc = document(org=org, cas_records=records, mailboxes=[mbx(n) for n in range(len(values))])
    snap = build_snapshot(doc)
    rows = ["Identity,Expires"] + [f"{identity(n, k)},{e or ''}" for n, k, e in entries]
    allow = allowlist("\n".join(rows) + "\n", csv_format=True)
    evaluation = evaluate(snap, allow, TODAY, evaluated_at=datetime(2026, 11, 27, tzinfo=UTC))

    # Duplicate entries: the first one is kept (and a warning given).
    kept = list({identity(n, k).lower(): (n, k, e) for n, k, e in reversed(entries)}.values())
    mailbox_findings = {
        f.mailbox.guid: f
        for f in evaluation.findings
        if f.control == "SMTPAUTH-MAILBOX" and f.mailbox
    }
    org_value = None if org is NOT_COLLECTED else org
    assert snap.mailboxes is not None
    for mailbox in snap.mailboxes:
        state, _ = effective_state(mailbox.setting, mailbox.setting_present, org_value)  # type: ignore[arg-type]
        finding = mailbox_findings.get(mailbox.guid)
        if state is Effective.DISABLED:
            assert finding is None
            continue
        # Never absent, never pass.
        assert finding is not None
        assert finding.status is not Status.PASS
        if state is Effective.UNKNOWN:
            assert finding.status is Status.UNKNOWN
            continue
        ambiguous = "user0" if shared_name and len(values) > 1 else None
        valid = [
            (n, k, e)
            for n, k, e in kept
            if identity(n, k).lower() in mailbox.match_keys
            and identity(n, k).lower() != ambiguous
            and (e is None or e >= "2026-11-27")
        ]
        assert finding.status is (Status.EXEMPT if valid else Status.FAIL)
    assert evaluation.counts["mailboxes"] == len(values)
    if any(f.status is Status.FAIL for f in evaluation.findings):
        assert evaluation.exit_code() == 1
