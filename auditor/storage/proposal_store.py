"""Remediation proposals in Table Storage: the state machine and the audit trail.

States: proposed → approved → running → applied | partially_applied | failed; a proposal can
also end rejected or expired. Every transition is a conditional replace of the proposal row
(ETag, `MatchConditions.IfNotModified`), so two approvals racing, or a queue message delivered
twice, move it once: the loser gets `Refused("already_used")`, or (executor) `None`.

Tables (created on demand):
- `remediations`: one row per proposal (PartitionKey "proposal", RowKey the id).
- `remediationtargets`: one row per target (PartitionKey the id, RowKey the order), carrying
  the planned before/after, whether the approver selected it, and its result once executed. A
  large organisation-level plan has thousands of targets: they never fit in one entity.
- `remediationaudit`: every step (proposed, approved, refused, started, each target's result,
  finished, rejected, expired) with actor and detail, RowKey ordered by time.

The plan hash is recomputed from the stored targets before approval and before execution: a
target row edited in storage after the plan was made is "tampered" and refused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import TableServiceClient, UpdateMode

from auditor.core.errors import Refused
from auditor.core.model import Setting
from auditor.core.proposals import (
    AuditEvent,
    Kind,
    Principal,
    Proposal,
    Record,
    Result,
    Role,
    State,
    Target,
    TargetRecord,
    plan_hash,
)
from auditor.storage.tables import Conflict, OpCounter, Table

__all__ = ["ProposalStore", "RUNNING_LEASE"]

RUNNING_LEASE = timedelta(minutes=15)
_PK = "proposal"


def _iso(value: datetime) -> str:
    return value.isoformat()


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _target_row(proposal_id: str, index: int, target: Target) -> dict[str, Any]:
    return {
        "PartitionKey": proposal_id,
        "RowKey": f"{index:06d}",
        "Key": target.key,
        "Role": target.role.value,
        "Display": target.display,
        "Before": Setting.text(target.before),
        "After": Setting.text(target.after),
        "Step": target.step,
        "Reason": target.reason,
        "Guid": target.guid,
        "Upn": target.upn,
        "Address": target.address,
        "Selected": True,
        "Result": Result.PENDING.value,
    }


def _target_record(row: dict[str, Any]) -> TargetRecord:
    target = Target(
        key=row["Key"],
        role=Role(row["Role"]),
        display=row["Display"],
        before=Setting.parse(row["Before"]),
        after=Setting.parse(row["After"]),
        step=int(row["Step"]),
        reason=row.get("Reason", ""),
        guid=row.get("Guid"),
        upn=row.get("Upn"),
        address=row.get("Address"),
    )
    return TargetRecord(
        row=row["RowKey"],
        target=target,
        selected=bool(row.get("Selected", True)),
        result=Result(row.get("Result", Result.PENDING.value)),
        detail=row.get("Detail", ""),
        observed_before=row.get("ObservedBefore", ""),
        observed_after=row.get("ObservedAfter", ""),
        at=row.get("At", ""),
    )


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("_etag", "Timestamp")}


class ProposalStore:
    """Proposals, their targets and the audit trail, on an injected `TableServiceClient`."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        prefix: str = "",
        counter: OpCounter | None = None,
    ) -> None:
        counter = counter or OpCounter()
        self.proposals = Table(service, f"{prefix}remediations", counter)
        self.targets = Table(service, f"{prefix}remediationtargets", counter)
        self.trail_table = Table(service, f"{prefix}remediationaudit", counter)

    def create_tables(self) -> None:
        for table in (self.proposals, self.targets, self.trail_table):
            table.create()

    # -- writing proposals ---------------------------------------------------------------

    def save(self, proposal: Proposal, *, now: datetime) -> bool:
        """Store a new proposal; False (and nothing written) if its id is already stored."""
        if self.proposals.get(_PK, proposal.id) is not None:
            return False
        # Targets first: a proposal row never exists without all of its targets.
        self.targets.submit(
            [("upsert", _target_row(proposal.id, i, t), {}) for i, t in enumerate(proposal.targets)]
        )
        row = {
            "PartitionKey": _PK,
            "RowKey": proposal.id,
            "Kind": proposal.kind.value,
            "Scope": proposal.scope,
            "Tenant": proposal.tenant,
            "RunId": proposal.run_id,
            "CreatedAt": _iso(proposal.created_at),
            "ExpiresAt": _iso(proposal.expires_at),
            "Title": proposal.title,
            "PlanHash": proposal.plan_hash,
            "State": State.PROPOSED.value,
            "TargetCount": len(proposal.targets),
            "Loses": len(proposal.loses),
            "Kept": len(proposal.kept),
            "Gains": len(proposal.gains),
            "Attempts": 0,
        }
        try:
            self.proposals.insert(row)
        except Conflict:
            return False
        self.audit(proposal.id, "proposed", "auditor", proposal.title, now=now)
        return True

    # -- reading -------------------------------------------------------------------------

    def get(self, proposal_id: str, *, with_targets: bool = True) -> Record:
        if not proposal_id or any(c in proposal_id for c in "/\\#?") or len(proposal_id) > 200:
            raise Refused("not_found", f"no remediation proposal {proposal_id!r}")
        row = self.proposals.get(_PK, proposal_id)
        if row is None:
            raise Refused("not_found", f"no remediation proposal {proposal_id!r}")
        targets = (
            tuple(_target_record(r) for r in self.targets.partition(proposal_id))
            if with_targets
            else ()
        )
        return self._record(row, targets)

    def recent(self, *, limit: int = 200) -> list[Record]:
        rows = list(self.proposals.partition(_PK, limit=limit))
        records = [self._record(row, ()) for row in rows]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    @staticmethod
    def _record(row: dict[str, Any], targets: tuple[TargetRecord, ...]) -> Record:
        created = _time(row["CreatedAt"])
        expires = _time(row["ExpiresAt"])
        assert created is not None and expires is not None
        return Record(
            id=row["RowKey"],
            kind=Kind(row["Kind"]),
            scope=row["Scope"],
            tenant=row["Tenant"],
            run_id=row["RunId"],
            created_at=created,
            expires_at=expires,
            title=row["Title"],
            plan_hash=row["PlanHash"],
            state=State(row["State"]),
            etag=row.get("_etag") or "",
            targets=targets,
            approver_oid=row.get("ApproverOid"),
            approver_name=row.get("ApproverName"),
            approved_at=_time(row.get("ApprovedAt")),
            subset=bool(row.get("Subset", False)),
            started_at=_time(row.get("StartedAt")),
            attempts=int(row.get("Attempts", 0)),
            finished_at=_time(row.get("FinishedAt")),
            outcome=row.get("Outcome", ""),
            rejected_by=row.get("RejectedBy"),
            extra={"row": _clean(row)},
        )

    def trail(self, proposal_id: str) -> list[AuditEvent]:
        return [
            AuditEvent(
                at=row.get("At", ""),
                event=row.get("Event", ""),
                actor=row.get("Actor", ""),
                detail=row.get("Detail", ""),
            )
            for row in self.trail_table.partition(proposal_id)
        ]

    # -- audit trail -----------------------------------------------------------------------

    def audit(
        self, proposal_id: str, event: str, actor: str, detail: str, *, now: datetime
    ) -> None:
        # RowKey in write order (wall clock, nanoseconds): the trail reads back as it happened,
        # even when callers pass the same logical `now` to several steps.
        stamp = f"{time.time_ns():020d}"
        self.trail_table.insert(
            {
                "PartitionKey": proposal_id,
                "RowKey": f"{stamp}-{uuid.uuid4().hex[:12]}",
                "At": _iso(now),
                "Event": event,
                "Actor": actor,
                "Detail": detail[:4000],
            }
        )

    # -- transitions -----------------------------------------------------------------------

    def _transition(self, record: Record, changes: dict[str, Any]) -> None:
        """Conditional replace of the proposal row; Conflict if someone moved it first."""
        row = {**record.extra["row"], **changes}
        self.proposals.replace(row, etag=record.etag)

    def _refuse_unless_proposed(self, record: Record, now: datetime, actor: str) -> Record:
        if record.state is State.PROPOSED and now > record.expires_at:
            try:
                self._transition(record, {"State": State.EXPIRED.value})
                self.audit(record.id, "expired", actor, "expiry passed before approval", now=now)
            except Conflict:
                pass
            record = replace(record, state=State.EXPIRED)
        if record.state is State.EXPIRED:
            raise Refused("expired", f"proposal {record.id} expired on {_iso(record.expires_at)}")
        if record.state is State.REJECTED:
            raise Refused("rejected", f"proposal {record.id} was rejected")
        if record.state is not State.PROPOSED:
            by = f" by {record.approver_name}" if record.approver_name else ""
            raise Refused(
                "already_used", f"proposal {record.id} is already {record.state.value}{by}"
            )
        return record

    def check_approvable(self, record: Record, *, now: datetime, plan_digest: str) -> None:
        """Refused unless `record` could be approved now with `plan_digest` (for dry runs)."""
        self._refuse_unless_proposed(record, now, "dry-run")
        if plan_digest != record.plan_hash:
            raise Refused("plan_changed", "the plan hash does not match this proposal")
        self.check_integrity(record)

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
        """proposed → approved for the plan hash the approver saw; optionally a subset."""
        record = self.get(proposal_id)
        actor = f"{principal.name} ({principal.object_id})"
        try:
            record = self._refuse_unless_proposed(record, now, actor)
            if plan_digest != record.plan_hash:
                raise Refused(
                    "plan_changed",
                    "the plan hash does not match this proposal: reload the confirmation "
                    "page and approve what it shows",
                )
            self.check_integrity(record)
            chosen = self._selection(record, subset)
        except Refused as exc:
            self.audit(proposal_id, "refused", actor, f"approve: {exc.code}: {exc}", now=now)
            raise
        changes = {
            "State": State.APPROVED.value,
            "ApproverOid": principal.object_id,
            "ApproverName": principal.name,
            "ApproverSource": principal.source,
            "ApprovedAt": _iso(now),
            "Subset": chosen is not None,
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
        if chosen is not None:
            # Only the winner of the ETag race gets here, so these writes are not contended.
            self.targets.submit(
                [
                    (
                        "update",
                        {
                            "PartitionKey": proposal_id,
                            "RowKey": t.row,
                            "Selected": t.target.key in chosen,
                            "Result": (
                                Result.PENDING if t.target.key in chosen else Result.NOT_SELECTED
                            ).value,
                        },
                        {"mode": UpdateMode.MERGE},
                    )
                    for t in record.targets
                ]
            )
        detail = f"plan {plan_digest[:12]}"
        if chosen is not None:
            detail += f", subset of {len(chosen)}/{len(record.targets)} targets"
        self.audit(proposal_id, "approved", actor, detail, now=now)
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
            # Who loses SMTP AUTH is a consequence of the flip, verified with it.
            chosen |= {t.target.key for t in record.targets if t.target.role is Role.REVOKE}
        if chosen == keys:
            return None
        return chosen

    def reject(
        self, proposal_id: str, *, principal: Principal, now: datetime, reason: str
    ) -> Record:
        record = self.get(proposal_id, with_targets=False)
        actor = f"{principal.name} ({principal.object_id})"
        record = self._refuse_unless_proposed(record, now, actor)
        try:
            self._transition(
                record,
                {"State": State.REJECTED.value, "RejectedBy": actor, "Outcome": reason[:1000]},
            )
        except Conflict:
            raise Refused("already_used", f"proposal {proposal_id} changed meanwhile") from None
        self.audit(proposal_id, "rejected", actor, reason or "rejected", now=now)
        return self.get(proposal_id)

    def start(
        self, proposal_id: str, *, now: datetime, lease: timedelta = RUNNING_LEASE
    ) -> Record | None:
        """approved → running for one executor; None when there is nothing to do.

        A proposal left `running` by an execution that was cut off is taken over once its lease
        has passed (targets already done keep their result and are not redone).
        """
        record = self.get(proposal_id)
        if record.state is State.APPROVED:
            event = "started"
        elif (
            record.state is State.RUNNING
            and record.started_at is not None
            and now - record.started_at > lease
        ):
            event = "resumed"
        else:
            return None
        self.check_integrity(record)
        try:
            self._transition(
                record,
                {
                    "State": State.RUNNING.value,
                    "StartedAt": _iso(now),
                    "Attempts": record.attempts + 1,
                },
            )
        except Conflict:
            return None
        self.audit(proposal_id, event, "executor", f"attempt {record.attempts + 1}", now=now)
        return self.get(proposal_id)

    def record_target(
        self,
        proposal_id: str,
        target: TargetRecord,
        result: Result,
        detail: str,
        *,
        now: datetime,
        observed_before: str = "",
        observed_after: str = "",
    ) -> None:
        self.targets.submit(
            [
                (
                    "update",
                    {
                        "PartitionKey": proposal_id,
                        "RowKey": target.row,
                        "Result": result.value,
                        "Detail": detail[:4000],
                        "ObservedBefore": observed_before,
                        "ObservedAfter": observed_after,
                        "At": _iso(now),
                    },
                    {"mode": UpdateMode.MERGE},
                )
            ]
        )
        self.audit(
            proposal_id,
            f"target {result.value}",
            "executor",
            f"{target.target.display}: {detail}",
            now=now,
        )

    def finish(self, proposal_id: str, state: State, outcome: str, *, now: datetime) -> Record:
        if state not in (State.APPLIED, State.PARTIALLY_APPLIED, State.FAILED):
            raise ValueError(f"not a finishing state: {state}")
        record = self.get(proposal_id, with_targets=False)
        if record.state is not State.RUNNING:
            raise Refused("not_running", f"proposal {proposal_id} is {record.state.value}")
        self._transition(
            record,
            {"State": state.value, "FinishedAt": _iso(now), "Outcome": outcome[:4000]},
        )
        self.audit(proposal_id, state.value, "executor", outcome, now=now)
        return self.get(proposal_id)

    def iter_ids(self) -> Iterator[str]:
        for row in self.proposals.partition(_PK):
            yield row["RowKey"]
