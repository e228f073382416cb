"""The imperative shell of the nightly audit: collect -> evaluate -> record -> summary.

`run_audit` takes its dependencies (the history store, a `collect(now)` function returning a
`smtp-auth-snapshot/1` document or its evidence bytes, a clock) so tests run it against
Azurite and the Exchange emulator; `audit_from_settings` builds them from the settings,
lazily, for the timer and the `audit` command. Each step is a small function so alerts and
remediation proposals can be inserted between `_record` and the summary.

Failure semantics (docs/architecture.md, "Crash safety and recording"):
- A bad allowlist or setting raises InputError/ConfigError before anything is recorded.
- Another run holding the lease: RunInProgress (a StoreError), nothing recorded; a stale
  lease is taken over and its run repaired (`abandoned`) by `begin_run`.
- Storage failing while recording: the run removes its history rows, is marked `failed` with
  the storage error (best effort) and that error is raised; nothing was committed.
- A `suspect` run (plausibility guard) is recorded and raises AuditIncomplete like a partial
  one.
- A collection that failed outright is recorded as a `failed` run with its error, then
  `CollectionFailed` is raised so the Functions host marks the invocation failed.
- A partial collection is recorded as an `incomplete` run (it resolves nothing and removes
  nothing, see history.py), then `AuditIncomplete` (a CollectionFailed carrying the summary)
  is raised for the same reason.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from auditor.alerts.decide import failed_run_evaluation
from auditor.app import memory, wiring
from auditor.app.alerting import RunAlerter, run_alerter
from auditor.app.attribution import ChangeCollector, gather_changes, save_changes
from auditor.app.settings import Settings
from auditor.app.usage import UsageCollector, gather_usage, save_usage
from auditor.core.allowlist import LoadedAllowlist, load_allowlist
from auditor.core.errors import AuditorError, CollectionFailed, ConfigError, InputError
from auditor.core.evidence import Compressed, StreamedEvidence, encode_document, read_evidence
from auditor.core.history import FindingEvent, MailboxChange
from auditor.core.model import CollectionError, Evaluation, PreviousRun, Snapshot
from auditor.core.policy import evaluate
from auditor.core.proposals import PlannedProposals
from auditor.core.records import OrgChange, RecordResult
from auditor.core.screen import read_whole, screen
from auditor.core.usage import UsageEvidence
from auditor.storage.audit_store import AuditStore, Committed, RunHandle, RunInProgress

__all__ = [
    "RunSummary",
    "AuditIncomplete",
    "Collector",
    "run_audit",
    "audit_from_settings",
]

log = logging.getLogger("auditor.service")
_T = TypeVar("_T")

# `collect(now)`: the snapshot document, the evidence bytes of one (`exchange.collect_evidence`,
# which never holds the listings as dictionaries), or the evidence judged while paging
# (`exchange.collect_streamed`, what the nightly audit uses: docs/architecture.md).
Collector = Callable[[datetime], dict[str, Any] | bytes | StreamedEvidence]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What one audit did. `log_fields()` is what may be logged: ids, counts, durations."""

    run_id: str
    tenant: str
    status: str
    complete: bool
    counts: dict[str, int]
    changes: dict[str, int]
    durations: dict[str, float]
    errors: tuple[CollectionError, ...]
    exit_code: int
    evaluation: Evaluation | None = None
    mailbox_changes: tuple[MailboxChange, ...] = ()
    finding_events: tuple[FindingEvent, ...] = ()
    new_findings: tuple[str, ...] = ()
    org_change: OrgChange | None = None
    baseline: bool = False
    table_ops: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, str] = field(default_factory=dict)  # channel -> delivery status
    proposals: tuple[str, ...] = ()  # remediation proposal ids stored with this run

    def log_fields(self) -> dict[str, Any]:
        """Safe to log: no mailbox names, no addresses, no tokens."""
        counts = self.counts
        return {
            "run_id": self.run_id,
            "status": self.status,
            "complete": self.complete,
            "exit_code": self.exit_code,
            "mailboxes": counts.get("mailboxes", 0),
            "fail": counts.get("fail", 0),
            "unknown": counts.get("unknown", 0),
            "exempt": counts.get("exempt", 0),
            "warning": counts.get("warning", 0),
            **{f"changes_{k}": v for k, v in self.changes.items()},
            "errors": [e.source for e in self.errors],
            **{f"seconds_{k}": round(v, 3) for k, v in self.durations.items()},
            **{f"table_{k}": v for k, v in self.table_ops.items()},
            **{f"alert_{k}": v for k, v in self.alerts.items()},
        }

    def log_line(self) -> str:
        return "audit " + " ".join(
            f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in self.log_fields().items()
        )


class AuditIncomplete(CollectionFailed):
    """The collection was partial: the run is recorded as incomplete; `summary` says what."""

    def __init__(self, summary: RunSummary) -> None:
        self.summary = summary
        sources = ", ".join(e.source for e in summary.errors) or "evidence missing"
        super().__init__(f"audit {summary.run_id} is incomplete: could not read {sources}")


# -- the steps -------------------------------------------------------------------------------


def _collect(collect: Collector, now: datetime) -> bytes | StreamedEvidence:
    """The evidence: the collected document serialised once; it is stored and judged as is."""
    collected = collect(now)
    if isinstance(collected, bytes | StreamedEvidence):
        return collected
    return encode_document(collected)  # spends the document: each listing freed once encoded


def _evaluate(
    evidence: bytes | StreamedEvidence,
    allowlist: LoadedAllowlist,
    now: datetime,
    expiring_days: int,
    usage: UsageEvidence | None = None,
) -> tuple[Snapshot, Evaluation]:
    # Built from the very bytes that are stored: joined from each page's bytes while the reads
    # paged (only the join's finish is left), or streamed from the evidence bytes; no raw
    # records held besides them. One bad record is one unknown mailbox named in the errors,
    # never a failed run.
    if isinstance(evidence, StreamedEvidence):
        joined = evidence.snapshot()
    else:
        joined = read_evidence(evidence, source="Exchange collection")
    snapshot = screen(joined)
    del joined
    evaluation = evaluate(
        snapshot,
        allowlist.allowlist,
        now.date(),
        evaluated_at=now,
        expiring_days=expiring_days,
        usage=usage,
    )
    return snapshot, evaluation


def _record(
    store: AuditStore,
    handle: RunHandle,
    snapshot: Snapshot,
    evaluation: Evaluation,
    evidence: bytes | Compressed,
    allowlist: LoadedAllowlist,
    today: date,
    expiring_days: int,
    durations: dict[str, float],
    state: Committed | None,
) -> RecordResult:
    return store.record_run(
        handle,
        snapshot=snapshot,
        evaluation=evaluation,
        evidence=evidence,
        allowlist=allowlist.raw,
        allowlist_source=allowlist.source,
        today=today,
        expiring_days=expiring_days,
        durations=durations,
        state=state,
    )


def _meanwhile(name: str, work: Callable[..., _T], *args: Any) -> Future[_T]:
    """`work(*args)` in a thread of its own, which ends with it; its result is the future's."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    try:
        return pool.submit(work, *args)
    finally:
        pool.shutdown(wait=False)


def _read(committed: Future[Committed]) -> Committed | None:
    """The state read while paging; None when that read failed: the recording then reads it
    again itself, and a store that is still failing fails the recording as it always did."""
    try:
        return committed.result()
    except AuditorError as exc:
        log.warning("state read while paging failed, read again to record: %s", exc)
        return None


def _summary(result: RecordResult, evaluation: Evaluation, ops: dict[str, int]) -> RunSummary:
    run = result.run
    return RunSummary(
        run_id=run.run_id,
        tenant=run.tenant,
        status=run.status,
        complete=run.complete,
        counts=dict(run.counts),
        changes=dict(run.changes),
        durations=dict(run.durations),
        errors=run.errors,
        exit_code=evaluation.exit_code(),
        evaluation=evaluation,
        mailbox_changes=result.mailbox_changes,
        finding_events=result.finding_events,
        new_findings=result.new_findings,
        org_change=result.org_change,
        baseline=result.baseline,
        table_ops=ops,
    )


def _fail(
    store: AuditStore, handle: RunHandle, exc: Exception, durations: dict[str, float]
) -> CollectionFailed:
    source = "collection"
    if isinstance(exc, InputError):
        source = "snapshot"
    message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, AuditorError) else str(exc)
    errors = (CollectionError(source=source, message=message),)
    try:
        store.fail_run(handle, errors=errors, durations=durations)
    except AuditorError as exc:  # the collection's failure is the cause; say both
        log.error("audit run_id=%s: the failed run was not recorded: %s", handle.run_id, exc)
        message += f" (and the failed run could not be recorded: {exc})"
    log.error(
        "audit run_id=%s status=failed error_source=%s seconds_total=%.3f",
        handle.run_id,
        source,
        durations.get("total", 0.0),
    )
    return CollectionFailed(f"audit {handle.run_id} failed: {message}")


def _record_failed(
    store: AuditStore,
    handle: RunHandle,
    exc: AuditorError,
    durations: dict[str, float],
    elapsed: float,
) -> None:
    """Best effort: mark our run `failed` with the storage error that stopped its recording.
    If that fails too, the next run marks it abandoned; `exc` is what is raised, either way."""
    durations["total"] = elapsed
    errors = (CollectionError("storage", f"recording failed: {exc}"),)
    try:
        store.fail_run(handle, errors=errors, durations=durations)
    except AuditorError as second:
        log.error("audit run_id=%s: not marked failed (%s)", handle.run_id, second)


def run_audit(
    *,
    store: AuditStore,
    collect: Collector,
    tenant: str,
    allowlist_path: Path | None = None,
    expiring_days: int = 14,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    alerter: RunAlerter | None = None,
    proposer: Proposer | None = None,
    usage: UsageCollector | None = None,
    changes: ChangeCollector | None = None,
) -> RunSummary:
    """One audit. Returns the summary of a complete run; raises for anything less (see module).

    With `alerter` (see `app.alerting.run_alerter`) the run's alert is decided against the last
    run whose alert was delivered (`AuditStore.alert_baseline`) and delivered after recording,
    also for failed and incomplete runs, and before the remediation proposals are stored; a
    delivery failure never fails the audit. With `usage` (app.usage) the sign-in evidence is
    read, judged and kept with the run; its failure makes it unknown and never fails the audit.
    `changes` (app.attribution) likewise reads and keeps the audit log of who changed the
    setting."""
    allowlist = load_allowlist(allowlist_path)  # bad input: nothing is recorded
    memory.release()  # what earlier invocations of this worker freed: not this run's peak
    started = time.perf_counter()
    ops_before = store.counter.snapshot()
    now = clock()
    handle = store.begin_run(tenant=tenant, now=now)
    durations: dict[str, float] = {}
    gc_enabled = gc.isenabled()
    try:
        store.keep_alive(handle)  # the collection can outlast the lease: renew it meanwhile
        # The committed state the recording diffs against, read while the run pages (it
        # waits on Table Storage: about 0.25 s at 100,000 mailboxes that would otherwise come
        # after the last page, docs/architecture.md "Performance").
        committed = _meanwhile("committed", store.committed)
        mark = time.perf_counter()
        try:
            # The cyclic collector stays on while reading: every page's HTTP response is
            # cyclic garbage holding its body, and the evidence collector holds no records.
            evidence = _collect(collect, now)
            durations["collect"] = time.perf_counter() - mark
            signins = None
            if usage is not None:
                mark = time.perf_counter()
                signins = gather_usage(store, usage, now)
                durations["usage"] = time.perf_counter() - mark
            changelog = gather_changes(store, changes, now) if changes is not None else None
            mark = time.perf_counter()
            memory.release()  # what is left of the reads, before the snapshot is built
            # From here hundreds of thousands of small acyclic objects: the cyclic collector
            # would walk them again and again (seconds); reference counting frees them.
            gc.disable()
            snapshot, evaluation = _evaluate(evidence, allowlist, now, expiring_days, signins)
            durations["evaluate"] = time.perf_counter() - mark
            planning = None
            if proposer is not None and read_whole(snapshot):  # never for a partial read
                planning = _meanwhile("plan", _plan, proposer, evaluation, handle.run_id, now)
        except (AuditorError, OSError, ValueError) as exc:
            durations["total"] = time.perf_counter() - started
            failure = _fail(store, handle, exc, durations)
            if alerter is not None:
                _alert_failed(alerter, store, handle, tenant, now)
            raise failure from exc
        mark = time.perf_counter()
        try:
            result = _record(
                store,
                handle,
                snapshot,
                evaluation,
                evidence.evidence if isinstance(evidence, StreamedEvidence) else evidence,
                allowlist,
                now.date(),
                expiring_days,
                durations,
                _read(committed),
            )
        except RunInProgress:
            raise  # another run holds the lease now: its run, not ours, to write
        except AuditorError as exc:
            _record_failed(store, handle, exc, durations, time.perf_counter() - started)
            raise
        del evidence, snapshot, committed  # the committed buckets too: 7 MiB at 100,000
        # Read now, not before the reads: its findings (one per failing mailbox) need not be
        # held while the run pages and records. Only this run's alert moves it, after this.
        baseline = [_previous_run(store, evaluation)] if alerter is not None else []
        if signins is not None:
            save_usage(store, handle.run_id, signins)
        if changelog is not None:
            save_changes(store, handle.run_id, changelog)
        durations["record"] = time.perf_counter() - mark
        durations["total"] = time.perf_counter() - started
        after = store.counter.snapshot()
        ops = {k: after[k] - ops_before[k] for k in after}
        summary = _summary(result, evaluation, ops)
        summary.durations.update(durations)
        # Planned while recording; kept only for a run recorded complete. A suspect run drops
        # its plan unread: nothing of it may stop that run's alert.
        planned = None
        if planning is not None and summary.complete:
            planned = planning.result()
        elif planning is not None:
            planning.cancel()
    except BaseException:
        if gc_enabled:
            gc.enable()
        raise
    finally:
        store.release(handle)  # never raises: the run's own outcome is what is reported
    try:  # the cyclic collector stays off while the plan's rows are built and sent, too
        if planned is not None:
            summary = replace(summary, proposals=planned.ids)
        if alerter is not None and summary.evaluation is not None:
            summary = _alert(alerter, store, summary, summary.evaluation, baseline)
        if planned is not None:
            summary = _store_proposals(planned, summary)
    finally:
        if gc_enabled:
            gc.enable()
    log.info(summary.log_line())
    if not summary.complete:
        raise AuditIncomplete(summary)
    return summary


# -- remediation proposals (remediation.py plans, proposals.py stores; never fail the audit) ---


# (evaluation, run id, now) -> the run's proposals, planned.
Proposer = Callable[[Evaluation, str, datetime], PlannedProposals]


def _plan(
    proposer: Proposer, evaluation: Evaluation, run_id: str, now: datetime
) -> PlannedProposals | None:
    """The run's proposals, planned in a thread of their own (`_meanwhile`) while the run is
    recorded. Planning is pure, and recording spends much of its time waiting on Table Storage
    (and compressing, which releases the GIL), so the two overlap (docs/architecture.md,
    "Performance"). A plan is only used once the run is recorded complete; nothing is stored
    before that. None when planning failed, which is logged and never fails the audit."""
    try:
        return proposer(evaluation, run_id, now)
    except AuditorError as exc:
        log.error("run %s: remediation proposals not planned: %s", run_id, exc)
        return None
    except Exception:  # a bug in planning must not cost the run its alert
        log.exception("run %s: remediation proposals not planned: planning crashed", run_id)
        return None


def _store_proposals(planned: PlannedProposals, summary: RunSummary) -> RunSummary:
    try:
        ids = planned.save()
    except AuditorError as exc:
        log.error("run %s: remediation proposals not stored: %s", summary.run_id, exc)
        return replace(summary, proposals=())
    return replace(summary, proposals=tuple(ids))


# -- alerts (notify.py decides and delivers; nothing here may fail the audit) ------------------


def _previous_run(store: AuditStore, current: Evaluation | None = None) -> PreviousRun | None:
    """The alert baseline: the last run whose alert was delivered (never the state a run that
    died before alerting advanced); sharing the strings of `current`'s findings."""
    try:
        return store.alert_baseline(current.findings if current is not None else ())
    except Exception as exc:  # a store error or a baseline that does not parse
        # Without it every open violation is told again as a baseline: loud, never silent.
        log.warning("alerts: previous run unreadable, alerting as a first run: %s", exc)
        return None


def _alert(
    alerter: RunAlerter,
    store: AuditStore,
    summary: RunSummary,
    evaluation: Evaluation,
    baseline: list[PreviousRun | None],
) -> RunSummary:
    """`baseline` holds the alert baseline (`_previous_run`) and hands it over: it is let go
    once the alert is decided, before the next one is written (90,000 findings when the
    organisation allows SMTP AUTH, docs/architecture.md "Memory")."""
    previous = baseline.pop() if baseline else None
    try:
        report = alerter(
            evaluation,
            previous,
            summary.run_id,
            summary.complete,
            summary.errors,
            summary.proposals,
        )
    except Exception:  # alerting must never fail an audit that is already recorded
        log.exception("alerts: run_id=%s delivery crashed", summary.run_id)
        return replace(summary, alerts={"error": "crashed"})
    finally:
        del previous
    if report is None or not report.failed:
        # Told (or nothing to tell): this run is the next alert's baseline. After a failed
        # delivery the baseline stays, so the next run tells the same news again.
        try:
            store.mark_alerted(summary.run_id)
        except AuditorError as exc:
            log.error("alerts: run_id=%s baseline not advanced: %s", summary.run_id, exc)
    if report is None:
        return replace(summary, alerts={"decision": "nothing to tell"})
    return replace(summary, alerts={r.channel: r.status for r in report.results})


def _alert_failed(
    alerter: RunAlerter,
    store: AuditStore,
    handle: RunHandle,
    tenant: str,
    now: datetime,
) -> None:
    """Tell a run whose collection failed outright: everything unknown, with its errors."""
    try:
        errors = store.run(handle.run_id).errors
    except AuditorError:
        errors = (CollectionError("collection", "the audit failed; see the run's log"),)
    try:
        evaluation = failed_run_evaluation(tenant, now, errors)
        alerter(evaluation, _previous_run(store), handle.run_id, False, errors, ())
    except Exception:  # the failure itself is what gets raised, not an alerting problem
        log.exception("alerts: run_id=%s delivery of the failure alert crashed", handle.run_id)


# -- building the dependencies from the settings ---------------------------------------------


def audit_from_settings(settings: Settings, *, store: AuditStore | None = None) -> RunSummary:
    """What the timer and `python -m auditor audit` run."""
    # The SDKs log every HTTP request at INFO: hundreds of lines per run, with URLs. Keep
    # the audit's own lines (run id, counts, durations) readable.
    for name in ("azure", "httpx", "msal"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not settings.exo_tenant:
        raise ConfigError("EXO_TENANT", "is required to audit a tenant")
    store = store or wiring.store_from_settings(settings)
    with (
        wiring.exchange_collector(settings, spread=store.last_name_spread) as collect,
        wiring.usage_collector(settings) as usage,
        wiring.change_collector(settings) as changes,
        httpx.Client(timeout=30.0) as alert_http,
    ):
        return run_audit(
            store=store,
            collect=collect,
            tenant=settings.exo_tenant,
            allowlist_path=settings.allowlist,
            expiring_days=settings.expiring_days,
            alerter=run_alerter(settings, http=alert_http, ledger=store, store=store),
            proposer=wiring.proposer_from_settings(settings),
            usage=usage,
            changes=changes,
        )
