"""Remediation proposals in Table Storage: the state machine (persistence in `proposal_tables`).

States: proposed → approved → running → applied | partially_applied | failed; a proposal can
also end rejected, expired or superseded. Every transition is a conditional replace of the
proposal row (ETag, `MatchConditions.IfNotModified`), so two approvals racing, or a queue
message delivered twice, move it once: the loser gets `Refused("already_used")`, or (executor)
`None`.

Approval writes the signed approval record (`auditor.core.approval`) into the same row, in the
same conditional replace: the executor trusts no state, subset or plan hash it did not verify
against that signature. Execution holds a lease (`LeaseUntil`, `LeaseOwner`), renewed while it
works; a `running` proposal whose lease has passed is resumed by the next executor.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import TableServiceClient

from auditor.core.approval import ApprovalRecord, sign, subset_digest
from auditor.core.errors import ConfigError, Refused
from auditor.core.proposals import Principal, Record, Role, State, plan_hash
from auditor.storage.proposal_rows import iso, subset_row
from auditor.storage.proposal_tables import ProposalTables
from auditor.storage.tables import Conflict, OpCounter

__all__ = ["ProposalStore", "RUNNING_LEASE", "MAX_REASON"]

RUNNING_LEASE = timedelta(minutes=5)
MAX_REASON = 1000


class ProposalStore(ProposalTables):
    """Proposals, their targets and the audit trail, on an injected `TableServiceClient`.

    `signing_key` (APPROVAL_SIGNING_KEY) signs approval records; without it nothing can be
    approved."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        prefix: str = "",
        counter: OpCounter | None = None,
        signing_key: bytes | None = None,
    ) -> None:
        super().__init__(service, prefix=prefix, counter=counter)
        self.signing_key = signing_key

    # -- transitions -----------------------------------------------------------------------

    def _transition(self, record: Record, changes: dict[str, Any]) -> None:
        """Conditional replace of the proposal row; Conflict if someone moved it first."""
        self._replace({**record.extra["row"], "_etag": record.etag}, changes)

    def _refuse_unless_proposed(self, record: Record, now: datetime, actor: str) -> Record:
        if record.state is State.PROPOSED and now > record.expires_at:
            try:
                self._transition(record, {"State": State.EXPIRED.value})
                self.audit(record.id, "expired", actor, "expiry passed before approval", now=now)
            except Conflict:
                pass
            record = replace(record, state=State.EXPIRED)
        if record.state is State.EXPIRED:
            raise Refused("expired", f"proposal {record.id} expired on {iso(record.expires_at)}")
        if record.state is State.REJECTED:
            raise Refused("rejected", f"proposal {record.id} was rejected")
        if record.state is State.SUPERSEDED:
            successor = f" by {record.superseded_by}" if record.superseded_by else ""
            raise Refused(
                "superseded",
                f"proposal {record.id} was superseded{successor} ({record.outcome}): "
                "approve the current proposal instead",
            )
        if record.state is not State.PROPOSED:
            by = f" by {record.approver_name}" if record.approver_name else ""
            raise Refused(
                "already_used", f"proposal {record.id} is already {record.state.value}{by}"
            )
        return record

    def check_approvable(
        self,
        record: Record,
        *,
        now: datetime,
        plan_digest: str,
        subset: Sequence[str] | None = None,
        actor: str = "dry-run",
    ) -> set[str] | None:
        """The selection `approve` would record, or Refused (for dry runs: the same checks)."""
        self._refuse_unless_proposed(record, now, actor)
        if plan_digest != record.plan_hash:
            raise Refused(
                "plan_changed",
                "the plan hash does not match this proposal: reload the confirmation "
                "page and approve what it shows",
            )
        self.check_integrity(record)
        return self._selection(record, subset)

    def check_integrity(self, record: Record) -> None:
        """Refused(tampered) if the stored targets no longer hash to the plan hash."""
        if plan_hash([t.target for t in record.targets]) != record.plan_hash:
            raise Refused(
                "tampered",
                f"proposal {record.id}: stored targets do not match its plan hash; refused",
            )

    def approve(
        self,
        proposal_id: str,
        *,
        plan_digest: str,
        principal: Principal,
        now: datetime,
        subset: Sequence[str] | None = None,
    ) -> Record:
        """proposed → approved for the plan hash the approver saw; optionally a subset. The
        approval record (plan hash, subset, approver, time) is signed and kept in the row."""
        if self.signing_key is None:
            raise ConfigError("APPROVAL_SIGNING_KEY", "is required to approve remediations")
        record = self.get(proposal_id)
        actor = f"{principal.name} ({principal.object_id})"
        try:
            chosen = self.check_approvable(
                record, now=now, plan_digest=plan_digest, subset=subset, actor=actor
            )
        except Refused as exc:
            self.audit(proposal_id, "refused", actor, f"approve: {exc.code}: {exc}", now=now)
            raise
        digest = None if chosen is None else subset_digest(chosen)
        if chosen is not None and digest is not None:
            # The keys beside the record, before it: an approved row never lacks its subset.
            self.targets.replace(subset_row(record.id, digest, chosen))
        approval = ApprovalRecord(
            proposal_id=record.id,
            plan_hash=record.plan_hash,
            subset=digest,
            subset_size=len(chosen) if chosen is not None else len(record.targets),
            approver_oid=principal.object_id,
            approver_name=principal.name,
            approved_at=iso(now),
        )
        changes = {
            "State": State.APPROVED.value,
            "ApproverOid": principal.object_id,
            "ApproverName": principal.name,
            "ApproverSource": principal.source,
            "ApprovedAt": iso(now),
            "Subset": chosen is not None,
            "Approval": json.dumps(approval.to_dict(), sort_keys=True),
            "ApprovalMac": sign(self.signing_key, approval),
        }
        try:
            self._transition(record, changes)
        except Conflict:
            current = self.get(proposal_id, with_targets=False)
            self.audit(proposal_id, "refused", actor, "approve: lost a concurrent race", now=now)
            raise Refused(
                "already_used",
                f"proposal {proposal_id} is already {current.state.value}"
                + (f" by {current.approver_name}" if current.approver_name else ""),
            ) from None
        detail = f"plan {plan_digest[:12]}"
        if chosen is not None:
            detail += f", subset of {len(chosen)}/{len(record.targets)} targets"
        self.audit(proposal_id, "approved", actor, detail + "; approval record signed", now=now)
        return self.get(proposal_id)

    @staticmethod
    def _selection(record: Record, subset: Sequence[str] | None) -> set[str] | None:
        if subset is None:
            return None
        keys = {t.target.key for t in record.targets}
        chosen = {s.strip().lower() for s in subset if s.strip()}
        if not chosen:
            raise Refused("bad_subset", "the subset names no target")
        unknown = sorted(chosen - keys)
        if unknown:
            raise Refused("bad_subset", f"not targets of this proposal: {', '.join(unknown)}")
        org = [t for t in record.targets if t.target.role is Role.ORG]
        if org and org[0].target.key in chosen:
            pins = {t.target.key for t in record.targets if t.target.role is Role.PIN}
            missing = pins - chosen
            if missing:
                raise Refused(
                    "bad_subset",
                    "the organisation switch can only be approved together with every pin "
                    f"(missing {len(missing)}: an allowlisted mailbox would lose SMTP AUTH)",
                )
        # Who loses SMTP AUTH is a consequence of the flip, verified with it (or not at all).
        consequences = {
            t.target.key
            for t in record.targets
            if t.target.role is Role.REVOKE and t.target.step == 3
        }
        chosen -= consequences
        if org and org[0].target.key in chosen:
            chosen |= consequences
        if chosen == keys:
            return None
        return chosen

    def reject(
        self, proposal_id: str, *, principal: Principal, now: datetime, reason: str
    ) -> Record:
        reason = " ".join(reason.split())
        if not reason:
            raise Refused("bad_request", "a reason is required to reject a proposal")
        record = self.get(proposal_id, with_targets=False)
        actor = f"{principal.name} ({principal.object_id})"
        record = self._refuse_unless_proposed(record, now, actor)
        try:
            self._transition(
                record,
                {
                    "State": State.REJECTED.value,
                    "RejectedBy": actor,
                    "RejectedAt": iso(now),
                    "RejectReason": reason[:MAX_REASON],
                    "Outcome": f"rejected: {reason[:MAX_REASON]}",
                },
            )
        except Conflict:
            raise Refused("already_used", f"proposal {proposal_id} changed meanwhile") from None
        self.audit(proposal_id, "rejected", actor, reason, now=now)
        return self.get(proposal_id)

    # -- execution: lease, results, finish -------------------------------------------------

    def start(
        self, proposal_id: str, *, now: datetime, lease: timedelta = RUNNING_LEASE
    ) -> Record | None:
        """approved → running for one executor, holding a lease; None when there is nothing to
        do. A `running` proposal whose lease has passed (its executor died or failed) is taken
        over (targets already done keep their result and are not redone)."""
        record = self.get(proposal_id)
        if record.state is State.APPROVED:
            event = "started"
        elif record.state is State.RUNNING and self.lease_expired(record, now):
            event = "resumed"
        else:
            return None
        owner = uuid.uuid4().hex
        try:
            self._transition(
                record,
                {
                    "State": State.RUNNING.value,
                    "StartedAt": iso(now),
                    "LeaseUntil": iso(now + lease),
                    "LeaseOwner": owner,
                    "Attempts": record.attempts + 1,
                },
            )
        except Conflict:
            return None
        self.audit(proposal_id, event, "executor", f"attempt {record.attempts + 1}", now=now)
        return self.get(proposal_id)

    @staticmethod
    def lease_expired(record: Record, now: datetime) -> bool:
        until = record.lease_until
        if until is None:  # written before leases: the start time plus one lease
            until = (record.started_at or now) + RUNNING_LEASE
        return now >= until

    def _owned(self, record: Record) -> Record:
        current = self.get(record.id, with_targets=False)
        if current.state is not State.RUNNING or current.extra["row"].get(
            "LeaseOwner"
        ) != record.extra["row"].get("LeaseOwner"):
            raise Refused("not_running", f"proposal {record.id}: the execution lease was lost")
        return current

    def renew(self, record: Record, *, now: datetime, lease: timedelta = RUNNING_LEASE) -> None:
        """Extend the lease of the execution holding `record`'s lease (Refused if lost)."""
        current = self._owned(record)
        try:
            self._transition(current, {"LeaseUntil": iso(now + lease)})
        except Conflict:
            raise Refused("not_running", f"proposal {record.id}: lease lost") from None

    def release(self, record: Record, *, now: datetime, why: str) -> None:
        """Give the lease up now (after a failure): the next delivery or sweep resumes."""
        current = self._owned(record)
        self._transition(current, {"LeaseUntil": iso(now)})
        self.audit(record.id, "interrupted", "executor", why, now=now)

    def finish(
        self,
        proposal_id: str,
        state: State,
        outcome: str,
        *,
        now: datetime,
        event: str | None = None,
    ) -> Record:
        if state not in (State.APPLIED, State.PARTIALLY_APPLIED, State.FAILED):
            raise ValueError(f"not a finishing state: {state}")
        record = self.get(proposal_id, with_targets=False)
        if record.state is not State.RUNNING:
            raise Refused("not_running", f"proposal {proposal_id} is {record.state.value}")
        self._transition(
            record,
            {
                "State": state.value,
                "FinishedAt": iso(now),
                "Outcome": outcome[:4000],
                "LeaseUntil": None,
            },
        )
        self.audit(proposal_id, event or state.value, "executor", outcome, now=now)
        return self.get(proposal_id)

    def stuck(self, now: datetime, *, grace: timedelta = RUNNING_LEASE) -> list[str]:
        """Approved proposals whose queue message seems lost, and running ones whose lease
        has passed: what the nightly sweep resumes."""
        ids: list[str] = []
        for record in self.in_states((State.APPROVED, State.RUNNING)):
            if record.state is State.RUNNING:
                due = self.lease_expired(record, now)
            else:
                due = record.approved_at is None or now - record.approved_at > grace
            if due:
                ids.append(record.id)
        return ids
