"""Usage evidence in the nightly audit: the incremental sign-in read and its stored form.

Sign-ins are kept 30 days by Entra, so every run keeps the window's sign-ins with the run (the
`signins` blob, `smtp-auth-signins/1`) and the next run reads only what is new: from the last
collected run's `collected_at` (less an overlap for late-arriving records) to now, merged with
what that run kept, de-duplicated, older ones dropped. `show` and `replay` judge a run with the
usage evidence it kept; a run without one was judged with usage off.

Nothing here fails an audit: a read that fails is unknown evidence (with its reason), a store
that refuses the blob is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from auditor.core.errors import AuditorError
from auditor.core.usage import (
    UsageEvidence,
    UsageState,
    decode_usage,
    encode_usage,
    merge_signins,
    window_start,
)
from auditor.storage.audit_store import AuditStore

__all__ = [
    "SIGNINS_BLOB",
    "OVERLAP",
    "SignInRead",
    "UsageCollector",
    "incremental_usage",
    "stored_usage",
    "previous_usage",
    "gather_usage",
    "save_usage",
]

log = logging.getLogger("auditor.usage")

SIGNINS_BLOB = "signins"
OVERLAP = timedelta(hours=2)  # sign-ins can appear in the log minutes to hours late
_SEARCH_RUNS = 10

# (since, now, lookback_days) -> the sign-ins from `since` on (`SignInReader.read`).
SignInRead = Callable[[datetime, datetime, int], UsageEvidence]
# (now, the last collected evidence or None) -> this run's evidence.
UsageCollector = Callable[[datetime, UsageEvidence | None], UsageEvidence]


def incremental_usage(
    read: SignInRead,
    now: datetime,
    previous: UsageEvidence | None,
    lookback_days: int,
    *,
    overlap: timedelta = OVERLAP,
) -> UsageEvidence:
    """This run's evidence: only what is new since `previous` is read, then merged."""
    start = window_start(now, lookback_days)
    since = start
    chained = (
        previous is not None
        and previous.state is UsageState.COLLECTED
        and previous.collected_at is not None
        and previous.since is not None
        and previous.since <= start + overlap  # it covers the window's start
        and previous.collected_at - overlap > start
        and previous.collected_at <= now
    )
    if chained:
        assert previous is not None and previous.collected_at is not None
        since = previous.collected_at - overlap
    fresh = read(since, now, lookback_days)
    if fresh.state is not UsageState.COLLECTED or not chained:
        return fresh
    assert previous is not None
    return UsageEvidence(
        UsageState.COLLECTED,
        collected_at=now,
        since=start,
        lookback_days=lookback_days,
        signins=merge_signins(previous.signins, fresh.signins, since=start),
        pages=fresh.pages,
        source=fresh.source,
    )


def stored_usage(store: AuditStore, run_id: str) -> UsageEvidence | None:
    """The usage evidence a run kept; None when it kept none (usage was off). Unreadable
    stored evidence is unknown, never "no use"."""
    try:
        data = store.read_blob(run_id, SIGNINS_BLOB)
    except AuditorError as exc:
        return UsageEvidence.unknown(f"the run's stored sign-in evidence is unreadable: {exc}")
    if data is None:
        return None
    try:
        return decode_usage(data)
    except (ValueError, KeyError, TypeError) as exc:
        return UsageEvidence.unknown(f"the run's stored sign-in evidence is corrupt: {exc}")


def previous_usage(store: AuditStore) -> UsageEvidence | None:
    """The most recent run's collected sign-in evidence (the watermark), if any."""
    try:
        runs = store.runs(limit=_SEARCH_RUNS)
    except AuditorError as exc:
        log.warning("usage: previous runs unreadable, reading the whole window: %s", exc)
        return None
    for run in runs:
        evidence = stored_usage(store, run.run_id)
        if evidence is not None and evidence.state is UsageState.COLLECTED:
            return evidence
    return None


def gather_usage(store: AuditStore, collect: UsageCollector, now: datetime) -> UsageEvidence:
    """This run's usage evidence; never raises."""
    try:
        return collect(now, previous_usage(store))
    except Exception as exc:  # evidence that could not be read is unknown, never a crash
        log.warning("usage: sign-in evidence unknown: %s", type(exc).__name__)
        return UsageEvidence.unknown(
            f"the sign-in read failed: {type(exc).__name__}: {exc}", collected_at=now
        )


def save_usage(store: AuditStore, run_id: str, evidence: UsageEvidence) -> None:
    """Keep the evidence with the run (so show/replay carry it); a refusal is logged."""
    try:
        store.write_blob(run_id, SIGNINS_BLOB, encode_usage(evidence))
    except AuditorError as exc:
        log.error("usage: run %s: sign-in evidence not stored: %s", run_id, exc)
