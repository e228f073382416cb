"""The nightly audit's alert step, from settings: decide one run's alert and deliver it.

`run_alerter(settings, ...)` is what `run_audit` is given. Channels, the Graph credential and
the links come from settings here, so `auditor.alerts` itself never reads `Settings`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime

import httpx

from auditor.alerts.decide import decide
from auditor.alerts.deliver import (
    EMAIL,
    FAILED,
    TEAMS,
    AlertLedger,
    ChannelResult,
    DeliveryReport,
    deliver,
)
from auditor.app.settings import Settings
from auditor.app.wiring import alert_channels, graph_token_provider, proposal_store
from auditor.core import routes
from auditor.core.model import CollectionError, Evaluation, PreviousRun
from auditor.core.policy import MAILBOX, finding_id
from auditor.core.proposals import Role, State

__all__ = ["notify_run", "run_alerter", "RunAlerter", "remediation_link", "remediation_links"]

log = logging.getLogger("auditor.alerts.deliver")


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
    remediation_links: Sequence[tuple[str, str]] = (),
    remediated: Collection[str] = frozenset(),
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
            report_url=routes.report_url(settings.alert_report_base_url, run_id),
            remediation_url=remediation_url,
            first_seen=first_seen,
            remediation_links=remediation_links,
            remediated=remediated,
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
    return deliver(
        alert,
        alert_channels(settings),
        http=http,
        ledger=ledger,
        sleep=sleep,
        graph_token=graph_token or graph_token_provider(settings),
    )


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
    return routes.remediation_url(settings.remediation_public_url, chosen)


def remediation_links(settings: Settings, proposal_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(proposal id, confirmation page) of every open proposal of the run, for the alert's
    buttons (`decide` orders them: the organisation fix first when it allows SMTP AUTH).

    Empty without `REMEDIATION_PUBLIC_URL`.
    """
    out: list[tuple[str, str]] = []
    for proposal_id in proposal_ids:
        url = routes.remediation_url(settings.remediation_public_url, proposal_id)
        if url:
            out.append((proposal_id, url))
    return out


def remediated_findings(settings: Settings, previous: PreviousRun | None) -> set[str]:
    """Finding ids of the mailboxes an approved remediation changed since the previous run, so
    that their resolved items say "fixed by an approved remediation". Best effort: without
    storage or on any error it is empty (the alert then says what the evidence shows)."""
    if previous is None or not settings.storage:
        return set()
    try:
        store = proposal_store(settings)
        found: set[str] = set()
        for record in store.in_states((State.APPLIED, State.PARTIALLY_APPLIED)):
            if record.finished_at is None or record.finished_at < previous.evaluated_at:
                continue
            for target in store.get(record.id).targets:
                if target.result.value == "applied" and target.target.role is Role.REVOKE:
                    found.add(finding_id(MAILBOX, target.target.key))
        return found
    except Exception:  # the alert must go out even if the proposals cannot be read
        log.warning("alert: could not read the applied remediations", exc_info=True)
        return set()


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
            remediation_links=remediation_links(settings, proposals),
            remediated=remediated_findings(settings, previous),
        )

    return alert
