"""Change attribution in the nightly audit and in `history`/`check`.

Each run (with USAGE_EVIDENCE) reads the unified audit log incrementally — from the last
collected read less `LAG` (records arrive late), or `FIRST_DAYS` back on the first run — merges
it with what that run kept (`KEEP` days) and keeps the result with the run as the `auditlog`
blob. `history` and `check` join the recorded changes to the latest kept log when they are
asked, so a change seen before its audit record existed is annotated by a later run's log.
A failed read is stored as unknown: changes after the last good read stay "unknown", never
wrongly attributed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from auditor.core.attribution import (
    LAG,
    Attribution,
    ChangeLog,
    attribute,
    decode_changelog,
    encode_changelog,
    merge_changes,
)
from auditor.core.errors import AuditorError
from auditor.core.history import run_time
from auditor.core.model import Setting
from auditor.core.records import MailboxTimeline
from auditor.storage.audit_store import AuditStore

__all__ = [
    "AUDITLOG_BLOB",
    "ChangeRead",
    "ChangeCollector",
    "incremental_changes",
    "gather_changes",
    "save_changes",
    "Attributor",
    "attributor",
    "attributed_timeline",
]

log = logging.getLogger("auditor.attribution")

AUDITLOG_BLOB = "auditlog"
FIRST_DAYS = 30
KEEP = timedelta(days=90)
_SEARCH_RUNS = 10

# (start, end) -> the audited changes between them (`exchange.auditlog.read_changes`).
ChangeRead = Callable[[datetime, datetime], ChangeLog]
# (now, the last collected log or None) -> this run's log.
ChangeCollector = Callable[[datetime, ChangeLog | None], ChangeLog]


def incremental_changes(read: ChangeRead, now: datetime, previous: ChangeLog | None) -> ChangeLog:
    start = now - timedelta(days=FIRST_DAYS)
    chained = (
        previous is not None
        and previous.state == "collected"
        and previous.collected_at is not None
        and previous.collected_at <= now
    )
    if chained:
        assert previous is not None and previous.collected_at is not None
        start = max(previous.collected_at - LAG, now - KEEP)
    fresh = read(start, now)
    if fresh.state != "collected" or not chained:
        return fresh
    assert previous is not None
    keep_from = now - KEEP
    return ChangeLog(
        "collected",
        collected_at=now,
        since=max(previous.since or keep_from, keep_from),
        changes=merge_changes(previous.changes, fresh.changes, since=keep_from),
    )


def _stored(store: AuditStore, run_id: str) -> ChangeLog | None:
    try:
        data = store.read_blob(run_id, AUDITLOG_BLOB)
    except AuditorError as exc:
        return ChangeLog("unknown", f"the run's stored audit log is unreadable: {exc}")
    if data is None:
        return None
    try:
        return decode_changelog(data)
    except (ValueError, KeyError, TypeError) as exc:
        return ChangeLog("unknown", f"the run's stored audit log is corrupt: {exc}")


def _logs(store: AuditStore) -> tuple[ChangeLog | None, ChangeLog | None]:
    """(the latest kept log, whatever its state; the latest collected one)."""
    latest = collected = None
    try:
        runs = store.runs(limit=_SEARCH_RUNS)
    except AuditorError as exc:
        log.warning("attribution: runs unreadable: %s", exc)
        return None, None
    for run in runs:
        kept = _stored(store, run.run_id)
        if kept is None:
            continue
        latest = latest or kept
        if kept.state == "collected":
            collected = kept
            break
    return latest, collected


def gather_changes(store: AuditStore, collect: ChangeCollector, now: datetime) -> ChangeLog:
    """This run's audit-log evidence; never raises."""
    try:
        return collect(now, _logs(store)[1])
    except Exception as exc:  # an unreadable audit log is unknown attribution, never a crash
        return ChangeLog(
            "unknown", f"the audit log read failed: {type(exc).__name__}: {exc}", collected_at=now
        )


def save_changes(store: AuditStore, run_id: str, changes: ChangeLog) -> None:
    try:
        store.write_blob(run_id, AUDITLOG_BLOB, encode_changelog(changes))
    except AuditorError as exc:
        log.error("attribution: run %s: audit log not stored: %s", run_id, exc)


# (run id the change was seen in, identities of the object, new value code, organisation?)
Attributor = Callable[[str, Iterable[str], str, bool], Attribution]


def attributor(store: AuditStore) -> Attributor | None:
    """Attributes recorded changes with the latest kept audit log; None when no run kept one
    (USAGE_EVIDENCE off): then nothing is said about who changed what."""
    latest, collected = _logs(store)
    if latest is None:
        return None
    try:
        runs = sorted(
            (r for r in store.runs(limit=500) if r.status not in ("failed", "running")),
            key=lambda r: r.run_id,
        )
    except AuditorError:
        runs = []
    failure = latest.reason if latest.state != "collected" else ""

    def attribute_change(
        run_id: str, identities: Iterable[str], after: str, organisation: bool
    ) -> Attribution:
        before = [r for r in runs if r.run_id < run_id]
        previous_at = before[-1].started_at if before else None
        this = next((r for r in runs if r.run_id == run_id), None)
        started = run_time(run_id)  # the run's clock: what its own audit-log read reached
        # The change was read during the run: records up to its end may be the one.
        seen_at = max((this.finished_at if this is not None else None) or started, started)
        value, known = Setting.from_code(after) if after else (None, False)
        if collected is None or (
            collected.collected_at is not None and started > collected.collected_at
        ):
            reason = failure or "the audit log has not been read since this change"
            return Attribution("unknown", reason=f"the audit log read failed: {reason}")
        return attribute(
            collected,
            identities=identities,
            after=value,
            after_known=known,
            previous_run_at=previous_at,
            seen_at=seen_at,
            organisation=organisation,
        )

    return attribute_change


def attributed_timeline(store: AuditStore, timeline: MailboxTimeline) -> MailboxTimeline:
    """The timeline with "changed by ..." on each setting change and organisation flip."""
    attribute_change = attributor(store)
    if attribute_change is None:
        return timeline
    identities = {timeline.key}
    for entry in timeline.entries:
        identities.update(v.lower() for v in (entry.address, entry.upn) if v)
    if timeline.state is not None:
        identities.update(v.lower() for v in (timeline.state.address, timeline.state.upn) if v)
    entries = []
    for entry in timeline.entries:
        if entry.cause == "changed" and "setting" in entry.fields:
            who = attribute_change(entry.run_id, identities, entry.setting, False)
            entry = replace(entry, changed_by=who.text())
        elif entry.cause == "organisation":
            code = Setting.text(entry.org_disabled) if entry.org_disabled is not None else ""
            who = attribute_change(entry.run_id, (), code, True)
            entry = replace(entry, changed_by=who.text())
        entries.append(entry)
    return replace(timeline, entries=tuple(entries))
