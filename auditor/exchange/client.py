"""Exchange Online admin REST adapter: `InvokeCommand` over an injected `httpx.Client`.

The one place that talks to Exchange (docs/exchange-protocol.md). Reads return every page or
fail: a read that was refused, cut short or warned about truncation raises `CollectionFailed`
(or its `PermissionDenied` subclass, which names the missing Exchange role); it never returns a
shorter list. Every failure message names the cmdlet, the HTTP status and the `request-id`.

The jobs are split by responsibility: `transport` (one request, retries, rate-limit pacing),
`route` (endpoint and the regional redirect), `paging` (the page loop and its checks), `errors`
(error bodies, roles), this module (headers, typed cmdlets) and `collect` (the audit's reads).

Headers as the module sends them: `connection-id` is one GUID for the client's life (the
module's connection context: every cmdlet, page and retry), `client-request-id` one GUID per
cmdlet call, kept across its pages and retries.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from auditor.core.errors import CollectionFailed
from auditor.core.ports import TokenProvider
from auditor.exchange.errors import REQUIRED_ROLES, TRANSIENT_EXCEPTIONS
from auditor.exchange.paging import Pager
from auditor.exchange.route import Route
from auditor.exchange.sharded import read_shards
from auditor.exchange.shards import MAX_SHARDS, shard_filters
from auditor.exchange.transport import CallState, Transport

__all__ = [
    "ExchangeClient",
    "CAS_PROPERTIES",
    "MAILBOX_PROPERTIES",
    "TRANSPORT_PROPERTIES",
    "REQUIRED_ROLES",
    "TRANSIENT_EXCEPTIONS",
    "exchange_scope",
]

log = logging.getLogger(__name__)

CAS_PROPERTIES = (
    "Guid",
    "ExternalDirectoryObjectId",
    "Identity",
    "Name",
    "PrimarySmtpAddress",
    "SmtpClientAuthenticationDisabled",
)
MAILBOX_PROPERTIES = (
    "Guid",
    "ExternalDirectoryObjectId",
    "Alias",
    "UserPrincipalName",
    "PrimarySmtpAddress",
    "RecipientTypeDetails",
    "EmailAddresses",
)
TRANSPORT_PROPERTIES = ("Identity", "SmtpClientAuthenticationDisabled")
_ANCHOR = "APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@"


class ExchangeClient:
    """Calls `POST {base_url}/adminapi/beta/{tenant}/InvokeCommand`.

    `tokens` hands out bearer tokens (asked before every request, so a provider renews them
    during long runs); `http` is the transport (tests pass one bound to the emulator or a
    MockTransport); `sleep` and `jitter` are injectable so retries cost no wall time in tests.
    `slow_below`/`max_slowdown`: when `Rate-Limit-Remaining` is at most `slow_below`, the next
    request waits up to `max_slowdown` seconds (a share of `Rate-Limit-Reset`).
    `shards`: the listings (`get_cas_mailboxes`, `get_mailboxes`) are read as that many
    `-Filter` chains on `Name`, at most `max_parallel` of one listing at a time, merged without
    duplicates (`exchange.sharded`; docs/exchange-protocol.md, "Sharded reads"); 1 is one chain.
    `spread` (names per first character, `core.spread`; settable before each read) balances
    the shards' filters; None or {} uses a typical spread of names.
    """

    def __init__(
        self,
        *,
        base_url: str,
        tenant: str,
        tokens: TokenProvider,
        http: httpx.Client,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        page_size: int = 1000,
        max_pages: int = 5000,
        max_retries: int = 5,
        backoff: float = 2.0,
        max_backoff: float = 60.0,
        max_retry_after: float = 60.0,
        slow_below: int = 5,
        max_slowdown: float = 30.0,
        connection_id: str | None = None,
        shards: int = 1,
        max_parallel: int = 3,
        spread: Mapping[str, int] | None = None,
    ) -> None:
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be between 1 and {MAX_SHARDS}")
        if not 1 <= max_parallel <= MAX_SHARDS:
            raise ValueError(f"max_parallel must be between 1 and {MAX_SHARDS}")
        self.shards = shards
        self.max_parallel = max_parallel
        self.spread = spread
        self.base_url = base_url.rstrip("/")
        self.tenant = tenant
        self.page_size = page_size
        self.connection_id = connection_id or str(uuid.uuid4())
        self._route = Route(
            f"{self.base_url}/adminapi/beta/{quote(tenant, safe='@.')}/InvokeCommand"
        )
        self._transport = Transport(
            tokens=tokens,
            http=http,
            sleep=sleep,
            jitter=jitter,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            max_retry_after=max_retry_after,
            route=self._route,
            slow_below=slow_below,
            max_slowdown=max_slowdown,
        )
        self._pager = Pager(self._transport, self._route, max_pages=max_pages)
        self.last_warnings: list[str] = []  # non-fatal @adminapi.warnings of the last call

    @property
    def max_pages(self) -> int:
        return self._pager.max_pages

    @property
    def endpoint(self) -> str:
        """The InvokeCommand URL; on the regional host once a redirect was followed."""
        return self._route.endpoint

    @property
    def redirected_to(self) -> str | None:
        return self._route.redirected_to

    # ---- the generic call ------------------------------------------------------------

    def invoke(
        self,
        cmdlet: str,
        parameters: Mapping[str, Any],
        *,
        select: Sequence[str] | None = None,
        on_page: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Run one cmdlet and return every record of every page, annotations dropped.

        Raises `CollectionFailed` (or `PermissionDenied`) instead of returning a partial list.
        With `on_page` each page's records go to it as they are read and the list returned is
        empty; a raise then means the pages already handed over are a partial read.
        """
        records: list[dict[str, Any]] = []
        self.last_warnings = self._call(cmdlet, parameters, select, on_page or records.extend)
        return records

    def _call(
        self,
        cmdlet: str,
        parameters: Mapping[str, Any],
        select: Sequence[str] | None,
        sink: Callable[[list[dict[str, Any]]], None],
    ) -> list[str]:
        """One cmdlet call, every page to `sink`; its non-fatal warnings."""
        state = CallState(cmdlet)
        endpoint = self.endpoint
        url = f"{endpoint}?$select={','.join(select)}" if select else endpoint
        body = json.dumps(
            {"CmdletInput": {"CmdletName": cmdlet, "Parameters": dict(parameters)}}
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-ResponseFormat": "json",
            "X-AnchorMailbox": f"{_ANCHOR}{self.tenant}",
            "X-CmdletName": cmdlet,
            "connection-id": self.connection_id,
            "client-request-id": state.request_id,
        }
        if cmdlet.lower().startswith("get-"):
            headers["Prefer"] = f"odata.maxpagesize={self.page_size}"
        warnings: list[str] = []
        count, pages = self._pager.read(state, url, body, headers, sink, warnings)
        log.info("%s: %d records in %d pages", cmdlet, count, pages)
        return warnings

    def list_all(
        self,
        cmdlet: str,
        *,
        select: Sequence[str],
        on_page: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Every object `cmdlet` lists (`-ResultSize Unlimited`), in `self.shards` chains.

        As `invoke`: every record or `CollectionFailed`; with `on_page` the pages go to it
        (never two at once) and the list returned is empty. One shard is today's request."""
        parameters: dict[str, Any] = {"ResultSize": "Unlimited"}
        if self.shards == 1:
            return self.invoke(cmdlet, parameters, select=select, on_page=on_page)
        records: list[dict[str, Any]] = []

        def read(shard: str | None, sink: Callable[[list[dict[str, Any]]], None]) -> list[str]:
            filtered = parameters if shard is None else {**parameters, "Filter": shard}
            return self._call(cmdlet, filtered, select, sink)

        warnings, duplicates = read_shards(
            cmdlet,
            shard_filters(self.shards, self.spread),
            read,
            on_page or records.extend,
            max_parallel=self.max_parallel,
        )
        self.last_warnings = warnings
        if duplicates:
            log.info("%s: %d records listed by two shards, kept once", cmdlet, duplicates)
        return records

    # ---- reads and writes the auditor uses ----------------------------------------------

    def get_transport_config(self) -> dict[str, Any]:
        """The organisation's transport config (`SmtpClientAuthenticationDisabled`)."""
        records = self.invoke("Get-TransportConfig", {}, select=TRANSPORT_PROPERTIES)
        if len(records) != 1:
            raise CollectionFailed(
                f"Get-TransportConfig: HTTP 200, request-id none: expected one object, "
                f"got {len(records)}"
            )
        return records[0]

    def get_cas_mailboxes(
        self, on_page: Callable[[list[dict[str, Any]]], None] | None = None
    ) -> list[dict[str, Any]]:
        """Every mailbox's CAS record, projected to what the auditor needs (see `invoke`)."""
        return self.list_all("Get-CASMailbox", select=CAS_PROPERTIES, on_page=on_page)

    def get_mailboxes(
        self, on_page: Callable[[list[dict[str, Any]]], None] | None = None
    ) -> list[dict[str, Any]]:
        """Every mailbox's directory record (UPN, alias, proxy addresses, type; see `invoke`)."""
        return self.list_all("Get-Mailbox", select=MAILBOX_PROPERTIES, on_page=on_page)

    def get_cas_mailbox(self, identity: str) -> dict[str, Any]:
        """One mailbox's CAS record (re-check before and verify after a change)."""
        records = self.invoke("Get-CASMailbox", {"Identity": identity}, select=CAS_PROPERTIES)
        if len(records) != 1:
            raise CollectionFailed(
                f"Get-CASMailbox: HTTP 200, request-id none: expected one mailbox for "
                f"{identity!r}, got {len(records)}"
            )
        return records[0]

    def set_cas_mailbox(self, guid: str, disabled: bool | None) -> None:
        """Set one mailbox's `SmtpClientAuthenticationDisabled`: True, False, or None (inherit)."""
        if disabled is not None and not isinstance(disabled, bool):
            raise TypeError("disabled must be True, False or None")
        self.invoke(
            "Set-CASMailbox", {"Identity": guid, "SmtpClientAuthenticationDisabled": disabled}
        )

    def set_transport_config(self, disabled: bool) -> None:
        """Set the organisation switch; it takes a boolean only."""
        if not isinstance(disabled, bool):
            raise TypeError("disabled must be True or False")
        self.invoke("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": disabled})


def exchange_scope(base_url: str) -> str:
    """The client-credentials scope of an Exchange endpoint: `https://outlook.office365.com/.default`."""
    return f"{base_url.rstrip('/')}/.default"
