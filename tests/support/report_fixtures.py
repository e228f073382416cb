"""A tenant shaped like the demo's, for report, alert and page tests: the organisation allows
SMTP AUTH (the root cause), most mailboxes inherit it, a few are enabled explicitly, one has an
expired exception, one an expiring one, the allowlist has an unmatched and an ambiguous entry,
and one mailbox has no readable setting."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from auditor.core.model import Evaluation
from auditor.core.policy import evaluate
from tests.support.builders import MISSING, allowlist, cas, mbx, snapshot

TODAY = date(2026, 11, 26)
EVALUATED_AT = datetime(2026, 11, 26, 2, 5, tzinfo=UTC)
TYPES = ("UserMailbox", "SharedMailbox", "RoomMailbox", "EquipmentMailbox")

ALLOWLIST_CSV = (
    "Identity,Owner,Reason,Ticket,Expires\n"
    "user1@contoso.com,ops@contoso.com,scanner,CHG-1,2026-12-31\n"
    "user2@contoso.com,ops@contoso.com,printer,CHG-2,2026-11-01\n"
    "user3@contoso.com,ops@contoso.com,app,CHG-3,2026-11-30\n"
    "nobody@contoso.com,ops@contoso.com,old app,CHG-4,\n"
)


def demo_evaluation(inherited: int = 300, explicit: int = 4) -> Evaluation:
    cas_records: list[dict[str, Any]] = []
    mailboxes: list[dict[str, Any]] = []
    n = 0
    for _ in range(explicit):
        n += 1
        cas_records.append(cas(n, False))
        mailboxes.append(mbx(n))
    for i in range(inherited):
        n += 1
        cas_records.append(cas(n, None))
        mailboxes.append(mbx(n, TYPES[i % len(TYPES)]))
    n += 1
    cas_records.append(cas(n, MISSING))
    mailboxes.append(mbx(n))
    for _ in range(5):
        n += 1
        cas_records.append(cas(n, True))
        mailboxes.append(mbx(n))
    snap = snapshot(org=False, cas_records=cas_records, mailboxes=mailboxes)
    allow = allowlist(ALLOWLIST_CSV, csv_format=True)
    return evaluate(snap, allow, TODAY, evaluated_at=EVALUATED_AT)
