"""Deliver an `Alert`: Teams Workflows webhook and Graph sendMail, each at most once per run.

The shell around the pure `alerts.decide`, `teams.build_message` and `mail.build_email`:

- Each channel is tried on its own: one failing is logged and recorded and never stops the other
  nor fails the audit. `deliver` does not raise for a channel failure; it returns a
  `DeliveryReport` the run records.
- Bounded retries and redaction: every POST goes through `auditor.alerts.post.post`.
- At most once per run: before sending, the ledger is asked what this run already delivered; a
  channel recorded `sent` is skipped (a retried Function invocation does not re-send). If the
  ledger cannot be read the alert is sent anyway: a duplicate is better than silence. A crash
  between the send and its record can still re-send once (at-least-once).
- Secrets (the webhook URL, which carries a signature, and the Graph token) never reach a log
  line, a report or an exception message: every text leaving this module is redacted.
- No channel configured is not an error: the report says so.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from auditor.alerts.decide import Alert
from auditor.alerts.mail import build_email, sendmail_body
from auditor.alerts.post import PostFailed, guard_library_logs, post, redact
from auditor.alerts.teams import build_message, serialize

__all__ = [
    "AlertLedger",
    "Channels",
    "ChannelResult",
    "DeliveryReport",
    "MemoryLedger",
    "deliver",
    "send_teams",
    "send_mail",
    "GRAPH_SCOPE",
    "TEAMS",
    "EMAIL",
    "SENT",
    "FAILED",
    "NOT_CONFIGURED",
    "ALREADY_SENT",
]

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
TEAMS, EMAIL = "teams", "email"
SENT, FAILED, NOT_CONFIGURED, ALREADY_SENT = "sent", "failed", "not-configured", "already-sent"
MAX_ATTEMPTS = 4
_DETAIL_MAX = 300


class AlertLedger(Protocol):
    """What a run delivered, per channel (the store implements it in Table Storage)."""

    def alert_deliveries(self, run_id: str) -> dict[str, str]:
        """channel -> status recorded for this run."""
        ...

    def record_alert_delivery(
        self, run_id: str, channel: str, status: str, detail: str
    ) -> None: ...


class MemoryLedger:
    """An in-memory `AlertLedger`: for the CLI without storage, and for tests."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, tuple[str, str]]] = {}

    def alert_deliveries(self, run_id: str) -> dict[str, str]:
        return {ch: status for ch, (status, _) in self.records.get(run_id, {}).items()}

    def record_alert_delivery(self, run_id: str, channel: str, status: str, detail: str) -> None:
        self.records.setdefault(run_id, {})[channel] = (status, detail)


@dataclass(frozen=True, slots=True)
class ChannelResult:
    channel: str
    status: str  # SENT, FAILED, NOT_CONFIGURED or ALREADY_SENT
    attempts: int = 0
    http_status: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    run_id: str
    results: tuple[ChannelResult, ...]

    @property
    def none_configured(self) -> bool:
        return all(r.status == NOT_CONFIGURED for r in self.results)

    @property
    def failed(self) -> tuple[ChannelResult, ...]:
        return tuple(r for r in self.results if r.status == FAILED)

    def status(self, channel: str) -> str:
        return next(r.status for r in self.results if r.channel == channel)

    def summary(self) -> str:
        if self.none_configured:
            return "no alert channel configured (set ALERT_TEAMS_WEBHOOK_URL or ALERT_EMAIL_*)"
        parts = []
        for r in self.results:
            text = f"{r.channel}: {r.status}"
            if r.status == FAILED and r.detail:
                text += f" ({r.detail})"
            parts.append(text)
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "summary": self.summary(),
            "channels": {
                r.channel: {
                    "status": r.status,
                    "attempts": r.attempts,
                    "http_status": r.http_status,
                    "detail": r.detail,
                }
                for r in self.results
            },
        }


@dataclass(frozen=True, slots=True)
class Channels:
    """Where alerts and notices go. Empty values mean "not configured"."""

    teams_webhook_url: str | None = None
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    graph_base_url: str = "https://graph.microsoft.com"
    graph_access_token: str | None = None

    @property
    def secrets(self) -> list[str | None]:
        return [self.teams_webhook_url, self.graph_access_token]

    @property
    def any(self) -> bool:
        return bool(self.teams_webhook_url or (self.email_from and self.email_to))

    def email_problem(self) -> str | None:
        if self.email_from and not self.email_to:
            return "ALERT_EMAIL_FROM is set but ALERT_EMAIL_TO is empty"
        if self.email_to and not self.email_from:
            return "ALERT_EMAIL_TO is set but ALERT_EMAIL_FROM is empty"
        return None


def send_teams(
    channels: Channels,
    payload: bytes,
    *,
    http: httpx.Client,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = MAX_ATTEMPTS,
) -> ChannelResult:
    """POST one Workflows message (`payload`, JSON bytes) to the configured webhook."""
    url = channels.teams_webhook_url
    if not url:
        return ChannelResult(TEAMS, NOT_CONFIGURED)
    try:
        outcome = post(
            http,
            url,
            content=payload,
            headers={"Content-Type": "application/json; charset=utf-8"},
            accept=lambda status: 200 <= status < 300,
            sleep=sleep,
            max_attempts=max_attempts,
            secrets=channels.secrets,
        )
    except PostFailed as exc:
        return ChannelResult(TEAMS, FAILED, exc.attempts, exc.http_status, str(exc))
    return ChannelResult(TEAMS, SENT, outcome.attempts, outcome.http_status)


def send_mail(
    channels: Channels,
    body: Mapping[str, Any],
    *,
    http: httpx.Client,
    graph_token: Callable[[], str] | None,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = MAX_ATTEMPTS,
) -> ChannelResult:
    """Graph sendMail of `body` (a `{"message": ...}` document) from the configured sender.

    The token is `GRAPH_ACCESS_TOKEN` when set, else `graph_token()`; success is 202 only."""
    problem = channels.email_problem()
    if problem is not None:
        return ChannelResult(EMAIL, FAILED, 0, None, problem)
    if not channels.email_from:
        return ChannelResult(EMAIL, NOT_CONFIGURED)
    secrets = channels.secrets
    token = channels.graph_access_token
    if not token:
        if graph_token is None:
            return ChannelResult(EMAIL, FAILED, 0, None, "no Graph credential configured")
        try:
            token = graph_token()
        except Exception as exc:  # any credential failure fails this channel only
            detail = redact(f"Graph token not acquired: {type(exc).__name__}: {exc}", secrets)
            return ChannelResult(EMAIL, FAILED, 0, None, detail[:_DETAIL_MAX])
    secrets = [*secrets, token]
    guard_library_logs([token])
    sender = quote(channels.email_from, safe="@")
    try:
        outcome = post(
            http,
            f"{channels.graph_base_url}/v1.0/users/{sender}/sendMail",
            content=json.dumps(body).encode("utf-8"),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            accept=lambda status: status == 202,  # Graph answers sendMail with 202, no body
            sleep=sleep,
            max_attempts=max_attempts,
            secrets=secrets,
        )
    except PostFailed as exc:
        return ChannelResult(EMAIL, FAILED, exc.attempts, exc.http_status, str(exc))
    return ChannelResult(EMAIL, SENT, outcome.attempts, outcome.http_status)


def deliver(
    alert: Alert,
    channels: Channels,
    *,
    http: httpx.Client,
    ledger: AlertLedger,
    sleep: Callable[[float], None] = time.sleep,
    graph_token: Callable[[], str] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> DeliveryReport:
    """Send `alert` to every configured channel not already served for this run.

    `graph_token` returns an app-only token for `GRAPH_SCOPE` when `GRAPH_ACCESS_TOKEN` is not
    set (the wiring passes the managed identity's or app registration's). Never raises
    for a channel's failure: the report and the ledger record it.
    """
    run_id = alert.run_id
    secrets = channels.secrets
    guard_library_logs(secrets)
    try:
        done = ledger.alert_deliveries(run_id)
    except Exception as exc:  # a ledger failure never stops an alert
        log.warning(
            "alert run=%s: delivery ledger unreadable, sending anyway: %s",
            run_id,
            redact(str(exc), secrets),
        )
        done = {}

    results: list[ChannelResult] = []
    for channel in (TEAMS, EMAIL):
        if done.get(channel) == SENT:
            log.info("alert run=%s channel=%s already sent, skipped", run_id, channel)
            results.append(ChannelResult(channel, ALREADY_SENT, detail="sent by an earlier try"))
            continue
        if channel == TEAMS:
            result = send_teams(
                channels,
                serialize(build_message(alert)),
                http=http,
                sleep=sleep,
                max_attempts=max_attempts,
            )
        else:
            result = send_mail(
                channels,
                sendmail_body(build_email(alert), channels.email_to),
                http=http,
                graph_token=graph_token,
                sleep=sleep,
                max_attempts=max_attempts,
            )
        results.append(result)
        if result.status == FAILED:
            log.error(
                "alert run=%s channel=%s failed after %d attempt(s): %s",
                run_id,
                channel,
                result.attempts,
                result.detail,
            )
        else:
            log.info(
                "alert run=%s channel=%s status=%s attempts=%d http=%s",
                run_id,
                channel,
                result.status,
                result.attempts,
                result.http_status,
            )
        try:
            ledger.record_alert_delivery(run_id, channel, result.status, result.detail)
        except Exception as exc:  # the alert went out; losing its record must not fail the run
            log.error(
                "alert run=%s channel=%s: could not record delivery: %s",
                run_id,
                channel,
                redact(str(exc), secrets),
            )
    report = DeliveryReport(run_id, tuple(results))
    if report.none_configured:
        log.warning("alert run=%s: %s", run_id, report.summary())
    return report
