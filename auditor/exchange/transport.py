"""One InvokeCommand request with the retry policy (docs/exchange-protocol.md, "Retries").

Policy (the ExchangeOnlineManagement module's own): at most `max_retries` (5) retries per
request; 429 waits `Retry-After` (decimal seconds, capped); 503/504 and the transient Exchange
exception names back off 2 s × 2^n plus jitter; a 401 refreshes the token once per call and then
stops; a 401/403 RBAC refusal is not retried; a 401 claims challenge is not retried either (a new
app token without those claims cannot satisfy it). Transport errors (connection refused or
dropped mid-page) end the read: a half-read page is never trusted.

Before the service throttles: when a response's `Rate-Limit-Remaining` is low, the next request
waits a bounded share of `Rate-Limit-Reset`. A redirect from the front door to the tenant's
regional host is followed once (`route.Route`). Error bodies are read raw and never decoded as
gzip unless they are gzip (an RBAC 403 is NUL bytes labelled `Content-Encoding: gzip`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from auditor.core.errors import AuditorError, CollectionFailed, PermissionDenied
from auditor.core.ports import TokenProvider
from auditor.exchange.errors import (
    TRANSIENT_EXCEPTIONS,
    body_text,
    challenge_error,
    detail,
    is_rbac_refusal,
    required_role,
)
from auditor.exchange.route import Route

__all__ = ["CallState", "HTTP_TIMEOUT", "CONNECT_TIMEOUT", "Transport", "reset_seconds"]

log = logging.getLogger(__name__)

# The module's $DefaultHTTPTimeout: "1 minute more than server timeout so we don't timeout
# before the server" (docs/exchange-protocol.md, "Retries and timeouts").
HTTP_TIMEOUT = 960.0
CONNECT_TIMEOUT = 15.0


class _CutResponse(Exception):
    def __init__(self, status: int, request_id: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.request_id, self.reason = status, request_id, reason


class CallState:
    """One logical cmdlet call: its `client-request-id` (kept across retries and pages)."""

    __slots__ = ("cmdlet", "refreshed", "request_id")

    def __init__(self, cmdlet: str) -> None:
        self.cmdlet = cmdlet
        self.request_id = str(uuid.uuid4())
        self.refreshed = False


class Transport:
    """POSTs with bearer tokens, retries and backoff; returns only 200 responses."""

    def __init__(
        self,
        *,
        tokens: TokenProvider,
        http: httpx.Client,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        max_retries: int = 5,
        backoff: float = 2.0,
        max_backoff: float = 60.0,
        max_retry_after: float = 60.0,
        route: Route | None = None,
        slow_below: int = 5,
        max_slowdown: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = tokens
        self._http = http
        self._sleep = sleep
        self._jitter = jitter
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.route = route
        self.slow_below = slow_below
        self.max_slowdown = max_slowdown
        self._clock = clock

    def post(
        self,
        state: CallState,
        url: str,
        body: bytes,
        headers: dict[str, str],
        sent: threading.Event | None = None,
    ) -> httpx.Response:
        """One request with the retry policy; returns a 200 response whose body is read."""
        cmdlet = state.cmdlet
        retries = 0
        force = False
        while True:
            token = self._token(state, force)
            force = False
            try:
                response, raw = self._send(
                    url, body, {**headers, "Authorization": f"Bearer {token}"}, sent
                )
            except _CutResponse as cut:
                raise CollectionFailed(
                    f"{cmdlet}: HTTP {cut.status}, request-id {cut.request_id}: the response "
                    f"was cut ({cut.reason}); client-request-id {state.request_id}"
                ) from cut
            except httpx.HTTPError as exc:
                raise CollectionFailed(
                    f"{cmdlet}: HTTP none, request-id none: the connection failed "
                    f"({type(exc).__name__}: {exc}); client-request-id {state.request_id}"
                ) from exc
            status = response.status_code
            rid = response.headers.get("request-id", "none")
            log.debug(
                "%s: HTTP %d, request-id %s, X-CalculatedBETarget %s",
                cmdlet,
                status,
                rid,
                response.headers.get("X-CalculatedBETarget", "-"),
            )
            self._pace(response, cmdlet)
            if status == 200:
                return response
            text = body_text(raw, response.headers.get("Content-Encoding", ""))
            where = f"{cmdlet}: HTTP {status}, request-id {rid}"
            if 300 <= status < 400 and status != 304:
                if self.route is None:
                    raise CollectionFailed(f"{where}: an unexpected redirect; refused")
                url = self.route.follow(url, response.headers.get("Location"), where)
                log.info("%s: redirected to %s", where, url.split("?", 1)[0])
                continue
            if is_rbac_refusal(status, text):
                raise PermissionDenied(
                    f"{where}: {detail(text)} Missing Exchange role: {required_role(cmdlet)} "
                    "(assign it to the app's service principal through a role group, or an "
                    "Entra role that includes it)"
                )
            if status == 401:
                challenge = response.headers.get("WWW-Authenticate", "")
                if "claims=" in challenge or "insufficient_claims" in challenge:
                    raise CollectionFailed(
                        f"{where}: claims challenge ({challenge_error(challenge)}); an app "
                        "token cannot satisfy it: check Conditional Access for the app"
                    )
                if not state.refreshed:
                    state.refreshed = True
                    force = True
                    continue
                raise CollectionFailed(
                    f"{where}: the token was refused again after one refresh: {detail(text)}"
                )
            if retries < self.max_retries:
                delay: float | None = None
                if status == 429:
                    delay = self._retry_after(response, retries)
                elif status in (503, 504) or any(name in text for name in TRANSIENT_EXCEPTIONS):
                    delay = self._backoff(retries)
                if delay is not None:
                    log.warning("%s: retry %d in %.2f s", where, retries + 1, delay)
                    self._sleep(delay)
                    retries += 1
                    continue
            suffix = f" (after {retries} retries)" if retries else ""
            raise CollectionFailed(f"{where}: {detail(text)}{suffix}")

    def _send(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        sent: threading.Event | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """POST and read the whole body; a body cut short keeps its status and request-id.

        A 200 body is read (and decoded) into the response; any other body is returned raw,
        as bytes off the wire, so a mislabelled one cannot fail the read. `sent` is set once the
        request is on the wire (httpcore's trace extension)."""
        extensions: dict[str, Any] = {}
        if sent is not None:

            def trace(event: str, info: Any) -> None:
                if event.endswith("send_request_body.complete"):
                    sent.set()

            extensions["trace"] = trace
        with self._http.stream(
            "POST",
            url,
            content=body,
            headers=headers,
            extensions=extensions,
            follow_redirects=False,  # redirects are decided by `route.Route`, never by httpx
        ) as response:
            raw = b""
            try:
                if response.status_code == 200:
                    response.read()
                else:
                    raw = _raw_body(response)
            except httpx.HTTPError as exc:
                raise _CutResponse(
                    response.status_code,
                    response.headers.get("request-id", "none"),
                    f"{type(exc).__name__}: {exc}",
                ) from exc
        return response, raw

    def _pace(self, response: httpx.Response, cmdlet: str) -> None:
        """Slow down before the service throttles: wait a share of the time to the reset."""
        remaining = response.headers.get("Rate-Limit-Remaining")
        if remaining is None:
            return
        try:
            left = int(float(remaining))
        except ValueError:
            return
        if left > self.slow_below:
            return
        reset = reset_seconds(response.headers.get("Rate-Limit-Reset"), self._clock())
        if reset is None:
            reset = self.backoff
        delay = min(max(reset, 0.0) / (max(left, 0) + 1), self.max_slowdown)
        if delay > 0:
            log.info(
                "%s: Rate-Limit-Remaining %d, reset in %.1f s: waiting %.2f s",
                cmdlet,
                left,
                reset,
                delay,
            )
            self._sleep(delay)

    def _token(self, state: CallState, force: bool) -> str:
        try:
            return self._tokens.get_token(force_refresh=force)
        except AuditorError:
            raise
        except Exception as exc:
            raise CollectionFailed(
                f"{state.cmdlet}: HTTP none, request-id none: could not get a token "
                f"({type(exc).__name__})"
            ) from exc

    def _retry_after(self, response: httpx.Response, retries: int) -> float:
        value = response.headers.get("Retry-After")
        try:
            seconds = float(value) if value is not None else -1.0
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds < float("inf"):
            return self._backoff(retries)
        return min(seconds, self.max_retry_after)

    def _backoff(self, retries: int) -> float:
        delay = self.backoff * (2**retries) + self._jitter() * self.backoff
        return float(min(delay, self.max_backoff))


def _raw_body(response: httpx.Response) -> bytes:
    """The body as it came off the wire (a response built in memory has only its content)."""
    try:
        return b"".join(response.iter_raw())
    except httpx.StreamConsumed:
        return response.content


def reset_seconds(value: str | None, now: float) -> float | None:
    """`Rate-Limit-Reset` as seconds from `now`. Its format is not documented, so this takes
    seconds (decimal), a Unix time, an HTTP date or an ISO 8601 time; None if unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if number != number or number in (float("inf"), float("-inf")):
            return None
        return number - now if number > 1_000_000_000 else number
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now
