"""The unified audit log of the emulated tenant: `Search-UnifiedAuditLog` over what it served.

Every successful Set-CASMailbox / Set-TransportConfig the endpoint serves is recorded as an
ExchangeAdmin record (AuditData a JSON string, `Parameters` as Name/Value pairs with "True",
"False" or "" for $null), by `actor` from `client_ip`, at `clock()`. A record becomes searchable
`lag` after it was made, as the real log lags (60-90 minutes typically). Searches honour
StartDate/EndDate, RecordType ExchangeAdmin, Operations and the SessionId/ReturnLargeSet paging
(`ResultSize` rows a call, then an empty call), with `ResultIndex`/`ResultCount` on each row.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["AuditLog", "SETTERS"]

SETTERS = ("Set-CASMailbox", "Set-TransportConfig")


def _audit_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _when(value: Any) -> datetime:
    text = str(value).strip().replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class AuditLog:
    """Records and searches; `lag`, `actor`, `client_ip` and `clock` are set by tests."""

    def __init__(self) -> None:
        self.lag = timedelta(0)
        self.actor = "admin@contoso.com"
        self.client_ip: str | None = "203.0.113.5"
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.records: list[tuple[datetime, dict[str, Any]]] = []
        self.searches: list[dict[str, Any]] = []
        self._sessions: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, cmdlet: str, parameters: Mapping[str, Any], domain: str) -> None:
        now = self.clock()
        identity = next((v for k, v in parameters.items() if k.lower() == "identity"), None)
        data = {
            "CreationTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "Id": str(uuid.uuid4()),
            "Operation": cmdlet,
            "OrganizationId": str(uuid.uuid5(uuid.NAMESPACE_DNS, domain)),
            "RecordType": 1,
            "ResultStatus": "True",
            "UserKey": self.actor,
            "UserType": 2,
            "Version": 1,
            "Workload": "Exchange",
            "ObjectId": str(identity) if identity is not None else domain,
            "UserId": self.actor,
            "ClientIP": self.client_ip or "",
            "AppId": "",
            "ClientAppId": "",
            "ExternalAccess": False,
            "OrganizationName": domain,
            "OriginatingServer": "EMU01MB0001 (15.20.0000.000)",
            "Parameters": [{"Name": k, "Value": _audit_value(v)} for k, v in parameters.items()],
        }
        with self._lock:
            self.records.append((now, data))

    def search(self, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One call's rows; ValueError for what the cmdlet would refuse."""
        p = {k.lower(): v for k, v in parameters.items()}
        if "startdate" not in p or "enddate" not in p:
            raise ValueError("StartDate and EndDate are required")
        start, end = _when(p["startdate"]), _when(p["enddate"])
        record_type = str(p.get("recordtype") or "")
        operations = {str(o).lower() for o in (p.get("operations") or SETTERS)}
        size = min(int(p.get("resultsize") or 100), 5000)
        session = str(p.get("sessionid") or "")
        now = self.clock()
        with self._lock:
            self.searches.append(dict(parameters))
            rows = [
                data
                for at, data in self.records
                if start <= at <= end
                and at + self.lag <= now
                and record_type.lower() in ("", "exchangeadmin")
                and data["Operation"].lower() in operations
            ]
            offset = self._sessions.get(session, 0) if session else 0
            page = rows[offset : offset + size]
            if session:
                self._sessions[session] = offset + len(page)
        return [
            {
                "RecordType": "ExchangeAdmin",
                "CreationDate": data["CreationTime"],
                "UserIds": data["UserId"],
                "Operations": data["Operation"],
                "AuditData": json.dumps(data),
                "ResultIndex": offset + i + 1,
                "ResultCount": len(rows),
                "Identity": data["Id"],
                "IsValid": True,
                "ObjectState": "Unchanged",
            }
            for i, data in enumerate(page)
        ]
