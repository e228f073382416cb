"""The protocol of `POST /adminapi/beta/{tenant}/InvokeCommand`, independent of sockets.

Implements the protocol as public sources show it (docs/exchange-protocol.md): `$select`
projection, `Prefer: odata.maxpagesize` (1..1000, default 1000), opaque `$skiptoken` nextLinks
that name the backend server, are bound to the session's `connection-id` and expire after 30
minutes ("Expired or Invalid pagination request…" otherwise), the truncation warning on every
page that has a nextLink, the 1000-object default and its warning when `ResultSize` is absent,
OData annotations, `Set-*` semantics including `null` (an answer of `"value": null` plus
warnings), error bodies of the live shape, RBAC 403s of NUL bytes, and reads that lag writes.
What varies is switched by `behaviour.Behaviour`. It knows nothing about any client.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from devkit.emulator.auditlog import AuditLog
from devkit.emulator.behaviour import ABSENT as _ABSENT
from devkit.emulator.behaviour import Behaviour, Lag
from devkit.emulator.errors import (
    CmdletError,
    Reply,
    bad_parameter,
    error_body,
    fault_reply,
    forbidden,
    invalid_filter,
    not_modified,
    pagination_expired,
    spoil,
)
from devkit.emulator.faults import Faults
from devkit.emulator.opath import FilterError, parse_filter
from devkit.emulator.params import check_bool, only, page_size, result_size, select_of
from devkit.emulator.records import (
    CAS_SETTABLE,
    annotate,
    backend_server,
    full_cas,
    full_mailbox,
    full_transport_config,
    project,
    proxy_addresses,
)
from devkit.tenantgen import Tenant

__all__ = ["Endpoint", "Reply", "MORE_RESULTS", "error_body"]

MORE_RESULTS = (
    "There are more results available than are currently displayed. To view them, increase the "
    "value for the ResultSize parameter."
)
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


@dataclass
class _Cursor:
    cmdlet: str
    guids: list[str]
    offset: int
    select: tuple[str, ...] | None
    warn: bool
    page: int
    created: float
    connection: str | None  # the session that opened the listing
    filtered: bool = False  # opened with `-Filter` (pages may cost more: `filter_latency`)


class Endpoint:
    """The tenant's admin endpoint. `state` is mutable between (not during) requests."""

    def __init__(
        self, state: Tenant, *, tenant_id: str, faults: Faults, behaviour: Behaviour
    ) -> None:
        self.state = state
        self.tenant_id = tenant_id
        self.faults = faults
        self.behaviour = behaviour
        self.link_ttl = behaviour.link_ttl
        self.lock = threading.RLock()
        self.lag = Lag(behaviour.replication_delay)
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
        except CmdletError as exc:
            return exc.reply(), None, 0
        skiptokens = args.get("$skiptoken")
        skiptoken = skiptokens[0] if skiptokens else None
        cursor: _Cursor | None = None
        if skiptoken is not None:
            with self.lock:
                cursor = self._cursors.get(skiptoken)
            session = headers.get("connection-id")
            if (
                cursor is None
                or time.monotonic() - cursor.created > self.link_ttl
                or (
                    self.behaviour.bind_links
                    and (cursor.connection is None or cursor.connection != session)
                )
            ):
                return pagination_expired().reply(), cmdlet, 0
            if cursor.cmdlet != cmdlet:
                return (
                    CmdletError(
                        400,
                        "BadRequest",
                        f"The skip token belongs to {cursor.cmdlet}, not {cmdlet}.",
                        "Microsoft.Exchange.Admin.OData.Core.ODataException",
                    ).reply(),
                    cmdlet,
                    0,
                )
        if self.behaviour.denies(cmdlet):
            return forbidden(), cmdlet, 0
        page = cursor.page + 1 if cursor is not None else 1
        fault = self.faults.take(cmdlet, page)
        if fault is not None and fault.kind not in ("adminapi_error", "drop", "malformed"):
            return fault_reply(fault, cmdlet), cmdlet, page
        select = select_of(args)
        size = page_size(headers)
        try:
            reply = self._run(
                cmdlet, parameters, select, size, cursor, tenant, base, headers.get("connection-id")
            )
        except CmdletError as exc:
            return exc.reply(), cmdlet, page
        if fault is not None:
            reply = spoil(reply, fault)
        return reply, cmdlet, page

    # ---- request parsing ---------------------------------------------------------------

    def _parse_body(self, body: bytes) -> tuple[str, dict[str, Any]]:
        try:
            document = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise CmdletError(
                400, "BadRequest", "The request body is not valid JSON.", "System.FormatException"
            ) from exc
        cmdlet_input = document.get("CmdletInput") if isinstance(document, dict) else None
        if not isinstance(cmdlet_input, dict) or not isinstance(
            cmdlet_input.get("CmdletName"), str
        ):
            raise CmdletError(
                400,
                "BadRequest",
                "The request body needs CmdletInput.CmdletName.",
                "System.ArgumentException",
            )
        name = cmdlet_input["CmdletName"]
        cmdlet = _CMDLETS.get(name.strip().lower())
        if cmdlet is None:
            raise CmdletError(
                400,
                "BadRequest",
                f"The term '{name}' is not recognized as a name of a cmdlet.",
                "System.Management.Automation.CommandNotFoundException",
            )
        parameters = cmdlet_input.get("Parameters") or {}
        if not isinstance(parameters, dict):
            raise CmdletError(
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
        session: str | None,
    ) -> Reply:
        with self.lock:
            if cmdlet == "Get-TransportConfig":
                only(parameters, ())
                org = self.lag.view("org", {SETTING: self.state.org_disabled})[SETTING]
                record = annotate(project(full_transport_config(org), select))
                return _ok([record], [], None, base, tenant)
            if cmdlet in ("Get-CASMailbox", "Get-Mailbox"):
                return self._list(cmdlet, parameters, select, size, cursor, tenant, base, session)
            if cmdlet == "Search-UnifiedAuditLog":
                try:
                    return _ok(self.auditlog.search(parameters), [], None, base, tenant)
                except (ValueError, TypeError) as exc:
                    raise bad_parameter(str(exc)) from exc
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
        session: str | None,
    ) -> Reply:
        records = self.state.cas if cmdlet == "Get-CASMailbox" else self.state.mailboxes
        if cursor is None:
            only(parameters, ("Identity", "ResultSize", "RecipientTypeDetails", "Filter"))
            guids = self._matching(records, parameters)
            filtered = any(key.lower() == "filter" for key in parameters)
            if filtered:
                guids = self._filtered(cmdlet, records, guids, parameters)
            limit = result_size(parameters.get("ResultSize", _ABSENT))
            warn = limit is not None and len(guids) > limit
            if limit is not None:
                guids = guids[:limit]
            offset, page = 0, 1
        else:
            guids, offset, select, warn, page, filtered = (
                cursor.guids,
                cursor.offset,
                cursor.select,
                cursor.warn,
                cursor.page + 1,
                cursor.filtered,
            )
        chunk = guids[offset : offset + size]
        cas = cmdlet == "Get-CASMailbox"
        full = full_cas if cas else full_mailbox
        value: list[dict[str, Any]] = []
        for guid in chunk:
            record = records.get(guid)
            if record is None:  # removed since the listing began
                continue
            if cas:
                record = self.lag.view(guid, record)
            shown = project(record, select)
            if select is None or len(shown) < len(select):
                shown = project(full(record, self.state.domain), select)
            if not cas and "EmailAddresses" in shown:
                shown["EmailAddresses"] = proxy_addresses(
                    shown["EmailAddresses"], guid, self.tenant_id
                )
            value.append(annotate(shown))
        warnings: list[str] = []
        link = None
        end = offset + size
        if end < len(guids):
            token = _skiptoken(guid_at=guids[end], page=page)
            self._purge()
            self._cursors[token] = _Cursor(
                cmdlet, guids, end, select, warn, page, time.monotonic(), session, filtered
            )
            link = f"{base}/adminapi/beta/{tenant}/InvokeCommand?$skiptoken={token}"
            if self.behaviour.page_warnings:
                warnings.append(MORE_RESULTS)
        elif warn:
            warnings.append(MORE_RESULTS)
        reply = _ok(value, warnings, link, base, tenant)
        reply.filtered = filtered
        return reply

    def _filtered(
        self,
        cmdlet: str,
        records: dict[str, dict[str, Any]],
        guids: list[str],
        parameters: dict[str, Any],
    ) -> list[str]:
        """The `guids` whose object matches the `-Filter` (the subset in `opath`), judged on
        the full object as the cmdlet shows it."""
        text = next(v for k, v in parameters.items() if k.lower() == "filter")
        try:
            predicate = parse_filter(text)
        except FilterError as exc:
            raise invalid_filter(str(exc)) from exc
        full = full_cas if cmdlet == "Get-CASMailbox" else full_mailbox
        domain = self.state.domain
        out = []
        for guid in guids:
            record = records[guid]
            shown = record if "Name" in record else full(record, domain)
            if predicate(shown):
                out.append(guid)
        return out

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
            raise CmdletError(
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
            raise CmdletError(
                404,
                "NotFound",
                f"The operation couldn't be performed because object '{identity}' couldn't be "
                f"found on '{self.state.domain}'.",
                "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
                "Ex6F9304",
            )
        if len(found) > 1:
            raise CmdletError(
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
                raise bad_parameter(key)
            check_bool(name, value, nullable=CAS_SETTABLE[name])
            changes[name] = value
        identity = next((v for k, v in parameters.items() if k.lower() == "identity"), None)
        guid = self._resolve(self.state.cas, identity)
        record = self.state.cas[guid]
        current = full_cas(record, self.state.domain)
        modified = any(current.get(k, _ABSENT) != v or k not in current for k, v in changes.items())
        self.lag.wrote(guid, record, changes)
        record.update(changes)
        warnings = [] if modified else [not_modified(str(identity))]
        return _set_ok(warnings, base, tenant)

    def _set_transport(self, parameters: dict[str, Any], base: str, tenant: str) -> Reply:
        only(parameters, (SETTING,))
        value = next((v for k, v in parameters.items() if k.lower() == SETTING.lower()), _ABSENT)
        warnings: list[str] = []
        if value is not _ABSENT:
            check_bool(SETTING, value, nullable=False)
            if value == self.state.org_disabled:
                warnings.append(not_modified("Transport Settings"))
            self.lag.wrote("org", {SETTING: self.state.org_disabled}, {SETTING: value})
            self.state.org_disabled = bool(value)
        return _set_ok(warnings, base, tenant)

    def _purge(self) -> None:
        now = time.monotonic()
        for token in [t for t, c in self._cursors.items() if now - c.created > self.link_ttl]:
            del self._cursors[token]


def _skiptoken(*, guid_at: str, page: int) -> str:
    """An opaque token naming the backend server that holds the cursor (as live ones do)."""
    server = backend_server(guid_at)
    raw = f"{server};{page};{secrets.token_hex(12)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


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


def _set_ok(warnings: list[str], base: str, tenant: str) -> Reply:
    """A `Set-*` answer: no object, `"value": null`, only the warnings."""
    reply = _ok([], warnings, None, base, tenant)
    reply.body["value"] = None
    return reply
