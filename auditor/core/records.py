"""PURE: what the history keeps about runs, the organisation switch and a mailbox's timeline.

The audit store writes and reads these; the reports and the alerts render them. They live in
the core so that renderers never import the storage adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from auditor.core.history import FindingEvent, MailboxChange, MailboxState
from auditor.core.model import CollectionError, Effective

__all__ = [
    "RunRecord",
    "OrgChange",
    "RecordResult",
    "TimelineEntry",
    "MailboxTimeline",
]


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    tenant: str
    status: str  # running, complete, incomplete, suspect, failed, abandoned
    started_at: datetime
    finished_at: datetime | None = None
    complete: bool = False
    org_disabled: bool | None = None
    counts: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    errors: tuple[CollectionError, ...] = ()
    allowlist_source: str = ""
    today: date | None = None
    expiring_days: int = 14
    exit_code: int | None = None
    evidence_bytes: int = 0
    abandoned_by: str | None = None  # the run that found this one dead and took over
    abandoned_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OrgChange:
    run_id: str
    before: bool | None
    after: bool | None
    first: bool  # the first observation, not a change


@dataclass(frozen=True, slots=True)
class RecordResult:
    run: RunRecord
    mailbox_changes: tuple[MailboxChange, ...]
    finding_events: tuple[FindingEvent, ...]
    new_findings: tuple[str, ...]
    org_change: OrgChange | None
    baseline: bool


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """The mailbox's state from `run_id` on. `cause`: first-seen, added, changed, removed,
    returned, organisation (the organisation value changed an inheriting mailbox)."""

    run_id: str
    cause: str
    setting: str
    org_disabled: bool | None
    effective: Effective
    via: str | None
    address: str | None
    upn: str | None
    rtype: str | None
    removed: bool
    fields: tuple[str, ...] = ()
    changed_by: str | None = None  # who made the change, from the audit log (app.attribution)


@dataclass(frozen=True, slots=True)
class MailboxTimeline:
    identity: str
    key: str
    state: MailboxState | None
    entries: tuple[TimelineEntry, ...]  # newest first

    def as_of(self, run_id: str) -> TimelineEntry | None:
        """The state recorded at (or before) a run; None if not yet seen then."""
        for entry in self.entries:
            if entry.run_id <= run_id:
                return entry
        return None
