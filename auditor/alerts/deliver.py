"""Deliver an `Alert`: Teams Workflows webhook and Graph sendMail, each at most once per run.

The shell around the pure `alerts.decide`, `teams.build_message` and `mail.build_email`:

- Each channel is tried on its own: one failing is logged and recorded and never stops the other
  nor fails the audit. `deliver` does not raise for a channel failure; it returns a
  `DeliveryReport` the run records.
- Bounded retries: at most `max_attempts` posts per channel, on 429, 5xx and transport errors,
  waiting `Retry-After` (seconds, capped at `MAX_WAIT`) or 2 s × 2^n. Other answers are final.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from auditor.alerts.decide import Alert, decide
from auditor.alerts.mail import build_email, sendmail_body
from auditor.alerts.teams import build_message, serialize
from auditor.app.settings import Settings
from auditor.core.errors import DeliveryError
from auditor.core.model import CollectionError, Evaluation, PreviousRun

__all__ = [
    "AlertLedger",
    "ChannelResult",
    "DeliveryReport",
    "MemoryLedger",
    "deliver",
    "notify_run",
    "run_alerter",
    "RunAlerter",
    "redact",
    "report_url",
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
MAX_WAIT = 60.0
TIMEOUT = 30.0
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
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


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret (and a URL's query and path, which carry the signature) removed."""
    pieces: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        pieces.add(secret)
        parts = urlsplit(secret)
        if parts.scheme and parts.netloc:
            # A cut or re-encoded copy of the URL still must not show the signature.
            candidates = [parts.query, parts.path, *(v for _, v in parse_qsl(parts.query))]
            pieces.update(c for c in candidates if len(c) >= 8)
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "[redacted]")
    return text


def report_url(settings: Settings, run_id: str) -> str | None:
    """`<ALERT_REPORT_BASE_URL>/<run id>`, or None when no report base URL is set."""
    if not settings.alert_report_base_url:
        return None
    return f"{settings.alert_report_base_url}/{quote(run_id, safe='')}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return max(0.0, seconds)


def _error_text(response: httpx.Response, secrets: Iterable[str | None]) -> str:
    """A short description of an error answer: Graph's `error.code: message` when present.
    Redacted before it is cut, so no cut-off piece of a secret survives."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        text = f"{error.get('code', '')}: {error.get('message', '')}"
    else:
        text = " ".join(response.text.split())
    text = redact(text, secrets)[:160]
    return f"HTTP {response.status_code}" + (f" {text}" if text else "")


class _RedactingFilter(logging.Filter):
    """Redacts known secrets from library log records: httpx logs every request URL at INFO,
    and a Workflows webhook URL carries its signature in the query string."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            clean = redact(message, self.secrets)
            if clean != message:
                record.msg, record.args = clean, None
        return True


_LIBRARY_FILTER = _RedactingFilter()


def _guard_library_logs(secrets: Iterable[str | None]) -> None:
    _LIBRARY_FILTER.secrets.update(s for s in secrets if s)
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _LIBRARY_FILTER not in logger.filters:
            logger.addFilter(_LIBRARY_FILTER)


@dataclass(frozen=True, slots=True)
class _Outcome:
    attempts: int
    http_status: int


class _Failed(DeliveryError):
    """A channel gave up; the message is already redacted."""

    def __init__(self, message: str, attempts: int, http_status: int | None) -> None:
        super().__init__(message[:_DETAIL_MAX])
        self.attempts = attempts
        self.http_status = http_status


def _post(
    http: httpx.Client,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    accept: Callable[[int], bool],
    sleep: Callable[[float], None],
    max_attempts: int,
    secrets: Iterable[str | None],
) -> _Outcome:
    """POST with bounded retries; returns on an accepted status, raises DeliveryError otherwise."""
    secret_list = list(secrets)
    problem = "not attempted"
    last_status: int | None = None
    for attempt in range(1, max_attempts + 1):
        wait = min(MAX_WAIT, 2.0 * 2 ** (attempt - 1))
        try:
            response = http.post(url, content=content, headers=dict(headers), timeout=TIMEOUT)
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if accept(response.status_code):
                return _Outcome(attempt, response.status_code)
            problem = _error_text(response, secret_list)
            last_status = response.status_code
            if response.status_code not in _RETRY_STATUSES:
                raise _Failed(redact(f"{problem} (not retried)", secret_list), attempt, last_status)
            hinted = _retry_after(response)
            if hinted is not None:
                wait = min(MAX_WAIT, hinted)
        if attempt < max_attempts:
            sleep(wait)
    raise _Failed(
        redact(f"{problem} (gave up after {max_attempts} attempts)", secret_list),
        max_attempts,
        last_status,
    )


def _send_teams(
    alert: Alert, url: str, http: httpx.Client, sleep: Callable[[float], None], attempts: int
) -> _Outcome:
    body = serialize(build_message(alert))
    return _post(
        http,
        url,
        content=body,
        headers={"Content-Type": "application/json; charset=utf-8"},
        accept=lambda status: 200 <= status < 300,
        sleep=sleep,
        max_attempts=attempts,
        secrets=[url],
    )


def _send_email(
    alert: Alert,
    settings: Settings,
    token: str,
    http: httpx.Client,
    sleep: Callable[[float], None],
    attempts: int,
) -> _Outcome:
    sender = settings.email_from or ""
    url = f"{settings.graph_base_url}/v1.0/users/{quote(sender, safe='@')}/sendMail"
    body = json.dumps(sendmail_body(build_email(alert), settings.email_to)).encode("utf-8")
    return _post(
        http,
        url,
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
        accept=lambda status: status == 202,  # Graph answers sendMail with 202 and no body
        sleep=sleep,
        max_attempts=attempts,
        secrets=[token],
    )


def _graph_token_provider(settings: Settings) -> Callable[[], str]:
    """An app-only Graph token from the same credential interface as Exchange.

    `EXO_ACCESS_TOKEN` is an Exchange token and useless for Graph, so it is set aside here: the
    managed identity or app registration is asked for the Graph scope instead.
    """
    from auditor.identity.tokens import token_provider

    provider = token_provider(replace(settings, exo_access_token=None), GRAPH_SCOPE)
    return lambda: provider.get_token()


def _email_problem(settings: Settings) -> str | None:
    if settings.email_from and not settings.email_to:
        return "ALERT_EMAIL_FROM is set but ALERT_EMAIL_TO is empty"
    if settings.email_to and not settings.email_from:
        return "ALERT_EMAIL_TO is set but ALERT_EMAIL_FROM is empty"
    return None


def deliver(
    alert: Alert,
    settings: Settings,
    *,
    http: httpx.Client,
    ledger: AlertLedger,
    sleep: Callable[[float], None] = time.sleep,
    graph_token: Callable[[], str] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> DeliveryReport:
    """Send `alert` to every configured channel not already served for this run.

    `graph_token` returns an app-only token for `GRAPH_SCOPE` when `GRAPH_ACCESS_TOKEN` is not
    set; by default `credentials.token_provider(settings, GRAPH_SCOPE)` is used. Never raises
    for a channel's failure: the report and the ledger record it.
    """
    run_id = alert.run_id
    secrets: list[str | None] = [settings.teams_webhook_url, settings.graph_access_token]
    _guard_library_logs(secrets)
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
        result = _one(alert, settings, channel, http, sleep, graph_token, max_attempts, secrets)
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


def _one(
    alert: Alert,
    settings: Settings,
    channel: str,
    http: httpx.Client,
    sleep: Callable[[float], None],
    graph_token: Callable[[], str] | None,
    max_attempts: int,
    secrets: list[str | None],
) -> ChannelResult:
    if channel == TEAMS:
        url = settings.teams_webhook_url
        if not url:
            return ChannelResult(TEAMS, NOT_CONFIGURED)
        try:
            outcome = _send_teams(alert, url, http, sleep, max_attempts)
        except _Failed as exc:
            return ChannelResult(
                TEAMS, FAILED, exc.attempts, exc.http_status, redact(str(exc), secrets)
            )
        return ChannelResult(TEAMS, SENT, outcome.attempts, outcome.http_status)

    problem = _email_problem(settings)
    if problem is not None:
        return ChannelResult(EMAIL, FAILED, 0, None, problem)
    if not settings.email_from:
        return ChannelResult(EMAIL, NOT_CONFIGURED)
    token = settings.graph_access_token
    if not token:
        try:
            token = (graph_token or _graph_token_provider(settings))()
        except Exception as exc:  # any credential failure fails this channel only
            detail = redact(f"Graph token not acquired: {type(exc).__name__}: {exc}", secrets)
            return ChannelResult(EMAIL, FAILED, 0, None, detail[:_DETAIL_MAX])
    secrets.append(token)
    _guard_library_logs([token])
    try:
        outcome = _send_email(alert, settings, token, http, sleep, max_attempts)
    except _Failed as exc:
        return ChannelResult(
            EMAIL, FAILED, exc.attempts, exc.http_status, redact(str(exc), secrets)
        )
    return ChannelResult(EMAIL, SENT, outcome.attempts, outcome.http_status)


def notify_run(
    evaluation: Evaluation,
    previous: PreviousRun | None,
    *,
    run_id: str,
    complete: bool,
    errors: Iterable[CollectionError | str],
    settings: Settings,
    http: httpx.Client,
    ledger: AlertLedger,
    sleep: Callable[[float], None] = time.sleep,
    graph_token: Callable[[], str] | None = None,
    first_seen: Mapping[str, datetime] | None = None,
    remediation_url: str | None = None,
) -> DeliveryReport | None:
    """Decide and deliver one run's alert: the one call `run_audit` makes.

    Returns None when the run has nothing to tell (and no digest is asked for). Uses
    `AUDITOR_EXPIRING_DAYS`, `ALERT_DIGEST` and `ALERT_REPORT_BASE_URL`. Never raises for a
    channel's failure; a bug while building the alert is logged and reported as failed, since
    alerting must not fail the audit that was already recorded.
    """
    try:
        alert = decide(
            evaluation,
            previous,
            run_id=run_id,
            complete=complete,
            errors=errors,
            expiring_days=settings.expiring_days,
            digest=settings.alert_digest,
            report_url=report_url(settings, run_id),
            remediation_url=remediation_url,
            first_seen=first_seen,
        )
    except Exception as exc:  # the audit is recorded; a broken alert must not undo that
        log.exception("alert run=%s: could not build the alert", run_id)
        detail = f"alert not built: {type(exc).__name__}"
        return DeliveryReport(
            run_id,
            (
                ChannelResult(TEAMS, FAILED, detail=detail),
                ChannelResult(EMAIL, FAILED, detail=detail),
            ),
        )
    if alert is None:
        log.info("alert run=%s: nothing changed, no alert", run_id)
        return None
    return deliver(alert, settings, http=http, ledger=ledger, sleep=sleep, graph_token=graph_token)


# evaluation, previous run, run id, complete, collection errors, ids of the run's remediation
# proposals -> what was delivered
RunAlerter = Callable[
    [Evaluation, PreviousRun | None, str, bool, Sequence[CollectionError], Sequence[str]],
    DeliveryReport | None,
]


def remediation_link(settings: Settings, proposal_ids: Sequence[str]) -> str | None:
    """The confirmation page to link from an alert: the run's first revocation, else its grant.

    None without `REMEDIATION_PUBLIC_URL` (there is nowhere to send the reader).
    """
    if not settings.remediation_public_url or not proposal_ids:
        return None
    chosen = next((p for p in proposal_ids if p.startswith("rev-")), proposal_ids[0])
    return f"{settings.remediation_public_url}/api/remediations/{quote(chosen, safe='')}"


def run_alerter(
    settings: Settings,
    *,
    http: httpx.Client,
    ledger: AlertLedger,
    sleep: Callable[[float], None] = time.sleep,
    graph_token: Callable[[], str] | None = None,
) -> RunAlerter:
    """`notify_run` bound to its settings, client and ledger: what `run_audit` is given."""

    def alert(
        evaluation: Evaluation,
        previous: PreviousRun | None,
        run_id: str,
        complete: bool,
        errors: Sequence[CollectionError],
        proposals: Sequence[str],
    ) -> DeliveryReport | None:
        return notify_run(
            evaluation,
            previous,
            run_id=run_id,
            complete=complete,
            errors=errors,
            settings=settings,
            http=http,
            ledger=ledger,
            sleep=sleep,
            graph_token=graph_token,
            remediation_url=remediation_link(settings, proposals),
        )

    return alert
