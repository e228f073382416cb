"""PURE: who changed SmtpClientAuthenticationDisabled, from the unified audit log.

`exchange.auditlog` reads `Search-UnifiedAuditLog` (RecordType ExchangeAdmin, Operations
Set-CASMailbox and Set-TransportConfig) and keeps the records whose `Parameters` touch
`SmtpClientAuthenticationDisabled` as `AdminChange`s, in a `ChangeLog` kept with each run (the
`auditlog` blob, `smtp-auth-auditlog/1`). `attribute` joins one recorded history change (a
mailbox's or the organisation's, seen in the run `seen_at`, absent at the run before,
`after`) to the record that made it:

- a successful record for that object, between the two runs, whose value is the one observed:
  "changed by alice@contoso.com at 14:02 UTC (from 203.0.113.5)";
- none yet, while the log was read less than `LAG` after the change: "pending" (audit records
  typically arrive 60-90 minutes late, with no guarantee), so a later run annotates it;
- a log that was not read (refused, failed) since the change, or no matching record long after:
  "unknown", with the reason. An attribution is never guessed: a record for another value or
  outside the window is not used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from auditor.core.model import Setting

__all__ = [
    "AUDITLOG_SCHEMA",
    "LAG",
    "AdminChange",
    "ChangeLog",
    "Attribution",
    "parse_audit_record",
    "merge_changes",
    "attribute",
    "encode_changelog",
    "decode_changelog",
]

AUDITLOG_SCHEMA = "smtp-auth-auditlog/1"
SETTING = "SmtpClientAuthenticationDisabled"
LAG = timedelta(hours=24)  # how long a missing audit record is "pending", not "unknown"
ORGANISATION = "organisation"


@dataclass(frozen=True, slots=True)
class AdminChange:
    """One audited Set-CASMailbox / Set-TransportConfig that set the SMTP AUTH property.

    `target` is the cmdlet's Identity (or the record's ObjectId), lower-cased; "organisation"
    for Set-TransportConfig. `value` is the value set (True = blocked, None = inherit)."""

    id: str
    at: datetime
    actor: str
    operation: str
    target: str
    value: bool | None
    client_ip: str | None = None
    succeeded: bool = True


@dataclass(frozen=True, slots=True)
class ChangeLog:
    """The audit-log evidence of one run: `collected` or `unknown` with the reason."""

    state: str  # "collected" or "unknown"
    reason: str = ""
    collected_at: datetime | None = None
    since: datetime | None = None
    changes: tuple[AdminChange, ...] = ()


@dataclass(frozen=True, slots=True)
class Attribution:
    state: str  # "attributed", "pending" or "unknown"
    actor: str | None = None
    at: datetime | None = None
    client_ip: str | None = None
    reason: str = ""

    def text(self, verb: str = "changed") -> str:
        """The phrase every reader shows (history, check, the alert): "changed by alice@… at
        14:02 UTC"; `verb` says what the change did where the reader knows it (the alert says
        "enabled by" on a new violation)."""
        if self.state == "attributed" and self.at is not None:
            origin = f" (from {self.client_ip})" if self.client_ip else ""
            return f"{verb} by {self.actor} at {self.at.astimezone(UTC):%H:%M} UTC{origin}"
        if self.state == "pending":
            return f"{verb} by: not yet in the audit log ({self.reason})"
        return f"{verb} by: unknown ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "actor": self.actor,
            "at": _iso(self.at),
            "client_ip": self.client_ip,
            "reason": self.reason or None,
            "text": self.text(),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # at most 6 fractional digits for fromisoformat
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    # AuditData CreationTime is UTC without a zone suffix.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _value(raw: Any) -> tuple[bool, bool | None]:
    """(understood, value) of a Parameters value: "True"/"False"/"" (= $null, inherit)."""
    if raw is None or isinstance(raw, bool):
        return True, raw
    text = str(raw).strip().lower().lstrip("$")
    if text in ("", "null"):
        return True, None
    if text in ("true", "false"):
        return True, text == "true"
    return False, None


def parse_audit_record(row: Mapping[str, Any]) -> AdminChange | None:
    """A Search-UnifiedAuditLog row (its AuditData a JSON string, or already an object) as an
    `AdminChange`; None when it does not set SmtpClientAuthenticationDisabled or cannot be
    placed (no id, time or operation)."""
    data: Any = row.get("AuditData", row)
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if not isinstance(data, Mapping):
        return None
    operation = str(data.get("Operation") or row.get("Operations") or "")
    parameters = data.get("Parameters")
    if not isinstance(parameters, list):
        return None
    named = {
        str(p.get("Name", "")).lower(): p.get("Value") for p in parameters if isinstance(p, Mapping)
    }
    if SETTING.lower() not in named:
        return None
    understood, value = _value(named[SETTING.lower()])
    at = _time(data.get("CreationTime")) or _time(row.get("CreationDate"))
    rid = str(data.get("Id") or row.get("Identity") or "")
    if not understood or at is None or not rid or not operation:
        return None
    if operation.lower() == "set-transportconfig":
        target = ORGANISATION
    else:
        target = str(named.get("identity") or data.get("ObjectId") or "").strip().lower()
        if not target:
            return None
    ip = str(data.get("ClientIP") or "").strip() or None
    return AdminChange(
        id=rid,
        at=at,
        actor=str(data.get("UserId") or row.get("UserIds") or "unknown"),
        operation=operation,
        target=target,
        value=value,
        client_ip=ip,
        succeeded=str(data.get("ResultStatus", "True")).lower() in ("true", "succeeded", ""),
    )


def merge_changes(
    previous: Iterable[AdminChange], new: Iterable[AdminChange], *, since: datetime
) -> tuple[AdminChange, ...]:
    """De-duplicated by record id (ReturnLargeSet repeats rows), none before `since`, oldest
    first."""
    by_id = {c.id: c for c in (*previous, *new) if c.at >= since}
    return tuple(sorted(by_id.values(), key=lambda c: (c.at, c.id)))


def attribute(
    log: ChangeLog | None,
    *,
    identities: Iterable[str],
    after: bool | None,
    after_known: bool,
    previous_run_at: datetime | None,
    seen_at: datetime,
    organisation: bool = False,
) -> Attribution:
    """Who made the change seen at `seen_at` (absent at `previous_run_at`). See the module."""
    if previous_run_at is None:
        return Attribution("unknown", reason="first observation: there is no change to attribute")
    if log is None:
        return Attribution("unknown", reason="the audit log was not read")
    if log.state != "collected" or log.collected_at is None:
        return Attribution("unknown", reason=f"the audit log read failed: {log.reason}")
    if not after_known:
        return Attribution("unknown", reason="the new value is not known")
    names = {ORGANISATION} if organisation else {i.strip().lower() for i in identities if i}
    candidates = [
        c
        for c in log.changes
        if c.succeeded
        and c.target in names
        and previous_run_at < c.at <= seen_at
        and c.value is after
    ]
    if candidates:
        last = max(candidates, key=lambda c: c.at)
        return Attribution("attributed", actor=last.actor, at=last.at, client_ip=last.client_ip)
    if log.since is not None and log.since > previous_run_at:
        return Attribution("unknown", reason="the audit log read does not reach back to it")
    if log.collected_at - seen_at < LAG:
        return Attribution(
            "pending", reason=f"audit records can take up to {int(LAG.total_seconds() // 3600)} h"
        )
    return Attribution(
        "unknown",
        reason=f"no audit record of this change ({Setting.text(after)}) was found",
    )


def encode_changelog(log: ChangeLog) -> bytes:
    return json.dumps(
        {
            "schema": AUDITLOG_SCHEMA,
            "state": log.state,
            "reason": log.reason,
            "collected_at": _iso(log.collected_at),
            "since": _iso(log.since),
            "changes": [
                {
                    "id": c.id,
                    "at": _iso(c.at),
                    "actor": c.actor,
                    "operation": c.operation,
                    "target": c.target,
                    "value": c.value,
                    "client_ip": c.client_ip,
                    "succeeded": c.succeeded,
                }
                for c in log.changes
            ],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def decode_changelog(data: bytes) -> ChangeLog:
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("schema") != AUDITLOG_SCHEMA:
        raise ValueError(f"not a {AUDITLOG_SCHEMA} document")
    changes: list[AdminChange] = []
    for c in document.get("changes") or ():
        at = _time(c.get("at"))
        if at is None:
            continue
        changes.append(
            AdminChange(
                id=str(c["id"]),
                at=at,
                actor=str(c.get("actor") or "unknown"),
                operation=str(c.get("operation") or ""),
                target=str(c.get("target") or ""),
                value=c.get("value"),
                client_ip=c.get("client_ip"),
                succeeded=bool(c.get("succeeded", True)),
            )
        )
    return ChangeLog(
        state=str(document.get("state") or "unknown"),
        reason=str(document.get("reason") or ""),
        collected_at=_time(document.get("collected_at")),
        since=_time(document.get("since")),
        changes=tuple(changes),
    )
