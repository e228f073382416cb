"""One InvokeCommand request with the retry policy (docs/exchange-protocol.md, "Retries").

Policy (the ExchangeOnlineManagement module's own): at most `max_retries` retries per request;
429 waits `Retry-After` (decimal seconds, capped); 503/504 and the transient Exchange exception
names back off 2 s × 2^n plus jitter; a 401 refreshes the token once per call and then stops; a
401/403 RBAC refusal is not retried; a 401 claims challenge is not retried either (a new app
token without those claims cannot satisfy it). Transport errors (connection refused or dropped
mid-page) end the read: a half-read page is never trusted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from auditor.core.errors import AuditorError, CollectionFailed, PermissionDenied
from auditor.core.ports import TokenProvider
from auditor.exchange.errors import (
    TRANSIENT_EXCEPTIONS,
    challenge_error,
    detail,
    is_rbac_refusal,
    required_role,
)

__all__ = ["CallState", "Transport"]

log = logging.getLogger(__name__)


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
    ) -> None:
        self._tokens = tokens
        self._http = http
        self._sleep = sleep
        self._jitter = jitter
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after

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
                response = self._send(
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
            if status == 200:
                return response
            text = response.text
            where = f"{cmdlet}: HTTP {status}, request-id {rid}"
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
    ) -> httpx.Response:
        """POST and read the whole body; a body cut short keeps its status and request-id.

        `sent` is set once the request is on the wire (httpcore's trace extension)."""
        extensions: dict[str, Any] = {}
        if sent is not None:

            def trace(event: str, info: Any) -> None:
                if event.endswith("send_request_body.complete"):
                    sent.set()

            extensions["trace"] = trace
        with self._http.stream(
            "POST", url, content=body, headers=headers, extensions=extensions
        ) as response:
            try:
                response.read()
            except httpx.HTTPError as exc:
                raise _CutResponse(
                    response.status_code,
                    response.headers.get("request-id", "none"),
                    f"{type(exc).__name__}: {exc}",
                ) from exc
        return response

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
