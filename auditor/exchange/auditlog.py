"""Who changed SMTP AUTH: `Search-UnifiedAuditLog` through the Exchange admin endpoint.

One search session (a fixed `SessionId` with `SessionCommand ReturnLargeSet`, `ResultSize`
5000) over RecordType ExchangeAdmin and the operations Set-CASMailbox and Set-TransportConfig,
repeated until a call returns no rows, the last row's `ResultIndex` reaches its `ResultCount`,
or 50,000 rows (the service's cap for a session; more means the window must be split, and the
read is then refused as incomplete). ReturnLargeSet is unsorted and may repeat rows: records are
de-duplicated by AuditData.Id and sorted by time in `core.attribution`.

`read_changes` returns a `ChangeLog`: collected, or unknown with the reason (missing View-Only
Audit Logs role, a failed or cut read). It never raises for what Exchange answers.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from auditor.core.attribution import AdminChange, ChangeLog, merge_changes, parse_audit_record
from auditor.core.errors import AuditorError, PermissionDenied
from auditor.exchange.client import ExchangeClient

__all__ = ["SEARCH_CMDLET", "OPERATIONS", "MAX_SESSION_ROWS", "search_parameters", "read_changes"]

log = logging.getLogger(__name__)

SEARCH_CMDLET = "Search-UnifiedAuditLog"
OPERATIONS = ("Set-CASMailbox", "Set-TransportConfig")
RESULT_SIZE = 5000
MAX_SESSION_ROWS = 50_000


def _stamp(moment: datetime, *, up: bool = False) -> str:
    """Whole seconds (the cmdlet's resolution); `up` rounds an end up so it is included."""
    moment = moment.astimezone(UTC)
    if up and moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def search_parameters(start: datetime, end: datetime, session_id: str) -> dict[str, Any]:
    return {
        "StartDate": _stamp(start),
        "EndDate": _stamp(end, up=True),
        "RecordType": "ExchangeAdmin",
        "Operations": list(OPERATIONS),
        "SessionId": session_id,
        "SessionCommand": "ReturnLargeSet",
        "ResultSize": RESULT_SIZE,
    }


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_changes(
    client: ExchangeClient,
    *,
    start: datetime,
    end: datetime,
    session_id: str | None = None,
) -> ChangeLog:
    """Every audited change of SmtpClientAuthenticationDisabled from `start` to `end`."""
    session = session_id or f"smtp-auth-auditor-{uuid.uuid4()}"
    parameters = search_parameters(start, end, session)
    found: list[AdminChange] = []
    total = 0
    try:
        for _ in range(MAX_SESSION_ROWS // RESULT_SIZE + 1):
            rows = client.invoke(SEARCH_CMDLET, parameters)
            if not rows:
                break
            total += len(rows)
            for row in rows:
                change = parse_audit_record(row)
                if change is not None:
                    found.append(change)
            last = rows[-1]
            index, count = _int(last.get("ResultIndex")), _int(last.get("ResultCount"))
            if count is not None and count >= MAX_SESSION_ROWS:
                return ChangeLog(
                    "unknown",
                    f"{SEARCH_CMDLET}: {count} records in the window, more than a session "
                    "returns; narrow the window",
                    collected_at=end,
                    since=start,
                )
            if index is not None and count is not None and index >= count:
                break
        else:
            return ChangeLog(
                "unknown",
                f"{SEARCH_CMDLET}: the session did not end after {total} rows",
                collected_at=end,
                since=start,
            )
    except PermissionDenied as exc:
        return ChangeLog(
            "unknown",
            f"missing the View-Only Audit Logs role: {exc}",
            collected_at=end,
            since=start,
        )
    except AuditorError as exc:
        return ChangeLog("unknown", f"{SEARCH_CMDLET} failed: {exc}", collected_at=end, since=start)
    log.info("%s: %d rows, %d SMTP AUTH changes", SEARCH_CMDLET, total, len(found))
    return ChangeLog(
        "collected",
        collected_at=end,
        since=start,
        changes=merge_changes((), found, since=start),
    )
