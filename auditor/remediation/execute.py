"""Execute an approved proposal: re-check, apply, verify, record (docs/architecture.md).

`execute` is single-use and idempotent: `ProposalStore.start` lets one executor move the
proposal approved → running (ETag), a retried queue message finds it running or finished and
does nothing, and an execution that was cut off is resumed after its lease, skipping targets
that already have a result. Each target is re-read before the change, so a change applied just
before a crash is found "already compliant" on resume, never applied twice.

Before the first change `auditor.remediation.guard` verifies the signed approval record and the
invariants; a refusal is recorded and changes nothing. Results are recorded in packed rows of
`FLUSH_EVERY` (the lease is renewed with each); a storage error gives the lease up and is
raised, so the queue's next delivery (or `resume_stuck`, the nightly sweep) resumes.

Per target (in `step` order):
- revoke (explicit enable): skipped if the mailbox is now allowlisted or already effectively
  disabled; else set to the planned value, read back, verified.
- pin (allowlisted, inheriting): skipped if no longer allowlisted, already `false`, or now
  explicitly disabled (pinning would then enable it: that is a grant); else set `false`, verified.
- organisation: flipped only when every selected pin succeeded and a fresh read of every
  mailbox, evaluated against the re-read allowlist, shows no allowlisted mailbox that would
  still inherit (or whose state is unknown). Then `Set-TransportConfig` true, read back.
- loses (organisation plan): after the flip, read back: verified when effectively disabled.
- grant: skipped if no longer allowlisted (current entry) or already `false`; else set `false`.

A read that fails is a failed target, never a pass; nothing is changed on unknown evidence.

Verify: a read right after a write can still show the old value (replication). A change is
read back with backoff until the new value is seen or `verify_seconds` have passed since the
write; only then is it "verify failed". The detail says how long it took. Mailbox changes are
verified together (`remediation.verify`, reads in a bounded pool) before the organisation step
and at the end.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from auditor.core.errors import AuditorError, InputError, Refused, StoreError
from auditor.core.model import Allowlist, Effective, Setting, Status
from auditor.core.policy import effective_state, evaluate
from auditor.core.proposals import (
    Record,
    Result,
    Role,
    State,
    TargetRecord,
    break_line,
    will_break,
)
from auditor.core.snapshot import build_snapshot, mailbox_from_records, raw_record
from auditor.remediation.guard import check_invariants, named_now, verify_approval
from auditor.remediation.plan import org_blockers
from auditor.remediation.verify import Check, Verifier
from auditor.storage.proposal_store import ProposalStore
from auditor.storage.proposal_tables import TargetResult

__all__ = ["Exchange", "execute", "preview", "Preview", "outcome_state", "resume_stuck"]

FLUSH_EVERY = 50  # target results per packed result row (and lease renewal)

_show = Setting.text  # the one setting codec, short for the many messages below

log = logging.getLogger(__name__)
SETTING = "SmtpClientAuthenticationDisabled"


class Exchange(Protocol):
    """What execution needs from the Exchange adapter (`auditor.exchange.ExchangeClient`)."""

    def get_cas_mailbox(self, identity: str) -> dict[str, Any]: ...
    def set_cas_mailbox(self, guid: str, disabled: bool | None) -> None: ...
    def get_transport_config(self) -> dict[str, Any]: ...
    def set_transport_config(self, disabled: bool) -> None: ...
    def get_cas_mailboxes(self) -> list[dict[str, Any]]: ...
    def get_mailboxes(self) -> list[dict[str, Any]]: ...


class _Unknown(AuditorError):
    """Evidence that could not be read: the target fails, nothing is changed."""


def _setting(record: Mapping[str, Any], what: str) -> bool | None:
    for key, value in record.items():
        if key.lower() == SETTING.lower():
            if value is not None and not isinstance(value, bool):
                raise _Unknown(f"{what}: {SETTING} is {value!r}, not true/false/null")
            return value
    raise _Unknown(f"{what}: the read carries no {SETTING} value")


def _keys(record: Mapping[str, Any], target: TargetRecord) -> set[str]:
    """Every identity the allowlist may use for this mailbox: those of the fresh read (the
    same rules as the audit's) plus the planned UPN and address (a CAS read has no UPN)."""
    try:
        where = f"re-read of {target.target.key}"
        mailbox = mailbox_from_records(raw_record(record, where), None, where)
        keys = set(mailbox.match_keys)
    except InputError:  # a read without any identifier: only what the plan knew
        keys = set()
    for value in (target.target.guid, target.target.upn, target.target.address):
        if value:
            keys.add(value.strip().lower())
    return keys


def _allowlisted(
    allowlist: Allowlist, keys: set[str], today: Any, ambiguous: frozenset[str] = frozenset()
) -> str | None:
    """Where the current allowlist entry naming this mailbox is, or None. Entries in
    `ambiguous` (naming several mailboxes) do not count, as in the audit."""
    for entry in allowlist.entries:
        if entry.key in keys and entry.is_current(today) and entry.key not in ambiguous:
            return entry.where
    return None


@dataclass(frozen=True, slots=True)
class _Decision:
    action: str  # "apply", "skip", "fail"
    detail: str
    before: bool | None = None
    value: bool | None = None  # what to write for "apply"


def _decide_mailbox(
    target: TargetRecord,
    live: Mapping[str, Any],
    org: bool | None,
    allowlist: Allowlist,
    today: Any,
    ambiguous: frozenset[str] = frozenset(),
    named: Mapping[str, str] | None = None,
) -> _Decision:
    t = target.target
    setting = _setting(live, t.display)
    if named is not None and t.role in (Role.PIN, Role.GRANT):
        # Enabling (or pinning) only what the allowlist names now in a fresh read of every
        # mailbox: never by the UPN or address stored with the plan.
        where: str | None = named.get((t.guid or t.key).lower())
    else:
        where = _allowlisted(
            allowlist,
            _keys(live, target),
            today,
            ambiguous if t.role is Role.GRANT else frozenset(),
        )
    state, _via = effective_state(setting, True, org)
    if t.role is Role.REVOKE:
        if where:
            return _Decision("skip", f"now allowlisted ({where}): not lowered", setting)
        if state is not Effective.ENABLED:
            return _Decision(
                "skip",
                f"already compliant: setting {_show(setting)}, effectively {state}",
                setting,
            )
        if t.after is None and org is not True:
            return _Decision(
                "fail",
                "not changed: the organisation now allows SMTP AUTH, so null would keep it "
                "enabled; a new audit will propose the right change",
                setting,
            )
        return _Decision("apply", f"{_show(setting)} -> {_show(t.after)}", setting, t.after)
    if t.role is Role.PIN:
        if not where:
            return _Decision(
                "skip", "no longer allowlisted: not pinned (it follows the organisation)", setting
            )
        if setting is False:
            return _Decision("skip", "already pinned (false)", setting)
        if setting is True:
            return _Decision(
                "skip",
                "now explicitly disabled (true): pinning would enable it, which is a grant",
                setting,
            )
        return _Decision("apply", f"null -> false (allowlisted at {where})", setting, False)
    if t.role is Role.GRANT:
        if not where:
            return _Decision(
                "skip",
                "no longer allowlisted (the entry was removed or expired, or it now names "
                "several mailboxes)",
                setting,
            )
        if setting is False:
            return _Decision("skip", "already explicitly enabled (false)", setting)
        return _Decision(
            "apply", f"{_show(setting)} -> false (allowlisted at {where})", setting, False
        )
    raise ValueError(f"not a mailbox role: {t.role}")


def outcome_state(targets: list[TargetRecord]) -> State:
    chosen = [t for t in targets if t.selected]
    failed = any(t.result is Result.FAILED for t in chosen)
    done = any(t.result in (Result.APPLIED, Result.VERIFIED) for t in chosen)
    if not failed:
        return State.APPLIED
    return State.PARTIALLY_APPLIED if done else State.FAILED


class _Run:
    def __init__(
        self,
        store: ProposalStore,
        exchange: Exchange,
        allowlist: Allowlist,
        now: Callable[[], datetime],
        record: Record,
        verifier: Verifier | None = None,
    ) -> None:
        self.store = store
        self.exchange = exchange
        self.allowlist = allowlist
        self.now = now
        self.record = record
        self.verifier = verifier or Verifier()
        self.results: dict[str, Result] = {t.target.key: t.result for t in record.targets}
        self.org: bool | None = None
        self.ambiguous: frozenset[str] = frozenset()  # entry keys naming several mailboxes
        self.named: dict[str, str] | None = None  # GUID -> allowlist entry, read now
        self.buffer: list[TargetResult] = []

    def put(
        self, target: TargetRecord, result: Result, detail: str, before: str = "", after: str = ""
    ) -> None:
        self.results[target.target.key] = result
        self.buffer.append((target, result, detail, before, after))
        if len(self.buffer) >= FLUSH_EVERY or target.target.role is Role.ORG:
            self.flush()

    def flush(self) -> None:
        """Record the buffered results (one packed row) and renew the lease. A crash loses at
        most the buffer: those targets are re-checked on resume, never applied twice."""
        if not self.buffer:
            return
        self.store.record_results(self.record.id, self.buffer, now=self.now())
        self.buffer = []
        self.store.renew(self.record, now=self.now())

    def mailbox(self, target: TargetRecord) -> None:
        t = target.target
        guid = t.guid or t.key
        try:
            live = self.exchange.get_cas_mailbox(guid)
            decision = _decide_mailbox(
                target,
                live,
                self.org,
                self.allowlist,
                self.now().date(),
                self.ambiguous,
                self.named,
            )
        except AuditorError as exc:
            self.put(target, Result.FAILED, f"could not re-read before the change: {exc}")
            return
        before = _show(decision.before)
        if decision.action == "skip":
            self.put(target, Result.SKIPPED, decision.detail, before)
            return
        if decision.action == "fail":
            self.put(target, Result.FAILED, decision.detail, before)
            return
        try:
            self.exchange.set_cas_mailbox(guid, decision.value)
        except AuditorError as exc:
            self.put(target, Result.FAILED, f"Set-CASMailbox failed: {exc}", before)
            return
        self.verifier.add(
            Check(
                target,
                lambda: _setting(self.exchange.get_cas_mailbox(guid), t.display),
                decision.value,
                decision.detail,
                before,
            )
        )

    def verify(self) -> None:
        """Settle every change written since the last call (see `_Verifier`)."""
        for check in self.verifier.settle():
            self.put(check.target, check.result, check.detail, check.before, check.after)

    def org_blockers(self, pins: list[TargetRecord]) -> list[str]:
        reasons = [
            f"pin of {p.target.display} failed"
            for p in pins
            if self.results.get(p.target.key) is Result.FAILED
        ]
        if reasons:
            return reasons
        # A fresh, complete read of every mailbox against the re-read allowlist: nobody
        # allowlisted may still inherit when the organisation is flipped.
        try:
            document = {
                "schema": "smtp-auth-snapshot/1",
                "tenant": self.record.tenant,
                "collected_at": self.now().isoformat(),
                "transport_config": {SETTING: self.org},
                "cas_mailboxes": self.exchange.get_cas_mailboxes(),
                "mailboxes": self.exchange.get_mailboxes(),
                "errors": [],
            }
            snapshot = build_snapshot(document, source="re-check")
        except (AuditorError, InputError) as exc:
            return [f"could not re-read every mailbox: {exc}"]
        evaluation = evaluate(snapshot, self.allowlist, self.now().date(), evaluated_at=self.now())
        reasons = org_blockers(evaluation)
        for f in evaluation.findings:
            if f.status is Status.EXEMPT and f.via == "inherited":
                reasons.append(f"allowlisted {f.subject} still inherits and would lose SMTP AUTH")
        return reasons

    def organisation(self, target: TargetRecord, pins: list[TargetRecord]) -> None:
        if self.org is True:
            self.put(target, Result.SKIPPED, "already compliant: the organisation blocks", "true")
            return
        blockers = self.org_blockers(pins)
        if blockers:
            shown = "; ".join(blockers[:10])
            more = f" (+{len(blockers) - 10} more)" if len(blockers) > 10 else ""
            self.put(
                target,
                Result.FAILED,
                f"organisation not changed: {shown}{more}",
                _show(self.org),
            )
            return
        try:
            self.exchange.set_transport_config(True)
        except AuditorError as exc:
            self.put(target, Result.FAILED, f"Set-TransportConfig failed: {exc}", _show(self.org))
            return
        check = Check(
            target,
            lambda: _setting(self.exchange.get_transport_config(), "organisation"),
            True,
            "false -> true",
            "false",
        )
        self.verifier.add(check)
        self.verify()
        if check.result is Result.APPLIED:
            self.org = True

    def loses(self, target: TargetRecord) -> None:
        if self.org is not True:
            self.put(target, Result.SKIPPED, "the organisation was not changed")
            return
        try:
            live = self.exchange.get_cas_mailbox(target.target.guid or target.target.key)
            setting = _setting(live, target.target.display)
        except AuditorError as exc:
            self.put(target, Result.FAILED, f"could not read back: {exc}")
            return
        state, _ = effective_state(setting, True, True)
        if state is Effective.DISABLED:
            self.put(
                target, Result.VERIFIED, "effectively disabled by the organisation", "", "null"
            )
        else:
            self.put(
                target,
                Result.FAILED,
                f"still enabled: its setting is now {_show(setting)} (changed since the plan); "
                "the next audit flags it",
                "",
                _show(setting),
            )


def execute(
    proposal_id: str,
    *,
    store: ProposalStore,
    exchange: Exchange,
    load_allowlist: Callable[[], Allowlist],
    now: Callable[[], datetime],
    announce: Callable[[Record], None] | None = None,
    verify_seconds: float = 120.0,
    verify_workers: int = 16,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Record:
    """Run an approved proposal once; returns its record (unchanged if there was nothing to do).

    `load_allowlist` is called at execution time: a mailbox allowlisted since the plan is not
    lowered. If it cannot be read, nothing is changed and the proposal fails. A change is read
    back until it shows or `verify_seconds` (REMEDIATION_VERIFY_SECONDS) pass, with up to
    `verify_workers` reads at once. A storage error mid-run gives the lease up and is raised:
    the next delivery (or the nightly sweep) resumes.
    """
    record = store.start(proposal_id, now=now())
    if record is None:
        return store.get(proposal_id)
    try:
        verify_approval(record, store.signing_key, now())
        check_invariants(record)
    except Refused as exc:
        why = f"refused, nothing changed: {exc.code}: {exc}"
        log.error("remediation %s: %s", record.id, why)
        final = store.finish(record.id, State.FAILED, why, now=now(), event="refused")
        _announce(announce, final)
        return final
    try:
        verifier = Verifier(bound=verify_seconds, workers=verify_workers, sleep=sleep, clock=clock)
        return _execute(record, store, exchange, load_allowlist, now, announce, verifier)
    except (StoreError, Refused) as exc:
        log.error("remediation %s: interrupted, to be resumed: %s", record.id, exc)
        with contextlib.suppress(StoreError, Refused):  # else the lease runs out by itself
            store.release(record, now=now(), why=f"interrupted: {exc}")
        raise


def _execute(
    record: Record,
    store: ProposalStore,
    exchange: Exchange,
    load_allowlist: Callable[[], Allowlist],
    now: Callable[[], datetime],
    announce: Callable[[Record], None] | None,
    verifier: Verifier,
) -> Record:
    pending = sorted(
        (t for t in record.targets if t.selected and t.result is Result.PENDING),
        key=lambda t: (t.target.step, t.row),
    )
    try:
        allowlist = load_allowlist()
    except AuditorError as exc:
        return _abort(
            store, record, pending, f"the allowlist could not be re-read: {exc}", now, announce
        )
    run = _Run(store, exchange, allowlist, now, record, verifier)
    try:
        run.org = _setting(exchange.get_transport_config(), "organisation")
    except AuditorError as exc:
        return _abort(
            store,
            record,
            pending,
            f"the organisation setting could not be read: {exc}",
            now,
            announce,
        )
    if any(t.target.role in (Role.PIN, Role.GRANT) for t in pending):
        # Pinning and enabling only for an entry that names exactly one mailbox now: one read
        # of every mailbox tells which mailboxes the allowlist names validly today.
        try:
            run.named, run.ambiguous = named_now(
                exchange.get_cas_mailboxes(),
                exchange.get_mailboxes(),
                allowlist,
                record.tenant,
                now().date(),
            )
        except (AuditorError, InputError) as exc:
            return _abort(
                store, record, pending, f"the mailboxes could not be re-read: {exc}", now, announce
            )
    pins = [t for t in record.targets if t.selected and t.target.role is Role.PIN]
    for target in pending:
        role = target.target.role
        if role is Role.ORG:
            run.verify()  # the pins' results decide whether the organisation may flip
            run.flush()
            run.organisation(target, pins)
        elif role is Role.REVOKE and target.target.step == 3:
            run.verify()
            run.loses(target)
        else:
            run.mailbox(target)
    run.verify()
    run.flush()
    final = store.get(record.id)
    state = outcome_state(list(final.targets))
    counts: dict[str, int] = {}
    for t in final.targets:
        if t.selected:
            counts[t.result.value] = counts.get(t.result.value, 0) + 1
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "no targets"
    finished = store.finish(record.id, state, summary, now=now())
    _announce(announce, finished)
    return finished


def resume_stuck(
    *,
    store: ProposalStore,
    exchange: Callable[[], Exchange],
    load_allowlist: Callable[[], Allowlist],
    now: Callable[[], datetime],
    announce: Callable[[Record], None] | None = None,
    verify_seconds: float = 120.0,
) -> list[Record]:
    """The nightly sweep: execute approved proposals whose queue message was lost and resume
    running ones whose lease has passed. One failing proposal does not stop the others."""
    done: list[Record] = []
    for proposal_id in store.stuck(now()):
        try:
            done.append(
                execute(
                    proposal_id,
                    store=store,
                    exchange=exchange(),
                    load_allowlist=load_allowlist,
                    now=now,
                    announce=announce,
                    verify_seconds=verify_seconds,
                )
            )
        except AuditorError as exc:
            log.error("remediation %s: sweep could not resume it: %s", proposal_id, exc)
    return done


def _abort(
    store: ProposalStore,
    record: Record,
    pending: list[TargetRecord],
    why: str,
    now: Callable[[], datetime],
    announce: Callable[[Record], None] | None,
) -> Record:
    store.record_results(
        record.id, [(t, Result.FAILED, f"not changed: {why}", "", "") for t in pending], now=now()
    )
    final = store.finish(record.id, State.FAILED, why, now=now())
    _announce(announce, final)
    return final


def _announce(announce: Callable[[Record], None] | None, record: Record) -> None:
    if announce is None:
        return
    try:
        announce(record)
    except Exception as exc:  # the change is done and recorded; a lost message must not undo it
        log.error("remediation %s: announcing the outcome failed: %s", record.id, exc)
        # ... but it is in the audit trail.


@dataclass(frozen=True, slots=True)
class Preview:
    """What an approval would change now (dry run): one line per selected target."""

    lines: tuple[dict[str, Any], ...]
    breaking: tuple[dict[str, str], ...] = ()  # selected targets that used SMTP AUTH lately

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": True, "will_break": list(self.breaking), "targets": list(self.lines)}


def preview(
    record: Record,
    *,
    exchange: Exchange,
    allowlist: Allowlist,
    today: Any,
    subset: set[str] | None = None,
) -> Preview:
    """Re-check each target read-only and say what would happen; changes nothing."""
    lines: list[dict[str, Any]] = []
    try:
        org: bool | None = _setting(exchange.get_transport_config(), "organisation")
        org_error = ""
    except AuditorError as exc:
        org, org_error = None, str(exc)
    for target in record.targets:
        t = target.target
        if subset is not None and t.key not in subset:
            continue
        line: dict[str, Any] = {"key": t.key, "display": t.display, "role": t.role.value}
        if t.role is Role.ORG:
            if org_error:
                line.update(action="fail", detail=f"cannot read the organisation: {org_error}")
            elif org is True:
                line.update(action="skip", detail="already compliant: the organisation blocks")
            else:
                line.update(action="apply", detail="false -> true, after every pin succeeded")
        elif t.role is Role.REVOKE and t.step == 3:
            line.update(action="consequence", detail="loses SMTP AUTH with the organisation")
        else:
            try:
                live = exchange.get_cas_mailbox(t.guid or t.key)
                decision = _decide_mailbox(target, live, org, allowlist, today)
                line.update(action=decision.action, detail=decision.detail)
            except AuditorError as exc:
                line.update(action="fail", detail=f"cannot re-read: {exc}")
        lines.append(line)
    chosen = [t.target for t in record.targets if subset is None or t.target.key in subset]
    return Preview(tuple(lines), tuple(break_line(t) for t in will_break(chosen)))
