"""The protocol of `POST /adminapi/beta/{tenant}/InvokeCommand`, independent of sockets.

Implements the documented protocol: `$select` projection, `Prefer: odata.maxpagesize`
(1..1000, default 1000), opaque `$skiptoken` nextLinks (reusable until they expire), the
1000-object default and its "more results" warning when `ResultSize` is absent, OData
annotations, `Set-*` semantics including `null`, and error bodies of the documented shape.
It knows nothing about any client.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from devkit.emulator.auditlog import AuditLog
from devkit.emulator.faults import Fault, Faults
from devkit.emulator.records import (
    CAS_SETTABLE,
    annotate,
    full_cas,
    full_mailbox,
    full_transport_config,
    project,
)
from devkit.tenantgen import Tenant

__all__ = ["Endpoint", "Reply", "MORE_RESULTS", "error_body"]

MORE_RESULTS = (
    "There are more results available than are currently displayed. To view them, increase the "
    "value for the ResultSize parameter."
)
DEFAULT_RESULT_SIZE = 1000
MAX_PAGE_SIZE = 1000
SETTING = "SmtpClientAuthenticationDisabled"
_CMDLETS = {
    name.lower(): name
    for name in (
        "Get-TransportConfig",
        "Get-CASMailbox",
        "Get-Mailbox",
        "Set-CASMailbox",
        "Set-TransportConfig",
        "Search-UnifiedAuditLog",
    )
}
_PREFER = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a body sent as-is (malformed JSON)
    drop: bool = False  # cut the body in the middle and close the connection

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body, separators=(",", ":")).encode()


@dataclass
class _Cursor:
    cmdlet: str
    guids: list[str]
    offset: int
    select: tuple[str, ...] | None
    warn: bool
    page: int
    created: float


class _CmdletError(Exception):
    def __init__(self, status: int, code: str, message: str, exc_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.exc_type = exc_type


def error_body(code: str, message: str, cmdlet_message: str, exc_type: str) -> dict[str, Any]:
    """The documented error shape; the cmdlet's own message sits in details and innererror."""
    return {
        "error": {
            "code": code,
            "message": message,
            "details": [{"code": "Context", "target": "", "message": cmdlet_message}],
            "innererror": {
                "message": cmdlet_message,
                "type": exc_type,
                "internalexception": {"message": cmdlet_message},
            },
        }
    }


def _bad_parameter(name: str) -> _CmdletError:
    return _CmdletError(
        400,
        "BadRequest",
        f"A parameter cannot be found that matches parameter name '{name}'.",
        "System.Management.Automation.ParameterBindingException",
    )


class Endpoint:
    """The tenant's admin endpoint. `state` is mutable between (not during) requests."""

    def __init__(self, state: Tenant, *, tenant_id: str, faults: Faults, link_ttl: float) -> None:
        self.state = state
        self.tenant_id = tenant_id
        self.faults = faults
        self.link_ttl = link_ttl
        self.lock = threading.RLock()
        self._cursors: dict[str, _Cursor] = {}
        self.auditlog = AuditLog()  # Search-UnifiedAuditLog over the Set-* served (auditlog.py)

    # ---- entry point -------------------------------------------------------------------

    def invoke(
        self, *, tenant: str, query: str, headers: Mapping[str, str], body: bytes, base: str
    ) -> tuple[Reply, str | None, int]:
        """Answer one InvokeCommand request: (reply, cmdlet or None, page number)."""
        args = parse_qs(query, keep_blank_values=True)
        try:
            cmdlet, parameters = self._parse_body(body)
        except _CmdletError as exc:
            return self._error(exc), None, 0
        skiptokens = args.get("$skiptoken")
        skiptoken = skiptokens[0] if skiptokens else None
        cursor: _Cursor | None = None
        if skiptoken is not None:
            with self.lock:
                cursor = self._cursors.get(skiptoken)
            if cursor is None or time.monotonic() - cursor.created > self.link_ttl:
                return (
                    self._error(
                        _CmdletError(
                            400,
                            "BadRequest",
                            "The skip token is invalid or has expired.",
                            "Microsoft.Exchange.Admin.OData.Core.ODataException",
                        )
                    ),
                    cmdlet,
                    0,
                )
            if cursor.cmdlet != cmdlet:
                return (
                    self._error(
                        _CmdletError(
                            400,
                            "BadRequest",
                            f"The skip token belongs to {cursor.cmdlet}, not {cmdlet}.",
                            "Microsoft.Exchange.Admin.OData.Core.ODataException",
                        )
                    ),
                    cmdlet,
                    0,
                )
        page = cursor.page + 1 if cursor is not None else 1
        fault = self.faults.take(cmdlet, page)
        if fault is not None and fault.kind not in ("adminapi_error", "drop", "malformed"):
            return self._fault_reply(fault, cmdlet), cmdlet, page
        select = _select(args)
        size = _page_size(headers)
        try:
            reply = self._run(cmdlet, parameters, select, size, cursor, tenant, base)
        except _CmdletError as exc:
            return self._error(exc), cmdlet, page
        if fault is not None:
            reply = self._spoil(reply, fault)
        return reply, cmdlet, page

    # ---- request parsing ---------------------------------------------------------------

    def _parse_body(self, body: bytes) -> tuple[str, dict[str, Any]]:
        try:
            document = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise _CmdletError(
                400, "BadRequest", "The request body is not valid JSON.", "System.FormatException"
            ) from exc
        cmdlet_input = document.get("CmdletInput") if isinstance(document, dict) else None
        if not isinstance(cmdlet_input, dict) or not isinstance(
            cmdlet_input.get("CmdletName"), str
        ):
            raise _CmdletError(
                400,
                "BadRequest",
                "The request body needs CmdletInput.CmdletName.",
                "System.ArgumentException",
            )
        name = cmdlet_input["CmdletName"]
        cmdlet = _CMDLETS.get(name.strip().lower())
        if cmdlet is None:
            raise _CmdletError(
                400,
                "BadRequest",
                f"The term '{name}' is not recognized as a name of a cmdlet.",
                "System.Management.Automation.CommandNotFoundException",
            )
        parameters = cmdlet_input.get("Parameters") or {}
        if not isinstance(parameters, dict):
            raise _CmdletError(
                400, "BadRequest", "Parameters must be an object.", "System.ArgumentException"
            )
        return cmdlet, parameters

    # ---- cmdlets -----------------------------------------------------------------------

    def _run(
        self,
        cmdlet: str,
        parameters: dict[str, Any],
        select: tuple[str, ...] | None,
        size: int,
        cursor: _Cursor | None,
        tenant: str,
        base: str,
    ) -> Reply:
        with self.lock:
            if cmdlet == "Get-TransportConfig":
                _only(parameters, ())
                record = annotate(project(full_transport_config(self.state.org_disabled), select))
                return _ok([record], [], None, base, tenant)
            if cmdlet in ("Get-CASMailbox", "Get-Mailbox"):
                return self._list(cmdlet, parameters, select, size, cursor, tenant, base)
            if cmdlet == "Search-UnifiedAuditLog":
                try:
                    return _ok(self.auditlog.search(parameters), [], None, base, tenant)
                except (ValueError, TypeError) as exc:
                    raise _bad_parameter(str(exc)) from exc
            if cmdlet == "Set-CASMailbox":
                reply = self._set_cas(parameters, base, tenant)
            else:
                reply = self._set_transport(parameters, base, tenant)
            self.auditlog.record(cmdlet, parameters, self.state.domain)
            return reply

    def _list(
        self,
        cmdlet: str,
        parameters: dict[str, Any],
        select: tuple[str, ...] | None,
        size: int,
        cursor: _Cursor | None,
        tenant: str,
        base: str,
    ) -> Reply:
        records = self.state.cas if cmdlet == "Get-CASMailbox" else self.state.mailboxes
        if cursor is None:
            _only(parameters, ("Identity", "ResultSize", "RecipientTypeDetails"))
            guids = self._matching(records, parameters)
            limit = _result_size(parameters.get("ResultSize", _ABSENT))
            warn = limit is not None and len(guids) > limit
            if limit is not None:
                guids = guids[:limit]
            offset, page = 0, 1
        else:
            guids, offset, select, warn, page = (
                cursor.guids,
                cursor.offset,
                cursor.select,
                cursor.warn,
                cursor.page + 1,
            )
        chunk = guids[offset : offset + size]
        full = full_cas if cmdlet == "Get-CASMailbox" else full_mailbox
        value: list[dict[str, Any]] = []
        for guid in chunk:
            record = records.get(guid)
            if record is None:  # removed since the listing began
                continue
            shown = project(record, select)
            if select is None or len(shown) < len(select):
                shown = project(full(record, self.state.domain), select)
            value.append(annotate(shown))
        warnings: list[str] = []
        link = None
        end = offset + size
        if end < len(guids):
            token = secrets.token_urlsafe(24)
            self._purge()
            self._cursors[token] = _Cursor(cmdlet, guids, end, select, warn, page, time.monotonic())
            link = f"{base}/adminapi/beta/{tenant}/InvokeCommand?$skiptoken={token}"
        elif warn:
            warnings.append(MORE_RESULTS)
        return _ok(value, warnings, link, base, tenant)

    def _matching(
        self, records: dict[str, dict[str, Any]], parameters: dict[str, Any]
    ) -> list[str]:
        if "Identity" in parameters:
            return [self._resolve(records, parameters["Identity"])]
        kinds = parameters.get("RecipientTypeDetails")
        if kinds is None:
            return list(records)
        wanted = {kinds.lower()} if isinstance(kinds, str) else {str(k).lower() for k in kinds}
        out = []
        for guid in records:
            directory = self.state.mailboxes.get(guid) or {}
            if str(directory.get("RecipientTypeDetails", "")).lower() in wanted:
                out.append(guid)
        return out

    def _resolve(self, records: dict[str, dict[str, Any]], identity: Any) -> str:
        if not isinstance(identity, str) or not identity.strip():
            raise _CmdletError(
                400,
                "BadRequest",
                "Cannot validate argument on parameter 'Identity'. The argument is null or empty.",
                "System.Management.Automation.ParameterBindingValidationException",
            )
        wanted = identity.strip().lower()
        if wanted.startswith("smtp:"):
            wanted = wanted[5:]
        if wanted in records:
            return wanted
        found = []
        for guid, record in records.items():
            directory = self.state.mailboxes.get(guid) or {}
            names = {
                str(v).lower()
                for source in (record, directory)
                for key in (
                    "Guid",
                    "ExternalDirectoryObjectId",
                    "Identity",
                    "Name",
                    "Alias",
                    "PrimarySmtpAddress",
                    "UserPrincipalName",
                )
                if (v := source.get(key))
            }
            names.update(
                a.lower()[5:] for a in directory.get("EmailAddresses") or () if isinstance(a, str)
            )
            if wanted in names:
                found.append(guid)
        if not found:
            raise _CmdletError(
                404,
                "NotFound",
                f"The operation couldn't be performed because object '{identity}' couldn't be "
                f"found on '{self.state.domain}'.",
                "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
            )
        if len(found) > 1:
            raise _CmdletError(
                400,
                "BadRequest",
                f"The operation couldn't be performed because '{identity}' matches multiple "
                "entries.",
                "Microsoft.Exchange.Configuration.Tasks.ManagementObjectAmbiguousException",
            )
        return found[0]

    def _set_cas(self, parameters: dict[str, Any], base: str, tenant: str) -> Reply:
        changes: dict[str, Any] = {}
        for key, value in parameters.items():
            if key.lower() == "identity":
                continue
            name = next((n for n in CAS_SETTABLE if n.lower() == key.lower()), None)
            if name is None:
                raise _bad_parameter(key)
            _check_bool(name, value, nullable=CAS_SETTABLE[name])
            changes[name] = value
        identity = next((v for k, v in parameters.items() if k.lower() == "identity"), None)
        guid = self._resolve(self.state.cas, identity)
        record = self.state.cas[guid]
        current = full_cas(record, self.state.domain)
        modified = any(current.get(k, _ABSENT) != v or k not in current for k, v in changes.items())
        record.update(changes)
        warnings = [] if modified else [_not_modified(str(identity))]
        return _ok([], warnings, None, base, tenant)

    def _set_transport(self, parameters: dict[str, Any], base: str, tenant: str) -> Reply:
        _only(parameters, (SETTING,))
        value = next((v for k, v in parameters.items() if k.lower() == SETTING.lower()), _ABSENT)
        warnings: list[str] = []
        if value is not _ABSENT:
            _check_bool(SETTING, value, nullable=False)
            if value == self.state.org_disabled:
                warnings.append(_not_modified("Transport Settings"))
            self.state.org_disabled = bool(value)
        return _ok([], warnings, None, base, tenant)

    # ---- faults and errors -------------------------------------------------------------

    def _fault_reply(self, fault: Fault, cmdlet: str) -> Reply:
        if fault.kind == "throttle":
            headers = {} if fault.retry_after is None else {"Retry-After": fault.retry_after}
            body = error_body(
                "TooManyRequests",
                "Too many requests.",
                "The request was throttled. Retry after the interval in Retry-After.",
                "Microsoft.Exchange.Admin.OData.Core.ThrottlingException",
            )
            return Reply(429, body, headers)
        if fault.kind == "unavailable":
            body = error_body(
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
                "The server is busy; try again later.",
                "Microsoft.Exchange.Admin.OData.Core.ServiceUnavailableException",
            )
            return Reply(fault.status, body)
        if fault.kind == "transient":
            return Reply(
                500,
                error_body(
                    "InternalServerError",
                    "An error occurred while processing this request.",
                    "Active Directory server is not available (DC overloaded). Try again later.",
                    "Microsoft.Exchange.Data.Directory.DCOverloadedException",
                ),
            )
        if fault.kind == "claims":
            challenge = (
                'Bearer realm="", error="insufficient_claims", '
                'claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZX19fQ=="'
            )
            return Reply(
                401,
                error_body(
                    "Unauthorized", "Claims challenge.", "insufficient_claims", "Unauthorized"
                ),
                {"WWW-Authenticate": challenge},
            )
        message = f"User is not allowed to call {cmdlet}."  # deny
        return Reply(
            401,
            error_body(
                "Unauthorized",
                message,
                message,
                "Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletAccessDeniedException",
            ),
        )

    @staticmethod
    def _spoil(reply: Reply, fault: Fault) -> Reply:
        if reply.status != 200:
            return reply
        if fault.kind == "drop":
            reply.drop = True
        elif fault.kind == "malformed":
            reply.raw = reply.payload()[:-7] + b"<html>"
        else:  # adminapi_error: a part of the page, and the error inside the 200
            body = dict(reply.body)
            body["value"] = body["value"][: len(body["value"]) // 2]
            body["adminapi.errors@odata.type"] = "#Collection(Exchange.ErrorRecord)"
            body["@adminapi.errors"] = [
                {
                    "Exception": "Microsoft.Exchange.Data.StorageTransientException",
                    "Message": "The mailbox database is temporarily unavailable.",
                }
            ]
            reply.body = body
        return reply

    @staticmethod
    def _error(exc: _CmdletError) -> Reply:
        return Reply(exc.status, error_body(exc.code, exc.message, exc.message, exc.exc_type))

    def _purge(self) -> None:
        now = time.monotonic()
        for token in [t for t, c in self._cursors.items() if now - c.created > self.link_ttl]:
            del self._cursors[token]


_ABSENT: Any = object()


def _ok(
    value: list[dict[str, Any]], warnings: list[str], link: str | None, base: str, tenant: str
) -> Reply:
    body: dict[str, Any] = {
        "@odata.context": (
            f"{base}/adminapi/beta/{tenant}/$metadata#Collection(Exchange.GenericHashTable)"
        ),
        "adminapi.warnings@odata.type": "#Collection(String)",
        "@adminapi.warnings": warnings,
        "value": value,
    }
    if link is not None:
        body["@odata.nextLink"] = link
    return Reply(200, body)


def _only(parameters: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    lowered = {a.lower() for a in allowed}
    for key in parameters:
        if key.lower() not in lowered:
            raise _bad_parameter(key)


def _check_bool(name: str, value: Any, *, nullable: bool) -> None:
    if isinstance(value, bool) or (value is None and nullable):
        return
    raise _CmdletError(
        400,
        "BadRequest",
        f"Cannot process argument transformation on parameter '{name}'. Cannot convert value "
        f"'{'$null' if value is None else value}' to type 'System.Boolean'.",
        "System.Management.Automation.ParameterBindingArgumentTransformationException",
    )


def _not_modified(identity: str) -> str:
    return f"The command completed successfully but no settings of '{identity}' have been modified."


def _select(args: Mapping[str, list[str]]) -> tuple[str, ...] | None:
    values = args.get("$select")
    if not values:
        return None
    names = tuple(n.strip() for v in values for n in v.split(",") if n.strip())
    return names or None


def _page_size(headers: Mapping[str, str]) -> int:
    match = _PREFER.search(headers.get("prefer", ""))
    if match is None:
        return MAX_PAGE_SIZE
    return max(1, min(MAX_PAGE_SIZE, int(match.group(1))))


def _result_size(value: Any) -> int | None:
    """None for Unlimited; the 1000 default when absent."""
    if value is _ABSENT:
        return DEFAULT_RESULT_SIZE
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1:
        raise _CmdletError(
            400,
            "BadRequest",
            f"Cannot process argument transformation on parameter 'ResultSize'. Cannot convert "
            f"value '{value}' to type 'Microsoft.Exchange.Data.Unlimited`1[System.UInt32]'.",
            "System.Management.Automation.ParameterBindingArgumentTransformationException",
        )
    return number
