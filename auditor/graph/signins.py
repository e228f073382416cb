"""Read SMTP AUTH sign-ins from Microsoft Graph: `GET /v1.0/auditLogs/signIns`.

`SignInReader.read(since, now=...)` returns `UsageEvidence`: `collected` with every sign-in of
every page, or `unknown` with the reason. It never raises for what the service answers and
never returns a shorter list as if it were complete: a licence gap (403
`Authentication_RequestFromNonPremiumTenantOrB2CTenant`, retried once because it is
intermittent), a missing permission (403 `Authentication_MSGraphPermissionMissing`,
`Authentication_ApplicationHasNo*`, `Authorization_RequestDenied`), throttling that outlasts
the bounded retries, a broken page or a nextLink to another host all make the evidence
unknown. Absence of evidence is never "no use".

Policy: `$top=1000` (the maximum and default page size); `@odata.nextLink` is followed verbatim
but only on the same origin; requests are spaced `min_interval` seconds apart (the reports
service allows 5 requests per 10 s per app and tenant); 429 waits `Retry-After` (capped);
5xx and transport errors back off; a 401 refreshes the token once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from auditor.core.errors import AuditorError
from auditor.core.ports import TokenProvider
from auditor.core.usage import (
    DEFAULT_LOOKBACK_DAYS,
    SMTP_CLIENT_APPS,
    SignIn,
    UsageEvidence,
    UsageState,
    parse_signin,
)

__all__ = ["GRAPH_SCOPE", "SignInReader", "signin_filter", "LICENCE", "PERMISSION_CODES"]

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
LICENCE = "authentication_requestfromnonpremiumtenantorb2ctenant"
PERMISSION_CODES = (
    "authentication_msgraphpermissionmissing",
    "authentication_applicationhasnoreadauditlogdataaccess",
    "authentication_applicationhasnodirectoryreadaccess",
    "authorization_requestdenied",
)
PAGE_SIZE = 1000


def signin_filter(since: datetime) -> str:
    """`(clientAppUsed eq 'Authenticated SMTP' or clientAppUsed eq 'SMTP') and createdDateTime
    ge 2026-11-01T00:00:00Z`: both spellings of basic-auth SMTP, from `since` on."""
    apps = " or ".join(f"clientAppUsed eq '{app}'" for app in SMTP_CLIENT_APPS)
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"({apps}) and createdDateTime ge {stamp}"


class _Unknown(Exception):
    """The evidence is unknown; the message says why (no token, no personal data)."""


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _error_code(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return "", ""
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")[:300]


class SignInReader:
    """Reads `{base_url}/v1.0/auditLogs/signIns` with an app-only Graph token."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: TokenProvider,
        http: httpx.Client,
        sleep: Callable[[float], None] = time.sleep,
        min_interval: float = 2.0,
        max_retries: int = 4,
        max_retry_after: float = 60.0,
        max_pages: int = 500,
        licence_retries: int = 1,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.endpoint = f"{self.base_url}/v1.0/auditLogs/signIns"
        self._tokens = tokens
        self._http = http
        self._sleep = sleep
        self.min_interval = min_interval
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.max_pages = max_pages
        self.licence_retries = licence_retries
        self._origin = _origin(self.endpoint)
        self._requests = 0

    def read(
        self, since: datetime, *, now: datetime, lookback_days: int = DEFAULT_LOOKBACK_DAYS
    ) -> UsageEvidence:
        """Every SMTP AUTH sign-in from `since` to now, or unknown evidence with the reason."""
        signins: list[SignIn] = []
        pages = 0
        try:
            url: str | None = self.endpoint
            query = {"$filter": signin_filter(since), "$top": str(PAGE_SIZE)}
            params: dict[str, str] | None = query
            seen: set[str] = set()
            while url is not None:
                pages += 1
                if pages > self.max_pages:
                    raise _Unknown(f"more than {self.max_pages} pages; the read was stopped")
                document = self._get(url, params)
                params = None  # a nextLink carries the query (and its $skiptoken) itself
                value = document.get("value")
                if not isinstance(value, list):
                    raise _Unknown(f"page {pages} has no 'value' list (a broken page)")
                for record in value:
                    if isinstance(record, dict):
                        signin = parse_signin(record)
                        if signin is not None:
                            signins.append(signin)
                link = document.get("@odata.nextLink")
                if link is None:
                    url = None
                    continue
                if not isinstance(link, str):
                    raise _Unknown(f"page {pages} has a nextLink that is not a string")
                url = urljoin(self.endpoint, link)
                if _origin(url) != self._origin:
                    raise _Unknown(
                        f"page {pages} points its nextLink at another host "
                        f"({urlsplit(url).netloc}); refused"
                    )
                if url in seen:
                    raise _Unknown(f"page {pages} repeats an earlier nextLink")
                seen.add(url)
        except _Unknown as exc:
            log.warning("sign-in evidence unknown: %s", exc)
            return UsageEvidence(
                UsageState.UNKNOWN,
                str(exc),
                collected_at=now,
                since=since,
                lookback_days=lookback_days,
                pages=pages,
            )
        log.info("sign-ins: %d SMTP AUTH sign-ins in %d pages", len(signins), pages)
        return UsageEvidence(
            UsageState.COLLECTED,
            collected_at=now,
            since=since,
            lookback_days=lookback_days,
            signins=tuple(signins),
            pages=pages,
        )

    # -- one page, with the retry policy ----------------------------------------------------

    def _token(self, force: bool) -> str:
        try:
            return self._tokens.get_token(force_refresh=force)
        except AuditorError as exc:
            raise _Unknown(f"no Graph token: {exc}") from None

    def _get(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        retries = licence = 0
        refreshed = False
        token = self._token(False)
        while True:
            if self._requests and self.min_interval > 0:
                self._sleep(self.min_interval)
            self._requests += 1
            try:
                response = self._http.get(
                    url,
                    params=params,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                )
            except httpx.HTTPError as exc:
                if retries >= self.max_retries:
                    reason = f"the sign-in log could not be reached: {type(exc).__name__}"
                    raise _Unknown(reason) from None
                retries += 1
                self._sleep(min(2.0 * 2**retries, 60.0))
                continue
            status = response.status_code
            rid = response.headers.get("request-id", "none")
            if status == 200:
                try:
                    document = response.json()
                except (ValueError, UnicodeDecodeError):
                    raise _Unknown(f"HTTP 200, request-id {rid}: a page is not JSON") from None
                if not isinstance(document, dict):
                    raise _Unknown(f"HTTP 200, request-id {rid}: a page is not a JSON object")
                return document
            code, message = _error_code(response)
            lowered = code.lower()
            if status == 403 and lowered == LICENCE:
                if licence < self.licence_retries:  # intermittent even on P1 tenants
                    licence += 1
                    continue
                raise _Unknown(
                    f"licence: Graph refused the sign-in log ({code}, HTTP 403, request-id "
                    f"{rid}); reading sign-ins needs Entra ID P1 or P2"
                )
            if status in (401, 403) and lowered in PERMISSION_CODES:
                raise _Unknown(
                    f"permission: Graph refused the sign-in log ({code}, HTTP {status}, "
                    f"request-id {rid}); the auditor's identity needs AuditLog.Read.All "
                    "(and Directory.Read.All)"
                )
            if status == 401 and not refreshed:
                refreshed = True
                token = self._token(True)
                continue
            if status == 429:
                if retries >= self.max_retries:
                    raise _Unknown(
                        f"throttled: HTTP 429 after {retries} retries (request-id {rid})"
                    )
                retries += 1
                self._sleep(self._retry_after(response, retries))
                continue
            if status >= 500 and retries < self.max_retries:
                retries += 1
                self._sleep(min(2.0 * 2**retries, 60.0))
                continue
            detail = f"{code}: {message}" if code else response.text[:200]
            raise _Unknown(f"HTTP {status}, request-id {rid}: {json.dumps(detail)[1:-1]}")

    def _retry_after(self, response: httpx.Response, retries: int) -> float:
        value = response.headers.get("Retry-After", "")
        try:
            wait = float(value)
        except ValueError:
            wait = 2.0 * 2**retries
        return max(0.0, min(wait, self.max_retry_after))
