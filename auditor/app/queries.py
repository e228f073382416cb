"""Questions asked of the history: a mailbox's timeline, its state as of a run, a past run's
findings (`show`) and the same evidence judged against another allowlist (`replay`).

A mailbox is named by any identity the allowlist accepts (address, proxy address, UPN, alias,
name, GUID...): it is resolved against the most recent recorded evidence with the allowlist's
own matching rules, then against the recorded state (for mailboxes since removed).
"""

from __future__ import annotations

from datetime import date

from auditor.app.usage import stored_usage
from auditor.core.allowlist import parse_allowlist
from auditor.core.errors import InputError
from auditor.core.model import Allowlist, Effective, Evaluation, Setting, normalise_identity
from auditor.core.policy import effective_state, evaluate
from auditor.core.records import MailboxTimeline, OrgChange, RunRecord, TimelineEntry
from auditor.core.snapshot import parse_snapshot
from auditor.storage.audit_store import AuditStore

__all__ = [
    "resolve_mailbox",
    "mailbox_timeline",
    "run_evaluation",
    "org_at",
]

_SEARCH_RUNS = 30  # how far back to look for evidence that names an identity


def org_at(history: list[OrgChange], run_id: str) -> bool | None:
    """The organisation value in force at a run (history newest first)."""
    for change in history:
        if change.run_id <= run_id:
            return change.after
    return None


def resolve_mailbox(store: AuditStore, identity: str) -> str:
    """The store key of the one mailbox `identity` names. InputError if none or several."""
    wanted = normalise_identity(identity)
    if not wanted:
        raise InputError("MAILBOX", "empty identity")
    if store.mailbox_state(wanted) is not None:
        return wanted
    for run in store.runs(limit=_SEARCH_RUNS):
        evidence = store.read_blob(run.run_id, "snapshot")
        if evidence is None:
            continue
        snapshot = parse_snapshot(evidence, source=f"run {run.run_id}")
        if snapshot.mailboxes is None:
            continue
        found = {m.key: m.display for m in snapshot.mailboxes if wanted in m.match_keys}
        if len(found) > 1:
            names = ", ".join(sorted(found.values())[:5])
            raise InputError("MAILBOX", f"{identity!r} matches {len(found)} mailboxes: {names}")
        if found:
            return next(iter(found))
        break  # the newest evidence with mailboxes did not name it: look at recorded state
    matches = [
        key
        for key, state in store.mailbox_states().items()
        if wanted in {(state.address or "").lower(), (state.upn or "").lower(), key}
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError("MAILBOX", f"{identity!r} matches {len(matches)} recorded mailboxes")
    raise InputError("MAILBOX", f"no recorded mailbox matches {identity!r}")


def _entry(
    run_id: str, cause: str, facts: dict[str, object], org: bool | None, fields: tuple[str, ...]
) -> TimelineEntry:
    code = str(facts.get("setting") or "missing")
    setting, present = Setting.from_code(code)
    removed = bool(facts.get("removed"))
    state, via = effective_state(setting, present, org)
    return TimelineEntry(
        run_id=run_id,
        cause=cause,
        setting=code,
        org_disabled=org,
        effective=Effective.UNKNOWN if removed else state,
        via=None if removed else via,
        address=_text(facts.get("address")),
        upn=_text(facts.get("upn")),
        rtype=_text(facts.get("type")),
        removed=removed,
        fields=fields,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def mailbox_timeline(store: AuditStore, identity: str) -> MailboxTimeline:
    """Every recorded state of one mailbox, with its effective state at each point."""
    key = resolve_mailbox(store, identity)
    state = store.mailbox_state(key)
    changes = sorted(store.mailbox_changes(key), key=lambda c: c.run_id)  # oldest first
    org_history = store.org_history()
    if state is None and not changes:
        raise InputError("MAILBOX", f"no recorded history for {identity!r}")
    entries: list[TimelineEntry] = []
    if changes and changes[0].kind == "added":
        first_run, facts = changes[0].run_id, changes[0].after or {}
        changes = changes[1:]
        entries.append(_entry(first_run, "added", facts, org_at(org_history, first_run), ()))
    else:
        first_run = state.first_seen if state else changes[0].run_id
        facts = (changes[0].before if changes else None) or (state.facts() if state else {})
        entries.append(_entry(first_run, "first-seen", facts, org_at(org_history, first_run), ()))
    points = [(c.run_id, c.kind, c.after or {}, c.fields) for c in changes]
    points += [
        (o.run_id, "organisation", {}, ("org",))
        for o in org_history
        if not o.first and o.run_id > first_run
    ]
    for run_id, cause, after, fields in sorted(
        points, key=lambda p: (p[0], p[1] == "organisation")
    ):
        current = entries[-1]
        org = org_at(org_history, run_id)
        if cause == "organisation":
            if current.removed:
                continue
            facts = {
                "setting": current.setting,
                "address": current.address,
                "upn": current.upn,
                "type": current.rtype,
                "removed": False,
            }
            entry = _entry(run_id, cause, facts, org, fields)
            if entry.effective == current.effective:
                continue  # the organisation change did not reach this mailbox
        else:
            entry = _entry(run_id, cause, after, org, fields)
        entries.append(entry)
    return MailboxTimeline(
        identity=identity, key=key, state=state, entries=tuple(reversed(entries))
    )


def run_evaluation(
    store: AuditStore,
    run_id: str,
    *,
    allowlist: Allowlist | None = None,
    today: date | None = None,
) -> tuple[RunRecord, Evaluation]:
    """A recorded run's evidence judged again: with the run's own allowlist and day (`show`),
    or with another allowlist (`replay`). The policy is pure, so `show` gives the findings the
    run had."""
    run = store.run(run_id)
    evidence = store.read_blob(run.run_id, "snapshot")
    if evidence is None:
        reason = "; ".join(f"{e.source}: {e.message}" for e in run.errors) or run.status
        raise InputError("RUN", f"run {run.run_id} kept no evidence ({reason})")
    snapshot = parse_snapshot(evidence, source=f"run {run.run_id}")
    if allowlist is None:
        raw = store.read_blob(run.run_id, "allowlist") or b""
        source = run.allowlist_source or f"allowlist of run {run.run_id}"
        allowlist = parse_allowlist(raw, source=source, csv_format=source.lower().endswith(".csv"))
    evaluated_at = run.finished_at or run.started_at
    day = today or run.today or evaluated_at.date()
    evaluation = evaluate(
        snapshot,
        allowlist,
        day,
        evaluated_at=evaluated_at,
        expiring_days=run.expiring_days,
        usage=stored_usage(store, run.run_id),  # the sign-ins the run kept (None: usage off)
    )
    return run, evaluation
