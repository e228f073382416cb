"""Persistence of remediation proposals: one living proposal per plan, packed targets, trail.

Layout in `auditor.storage.proposal_rows`. `sync` stores one audit run's plan:

- a proposal whose id is stored and open (the same kind, scope, tenant and targets: the id is
  derived from them, not from the run) is *confirmed*: its `LastConfirmed` run and its expiry
  advance; nothing else is written (one entity per proposal per identical night);
- a new plan is written (packed targets, then its row) and *supersedes* the open proposal of its
  slot (`superseded`, `SupersededBy` the successor);
- an open proposal whose slot the run no longer plans becomes `superseded` without a successor
  (stale: the latest audit no longer proposes it).

The same plan coming back after it was rejected stays rejected; after it expired or was
superseded it is reopened; after it was executed it is proposed again under `<id>.<n>`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from azure.data.tables import TableServiceClient

from auditor.core.errors import Refused
from auditor.core.proposals import AuditEvent, Kind, Proposal, Record, Result, State, TargetRecord
from auditor.storage.proposal_rows import (
    OPEN_PK,
    PK,
    approval_subset,
    clean,
    iso,
    plan_chunks,
    plan_row,
    record_of,
    result_row,
    slot,
    targets_of,
)
from auditor.storage.tables import Conflict, OpCounter, Table, bounded

__all__ = ["ProposalTables", "TargetResult"]

# (target, result, detail, observed before, observed after)
TargetResult = tuple[TargetRecord, Result, str, str, str]
_EXECUTED = frozenset({State.APPLIED, State.PARTIALLY_APPLIED, State.FAILED})
_REOPEN = frozenset({State.EXPIRED, State.SUPERSEDED})
_WRITERS = 4  # plan rows in flight at once (the evidence blobs use as many)


def _stamp() -> str:
    # Wall clock, nanoseconds, then randomness: rows read back in write order.
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


class ProposalTables:
    """Rows of proposals, their packed targets and results, and the audit trail."""

    def __init__(
        self, service: TableServiceClient, *, prefix: str = "", counter: OpCounter | None = None
    ) -> None:
        self.counter = counter or OpCounter()
        self.proposals = Table(service, f"{prefix}remediations", self.counter)
        self.targets = Table(service, f"{prefix}remediationtargets", self.counter)
        self.trail_table = Table(service, f"{prefix}remediationaudit", self.counter)

    def create_tables(self) -> None:
        for table in (self.proposals, self.targets, self.trail_table):
            table.create()

    # -- reading ---------------------------------------------------------------------------

    def _row(self, proposal_id: str) -> dict[str, Any]:
        if not proposal_id or any(c in proposal_id for c in "/\\#?") or len(proposal_id) > 200:
            raise Refused("not_found", f"no remediation proposal {proposal_id!r}")
        row = self.proposals.get(PK, proposal_id)
        if row is None:
            raise Refused("not_found", f"no remediation proposal {proposal_id!r}")
        return row

    def get(self, proposal_id: str, *, with_targets: bool = True) -> Record:
        row = self._row(proposal_id)
        targets = (
            targets_of(self.targets.partition(proposal_id), approval_subset(row))
            if with_targets
            else ()
        )
        return record_of(row, targets)

    def recent(self, *, limit: int = 200, everything: bool = False) -> list[Record]:
        """Open proposals (or, with `everything`, all), newest first."""
        if everything:
            rows = self.proposals.partition(PK, limit=limit)
        else:
            rows = self.proposals.query(
                "PartitionKey eq @pk and State eq @state",
                {"pk": PK, "state": State.PROPOSED.value},
                limit=limit,
            )
        records = [record_of(row, ()) for row in rows]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def in_states(self, states: Iterable[State]) -> list[Record]:
        found: list[Record] = []
        for state in states:
            rows = self.proposals.query(
                "PartitionKey eq @pk and State eq @state", {"pk": PK, "state": state.value}
            )
            found.extend(record_of(row, ()) for row in rows)
        return found

    def iter_ids(self) -> Iterator[str]:
        for row in self.proposals.partition(PK):
            yield row["RowKey"]

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

    # -- the audit trail -------------------------------------------------------------------

    @staticmethod
    def _event(proposal_id: str, event: str, actor: str, detail: str, now: datetime) -> Any:
        return {
            "PartitionKey": proposal_id,
            "RowKey": _stamp(),
            "At": iso(now),
            "Event": event,
            "Actor": actor,
            "Detail": detail[:4000],
        }

    def audit(
        self, proposal_id: str, event: str, actor: str, detail: str, *, now: datetime
    ) -> None:
        self.trail_table.insert(self._event(proposal_id, event, actor, detail, now))

    # -- results ---------------------------------------------------------------------------

    def record_results(
        self, proposal_id: str, results: Sequence[TargetResult], *, now: datetime
    ) -> None:
        """Append one packed result row for `results`, then their trail events (batched)."""
        if not results:
            return
        at = iso(now)
        packed = {
            target.target.key: [result.value, detail[:4000], before, after, at]
            for target, result, detail, before, after in results
        }
        self.targets.insert(result_row(proposal_id, _stamp(), packed))
        self.trail_table.submit(
            [
                (
                    "create",
                    self._event(
                        proposal_id,
                        f"target {result.value}",
                        "executor",
                        f"{target.target.display}: {detail}",
                        now,
                    ),
                    {},
                )
                for target, result, detail, _before, _after in results
            ]
        )

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
        self.record_results(
            proposal_id, [(target, result, detail, observed_before, observed_after)], now=now
        )

    # -- writing proposals -----------------------------------------------------------------

    def _replace(self, row: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
        """Conditional replace of a proposal row read with its ETag; Conflict if it moved."""
        self.proposals.replace({**clean(row), **changes}, etag=row.get("_etag") or None)

    def _write_new(self, proposal: Proposal, proposal_id: str, supersedes: str | None) -> None:
        # Targets first: a proposal row never exists without all of its targets. The rows are
        # packed and sent `_WRITERS` at a time (zlib and the requests release the GIL); any
        # failure is raised before the proposal row is written.
        bounded(
            lambda part: self.targets.replace(plan_row(proposal_id, *part)),
            plan_chunks(proposal.targets),
            workers=_WRITERS,
        )
        self.proposals.insert(
            {
                "PartitionKey": PK,
                "RowKey": proposal_id,
                "Kind": proposal.kind.value,
                "Scope": proposal.scope,
                "Tenant": proposal.tenant,
                "RunId": proposal.run_id,
                "LastConfirmed": proposal.run_id,
                "CreatedAt": iso(proposal.created_at),
                "ExpiresAt": iso(proposal.expires_at),
                "Title": proposal.title,
                "PlanHash": proposal.plan_hash,
                "State": State.PROPOSED.value,
                "TargetCount": len(proposal.targets),
                "Loses": len(proposal.loses),
                "Kept": len(proposal.kept),
                "Gains": len(proposal.gains),
                "Attempts": 0,
                "Supersedes": supersedes,
            }
        )

    def save(self, proposal: Proposal, *, now: datetime) -> bool:
        """Store (or confirm) one proposal; True if a new proposal row was written."""
        index = self.proposals.get(OPEN_PK, slot(proposal.kind, proposal.scope))
        return self._save(proposal, index, now)[1]

    def _save(
        self, proposal: Proposal, index: Mapping[str, Any] | None, now: datetime
    ) -> tuple[str, bool]:
        """(the id the plan lives under, whether a new proposal row was written)."""
        open_id = str(index["ProposalId"]) if index and index.get("ProposalId") else None
        proposal_id, generation = proposal.id, 1
        while True:
            row = self.proposals.get(PK, proposal_id)
            if row is None or State(row["State"]) not in _EXECUTED:
                break
            generation += 1
            proposal_id = f"{proposal.id}.{generation}"
        created = row is None
        if row is None:
            try:
                self._write_new(proposal, proposal_id, open_id)
            except Conflict:
                return proposal_id, False  # another run stored it a moment ago
            self.audit(proposal_id, "proposed", "auditor", proposal.title, now=now)
        else:
            state = State(row["State"])
            if state is State.PROPOSED or state in _REOPEN:
                changes: dict[str, Any] = {
                    "LastConfirmed": proposal.run_id,
                    "ExpiresAt": iso(proposal.expires_at),
                    "State": State.PROPOSED.value,
                }
                if state in _REOPEN:
                    changes.update(SupersededBy=None, Outcome="", Supersedes=open_id)
                try:
                    self._replace(row, changes)
                except Conflict:
                    pass  # approved or superseded meanwhile: that decision stands
                else:
                    if state in _REOPEN:
                        self.audit(
                            proposal_id, "reopened", "auditor", f"run {proposal.run_id}", now=now
                        )
            # rejected: the same plan stays rejected; approved or running: left alone.
        if open_id != proposal_id:  # this plan is now the slot's living proposal
            if open_id:
                self.supersede(open_id, proposal_id, now=now, why="the plan changed")
            self.proposals.replace(
                {
                    "PartitionKey": OPEN_PK,
                    "RowKey": slot(proposal.kind, proposal.scope),
                    "ProposalId": proposal_id,
                }
            )
        return proposal_id, created

    def sync(
        self,
        proposals: Sequence[Proposal],
        *,
        run_id: str,
        now: datetime,
        kinds: Iterable[Kind] = (Kind.REVOCATION, Kind.GRANT),
    ) -> list[str]:
        """Store one run's plan (see the module); the ids its proposals live under."""
        indexes = {row["RowKey"]: row for row in self.proposals.partition(OPEN_PK)}
        ids: list[str] = []
        planned: set[str] = set()
        for proposal in proposals:
            key = slot(proposal.kind, proposal.scope)
            planned.add(key)
            ids.append(self._save(proposal, indexes.get(key), now)[0])
        considered = {k.value for k in kinds}
        for key, index in indexes.items():
            if key in planned or key.split(".", 1)[0] not in considered:
                continue
            if index.get("ProposalId"):
                self.supersede(
                    str(index["ProposalId"]),
                    None,
                    now=now,
                    why=f"stale: audit run {run_id} no longer proposes it",
                )
            self.proposals.delete(OPEN_PK, key)
        return ids

    def supersede(
        self, proposal_id: str, successor: str | None, *, now: datetime, why: str
    ) -> bool:
        """proposed → superseded (ETag); False when it is no longer open."""
        row = self.proposals.get(PK, proposal_id)
        if row is None or State(row["State"]) is not State.PROPOSED:
            return False
        try:
            self._replace(
                row,
                {"State": State.SUPERSEDED.value, "SupersededBy": successor, "Outcome": why},
            )
        except Conflict:
            return False
        detail = f"{why}; successor {successor}" if successor else why
        self.audit(proposal_id, "superseded", "auditor", detail, now=now)
        return True
