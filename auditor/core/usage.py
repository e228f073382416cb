"""PURE: who really used SMTP AUTH, from Entra sign-in records (docs/usage-evidence in README).

The Graph adapter (`auditor.graph.signins`) reads the sign-in log; this module turns its records
into `UsageEvidence` (collected, unknown with a reason, or off) and matches them to mailboxes:
by `userId` = the mailbox's `ExternalDirectoryObjectId` first, then by user principal name
(case-insensitive). Only `status.errorCode == 0` is a use; failures are counted apart.

No clock, no network: the window's end (`collected_at`) and start are data, so stored usage
evidence is judged the same way when a run is replayed.

What the sign-in log can tell: that a user signed in with the legacy "Authenticated SMTP"
client (basic-auth SMTP submission). What it cannot: an OAuth (XOAUTH2) SMTP session shows up
as an ordinary modern sign-in of the client app, and an app-only one not at all in v1.0, so
"no Authenticated SMTP sign-in" means "no basic-auth SMTP AUTH use seen", not "no SMTP use".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from auditor.core.model import Mailbox, MailboxUsage, Readiness

__all__ = [
    "SMTP_CLIENT_APPS",
    "SIGNIN_RETENTION_DAYS",
    "DEFAULT_LOOKBACK_DAYS",
    "USAGE_SCHEMA",
    "UsageState",
    "SignIn",
    "MailboxUsage",
    "UsageEvidence",
    "parse_signin",
    "merge_signins",
    "match_usage",
    "UsageMatch",
    "encode_usage",
    "decode_usage",
    "break_note",
    "BREAK_PREFIX",
    "window_start",
    "readiness_text",
]

# `clientAppUsed` values of basic-auth SMTP submission ("Authenticated SMTP" in the portal and
# the API; some tenants and older tools see "SMTP").
SMTP_CLIENT_APPS = ("Authenticated SMTP", "SMTP")
SIGNIN_RETENTION_DAYS = 30  # Entra ID P1/P2 keep sign-ins 30 days
DEFAULT_LOOKBACK_DAYS = 30
USAGE_SCHEMA = "smtp-auth-signins/1"
BREAK_PREFIX = "will break: "


class UsageState(StrEnum):
    COLLECTED = "collected"
    UNKNOWN = "unknown"  # the sign-in log could not be read: never "no use"
    OFF = "off"  # USAGE_EVIDENCE is false: no usage control is judged


@dataclass(frozen=True, slots=True)
class SignIn:
    """One SMTP AUTH sign-in, reduced to what is judged and shown."""

    id: str
    at: datetime
    user_id: str | None
    upn: str | None
    ip: str | None
    app: str | None
    client_app: str
    error_code: int
    failure: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_code == 0


@dataclass(frozen=True, slots=True)
class UsageEvidence:
    """The sign-in evidence of one run: `signins` from `since` to `collected_at`.

    `state` unknown carries `reason` (licence, permission, throttled, broken page): the absence
    of a sign-in then proves nothing. `lookback_days` is the judged window.
    """

    state: UsageState
    reason: str = ""
    collected_at: datetime | None = None
    since: datetime | None = None
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    signins: tuple[SignIn, ...] = ()
    pages: int = 0
    source: str = "Graph sign-in log (auditLogs/signIns)"

    @classmethod
    def off(cls) -> UsageEvidence:
        return cls(UsageState.OFF, "USAGE_EVIDENCE is false")

    @classmethod
    def unknown(
        cls, reason: str, *, collected_at: datetime | None = None, lookback_days: int = 30
    ) -> UsageEvidence:
        return cls(
            UsageState.UNKNOWN, reason, collected_at=collected_at, lookback_days=lookback_days
        )

    @property
    def window_start(self) -> datetime | None:
        if self.collected_at is None:
            return None
        return window_start(self.collected_at, self.lookback_days)


def window_start(now: datetime, lookback_days: int) -> datetime:
    """The start of the judged window: `lookback_days` back, never past the log's retention."""
    return now - timedelta(days=min(lookback_days, SIGNIN_RETENTION_DAYS))


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Graph writes 7 fractional digits; fromisoformat takes up to 6.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_signin(record: Mapping[str, Any]) -> SignIn | None:
    """A Graph `signIn` resource as a `SignIn`; None when it is not an SMTP AUTH sign-in or
    lacks an id or a time (it cannot be placed, so it is not counted)."""
    client_app = _text(record.get("clientAppUsed"))
    if client_app is None or client_app.lower() not in {a.lower() for a in SMTP_CLIENT_APPS}:
        return None
    at = _time(record.get("createdDateTime"))
    sid = _text(record.get("id"))
    if at is None or sid is None:
        return None
    status = record.get("status")
    code: Any = status.get("errorCode") if isinstance(status, Mapping) else None
    try:
        error_code = int(code)
    except (TypeError, ValueError):
        error_code = -1  # no readable status: never a success
    failure = _text(status.get("failureReason")) if isinstance(status, Mapping) else None
    upn = _text(record.get("userPrincipalName"))
    user_id = _text(record.get("userId"))
    return SignIn(
        id=sid,
        at=at,
        user_id=user_id.lower() if user_id else None,
        upn=upn.lower() if upn else None,
        ip=_text(record.get("ipAddress")),
        app=_text(record.get("appDisplayName")),
        client_app=client_app,
        error_code=error_code,
        failure=failure,
    )


def merge_signins(
    previous: Iterable[SignIn], new: Iterable[SignIn], *, since: datetime
) -> tuple[SignIn, ...]:
    """The previous run's sign-ins and the new ones, de-duplicated by id, none before `since`,
    newest first."""
    by_id: dict[str, SignIn] = {}
    for signin in (*previous, *new):
        if signin.at >= since:
            by_id[signin.id] = signin
    return tuple(sorted(by_id.values(), key=lambda s: (s.at, s.id), reverse=True))


@dataclass(slots=True)
class _Tally:
    successes: int = 0
    failures: int = 0
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_ip: str | None = None
    last_app: str | None = None
    last_any: datetime | None = None
    any_ip: str | None = None
    any_app: str | None = None


@dataclass(frozen=True, slots=True)
class UsageMatch:
    """Per-mailbox usage (keyed by `Mailbox.key`) and the sign-ins that matched no mailbox."""

    by_mailbox: dict[str, MailboxUsage] = field(default_factory=dict)
    unmatched: int = 0

    def of(self, mailbox: Mailbox) -> MailboxUsage | None:
        return self.by_mailbox.get(mailbox.key)


def match_usage(
    evidence: UsageEvidence, mailboxes: Sequence[Mailbox], *, since: datetime | None = None
) -> UsageMatch:
    """Match the sign-ins in the window to mailboxes: object id first, then UPN."""
    start = since or evidence.window_start
    by_oid: dict[str, Mailbox] = {}
    by_upn: dict[str, Mailbox] = {}
    for mailbox in mailboxes:
        if mailbox.external_directory_object_id:
            by_oid.setdefault(mailbox.external_directory_object_id.lower(), mailbox)
        if mailbox.user_principal_name:
            by_upn.setdefault(mailbox.user_principal_name.lower(), mailbox)
    tallies: dict[str, _Tally] = {}
    unmatched = 0
    for signin in evidence.signins:
        if start is not None and signin.at < start:
            continue
        found = (by_oid.get(signin.user_id) if signin.user_id else None) or (
            by_upn.get(signin.upn) if signin.upn else None
        )
        if found is None:
            unmatched += 1
            continue
        tally = tallies.setdefault(found.key, _Tally())
        if signin.succeeded:
            tally.successes += 1
            if tally.last_success is None or signin.at > tally.last_success:
                tally.last_success = signin.at
                tally.last_ip, tally.last_app = signin.ip, signin.app
        else:
            tally.failures += 1
            if tally.last_failure is None or signin.at > tally.last_failure:
                tally.last_failure = signin.at
        if tally.last_any is None or signin.at > tally.last_any:
            tally.last_any, tally.any_ip, tally.any_app = signin.at, signin.ip, signin.app
    return UsageMatch(
        {
            key: MailboxUsage(
                key=key,
                successes=t.successes,
                failures=t.failures,
                last_success=t.last_success,
                last_failure=t.last_failure,
                # The last successful use's client; with none, the last attempt's.
                last_ip=t.last_ip if t.last_success else t.any_ip,
                last_app=t.last_app if t.last_success else t.any_app,
            )
            for key, t in tallies.items()
        },
        unmatched,
    )


def _stamp(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def break_note(usage: MailboxUsage) -> str:
    """`will break: last used 2026-11-30 14:02 UTC, from 203.0.113.7 (App)` for a target."""
    assert usage.last_success is not None
    origin = usage.last_ip or "an unknown address"
    app = f" ({usage.last_app})" if usage.last_app else ""
    return (
        f"{BREAK_PREFIX}last used {_stamp(usage.last_success)}, from {origin}{app}; "
        f"{usage.successes} SMTP AUTH sign-in(s) in the window"
    )


# -- stored form (`smtp-auth-signins/1`), kept with the run so show/replay carry it ------------


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def encode_usage(evidence: UsageEvidence) -> bytes:
    document = {
        "schema": USAGE_SCHEMA,
        "state": evidence.state.value,
        "reason": evidence.reason,
        "collected_at": _iso(evidence.collected_at),
        "since": _iso(evidence.since),
        "lookback_days": evidence.lookback_days,
        "pages": evidence.pages,
        "source": evidence.source,
        "signins": [
            {
                "id": s.id,
                "createdDateTime": _iso(s.at),
                "userId": s.user_id,
                "userPrincipalName": s.upn,
                "ipAddress": s.ip,
                "appDisplayName": s.app,
                "clientAppUsed": s.client_app,
                "status": {"errorCode": s.error_code, "failureReason": s.failure},
            }
            for s in evidence.signins
        ],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_usage(data: bytes) -> UsageEvidence:
    """The stored form back; a document that is not `smtp-auth-signins/1` is a ValueError."""
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("schema") != USAGE_SCHEMA:
        raise ValueError(f"not a {USAGE_SCHEMA} document")
    signins = tuple(
        s
        for s in (parse_signin(r) for r in document.get("signins") or () if isinstance(r, dict))
        if s is not None
    )
    return UsageEvidence(
        state=UsageState(document.get("state", "unknown")),
        reason=str(document.get("reason") or ""),
        collected_at=_time(document.get("collected_at")),
        since=_time(document.get("since")),
        lookback_days=int(document.get("lookback_days") or DEFAULT_LOOKBACK_DAYS),
        signins=signins,
        pages=int(document.get("pages") or 0),
        source=str(document.get("source") or ""),
    )


def readiness_text(readiness: Readiness | None) -> str:
    """One line for reports, cards and mails: the readiness, or why it is not known."""
    r = readiness
    if r is None or r.state == UsageState.OFF.value:
        return "usage evidence: off"
    if r.state != UsageState.COLLECTED.value:
        return f"usage evidence: unknown ({r.reason})"
    return (
        f"SMTP AUTH sign-ins in the last {r.lookback_days} days: {r.used} mailbox(es) used it, "
        f"{r.used_allowlisted} allowlisted, {r.used_not_allowlisted} not allowlisted; "
        f"{r.break_at_org_switch} will break at the organisation switch, "
        f"{r.break_at_revocation} at the mailbox revocation; {r.stale_exceptions} stale "
        "exception(s)"
    )
