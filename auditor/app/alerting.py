"""The nightly audit's alert step, from settings: decide one run's alert and deliver it.

`run_alerter(settings, ...)` is what `run_audit` is given. Channels, the Graph credential and
the links come from settings here, so `auditor.alerts` itself never reads `Settings`.

`run_facts` reads what the history store knows beyond the evaluation (who made this run's
changes, which absent mailboxes were removed and their type), best effort like
`remediated_findings`: an error there is logged and the alert goes out with the generic text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime

import httpx

from auditor.alerts.decide import RunFacts, decide
from auditor.alerts.deliver import (
    EMAIL,
    FAILED,
    TEAMS,
    AlertLedger,
    ChannelResult,
    DeliveryReport,
    deliver,
)
from auditor.app.attribution import attributor
from auditor.app.settings import Settings
from auditor.app.wiring import alert_channels, graph_token_provider, proposal_store
from auditor.core import routes
from auditor.core.attribution import Attribution
from auditor.core.history import setting_code
from auditor.core.model import CollectionError, Evaluation, PreviousRun, Setting, Status
from auditor.core.policy import MAILBOX, finding_id
from auditor.core.proposals import Role, State
from auditor.storage.audit_store import AuditStore

__all__ = [
    "notify_run",
    "run_alerter",
    "run_facts",
    "RunAlerter",
    "remediation_link",
    "remediation_links",
    "remediated_findings",
]

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
    facts: RunFacts | None = None,
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
            facts=facts,
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


def remediated_findings(settings: Settings, previous: PreviousRun | None) -> dict[str, str]:
    """Finding id -> the applied proposal, for the mailboxes an approved remediation changed
    since the previous run, so that their resolved items say "fixed by an approved remediation
    (rev-…)". Best effort: without storage or on any error it is empty (the alert then says
    what the evidence shows)."""
    if previous is None or not settings.storage:
        return {}
    try:
        store = proposal_store(settings)
        found: dict[str, str] = {}
        for record in store.in_states((State.APPLIED, State.PARTIALLY_APPLIED)):
            if record.finished_at is None or record.finished_at < previous.evaluated_at:
                continue
            for target in store.get(record.id).targets:
                if target.result.value == "applied" and target.target.role is Role.REVOKE:
                    found[finding_id(MAILBOX, target.target.key)] = record.id
        return found
    except Exception:  # the alert must go out even if the proposals cannot be read
        log.warning("alert: could not read the applied remediations", exc_info=True)
        return {}


_MAILBOX_PREFIX = f"{MAILBOX}:"
# New violations attributed per alert at most (each costs one history query); the Teams card
# lists 25 items at most, and the rest are in the report.
ATTRIBUTED_MAX = 50


def _key_of(fid: str) -> str | None:
    """The mailbox key of a readable mailbox finding id (`policy.finding_id`); None for a
    digest id (`~…`), whose key cannot be read back."""
    if not fid.startswith(_MAILBOX_PREFIX):
        return None
    key = fid[len(_MAILBOX_PREFIX) :]
    return None if not key or key.startswith("~") or key == "*" else key


def _absent(
    store: AuditStore, evaluation: Evaluation, previous: PreviousRun
) -> tuple[frozenset[str], frozenset[str], dict[str, str]]:
    """(removed, looked up, types) of the prior FAIL mailbox findings absent from this
    evaluation, from their committed state records (the buckets holding them only)."""
    present = {f.id for f in evaluation.findings}
    keys = {
        fid: key
        for fid, prior in previous.findings.items()
        if prior.status is Status.FAIL and fid not in present and (key := _key_of(fid))
    }
    states = store.mailbox_states_of(keys.values())
    removed: set[str] = set()
    looked_up: set[str] = set()
    types: dict[str, str] = {}
    for fid, key in keys.items():
        state = states.get(key)
        if state is None:
            continue
        looked_up.add(fid)
        if state.removed:
            removed.add(fid)
        if state.rtype:
            types[fid] = state.rtype
    return frozenset(removed), frozenset(looked_up), types


def _attributions(
    store: AuditStore, evaluation: Evaluation, previous: PreviousRun, run_id: str
) -> tuple[dict[str, Attribution], Attribution | None]:
    """Who made the changes of this run that the alert tells: the setting of each newly
    explicitly enabled mailbox whose history has a setting change in this run, and the
    organisation flip if this run saw it. Nothing when no run kept an audit log."""
    candidates = [
        f
        for f in evaluation.findings
        if f.status is Status.FAIL
        and f.control == MAILBOX
        and f.via == "explicit"
        and f.mailbox is not None
        and ((prior := previous.findings.get(f.id)) is None or prior.status is not Status.FAIL)
    ]
    flipped = (
        evaluation.org_disabled is not None
        and previous.org_disabled is not None
        and evaluation.org_disabled != previous.org_disabled
    )
    if not candidates and not flipped:
        return {}, None
    attribute_change = attributor(store)
    if attribute_change is None:
        return {}, None
    out: dict[str, Attribution] = {}
    for finding in candidates[:ATTRIBUTED_MAX]:
        mailbox = finding.mailbox
        assert mailbox is not None
        changes = store.mailbox_changes(mailbox.key)
        change = next((c for c in changes if c.run_id == run_id), None)
        if change is None or change.kind != "changed" or "setting" not in change.fields:
            continue  # not changed by this run (added, allowlist changed, ...): nothing to say
        identities = {mailbox.key, *mailbox.match_keys}
        out[finding.id] = attribute_change(run_id, identities, setting_code(mailbox), False)
    org: Attribution | None = None
    if flipped:
        history = store.org_history()
        if history and history[0].run_id == run_id and not history[0].first:
            org = attribute_change(run_id, (), Setting.text(evaluation.org_disabled), True)
    return out, org


def run_facts(
    store: AuditStore | None,
    evaluation: Evaluation,
    previous: PreviousRun | None,
    *,
    run_id: str,
    complete: bool,
    remediated: Mapping[str, str] | None = None,
) -> RunFacts:
    """What the alert of a recorded run can say beyond its evaluation (`RunFacts`). Best
    effort, part by part: a part that cannot be read is left out and logged, never raised."""
    fixed = dict(remediated or {})
    if store is None or previous is None:
        return RunFacts(remediated=fixed)
    removed: frozenset[str] = frozenset()
    looked_up: frozenset[str] = frozenset()
    types: dict[str, str] = {}
    if complete:  # an incomplete run resolves nothing: no resolved item to explain
        try:
            removed, looked_up, types = _absent(store, evaluation, previous)
        except Exception:  # the alert must go out with the generic reason
            log.warning("alert run=%s: mailbox states unreadable", run_id, exc_info=True)
    who: dict[str, Attribution] = {}
    org: Attribution | None = None
    try:
        who, org = _attributions(store, evaluation, previous, run_id)
    except Exception:  # the alert must go out without the attribution
        log.warning("alert run=%s: changes not attributed", run_id, exc_info=True)
    return RunFacts(
        removed=removed,
        looked_up=looked_up,
        types=types,
        remediated=fixed,
        attributions=who,
        org=org,
    )


def run_alerter(
    settings: Settings,
    *,
    http: httpx.Client,
    ledger: AlertLedger,
    sleep: Callable[[float], None] = time.sleep,
    graph_token: Callable[[], str] | None = None,
    store: AuditStore | None = None,
) -> RunAlerter:
    """`notify_run` bound to its settings, client and ledger: what `run_audit` is given. With
    the run's history `store`, the alert also says who made the run's changes and why absent
    mailboxes are resolved (`run_facts`)."""

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
            facts=run_facts(
                store,
                evaluation,
                previous,
                run_id=run_id,
                complete=complete,
                remediated=remediated_findings(settings, previous),
            ),
        )

    return alert
