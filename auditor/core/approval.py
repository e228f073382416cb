"""PURE: the signed approval record — what an approver approved, unforgeable from storage.

On approval the store keeps `ApprovalRecord.to_dict()` and `sign(key, record)`, an HMAC-SHA256
keyed by `APPROVAL_SIGNING_KEY` (a setting from Key Vault, never in storage). The executor
re-computes the MAC before changing anything: whoever can write the storage account but does not
hold the key cannot approve, widen a subset, or swap the plan (its hash is in the record).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ApprovalRecord", "sign", "verify", "subset_digest", "MIN_KEY_BYTES", "SCHEMA"]

MIN_KEY_BYTES = 32
SCHEMA = "smtp-auth-approval/1"


def subset_digest(keys: Iterable[str]) -> str:
    """sha256 of the sorted, distinct target keys, one per line: names a subset of any size
    (the keys themselves are stored beside the record; a subset of an organisation-level plan
    can hold ~100,000 keys, more than one table property)."""
    return hashlib.sha256("\n".join(sorted(set(keys))).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    proposal_id: str
    plan_hash: str
    subset: str | None  # `subset_digest` of the selected target keys, None = every target
    approver_oid: str
    approver_name: str
    approved_at: str  # ISO 8601, UTC
    subset_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "proposal_id": self.proposal_id,
            "plan_hash": self.plan_hash,
            "subset_sha256": self.subset,
            "subset_size": self.subset_size,
            "approver_oid": self.approver_oid,
            "approver_name": self.approver_name,
            "approved_at": self.approved_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApprovalRecord:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not an approval record ({data.get('schema')!r})")
        subset = data.get("subset_sha256")
        if subset is not None and not isinstance(subset, str):
            raise ValueError("subset_sha256 must be a digest or null")
        return cls(
            proposal_id=str(data["proposal_id"]),
            plan_hash=str(data["plan_hash"]),
            subset=subset,
            subset_size=int(data.get("subset_size", 0)),
            approver_oid=str(data["approver_oid"]),
            approver_name=str(data["approver_name"]),
            approved_at=str(data["approved_at"]),
        )


def _canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(key: bytes, record: ApprovalRecord) -> str:
    """The hex HMAC-SHA256 of the record's canonical JSON."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the approval signing key must be at least {MIN_KEY_BYTES} bytes")
    return hmac.new(key, _canonical(record.to_dict()), hashlib.sha256).hexdigest()


def verify(key: bytes, data: Mapping[str, Any] | None, mac: str) -> ApprovalRecord:
    """The record if `mac` is its valid signature under `key`; ValueError (why) otherwise."""
    if not data or not mac:
        raise ValueError("no approval record")
    record = ApprovalRecord.from_dict(data)
    if _canonical(record.to_dict()) != _canonical(data):
        raise ValueError("the approval record carries unexpected fields")
    if not hmac.compare_digest(sign(key, record), mac):
        raise ValueError("the approval record's signature does not verify")
    return record
