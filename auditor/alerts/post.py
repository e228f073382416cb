"""The one retrying, redacting POST: every alert and notice leaves through `post`.

- Bounded retries: at most `max_attempts` posts, on 429, 5xx and transport errors, waiting
  `Retry-After` (seconds, capped at `MAX_WAIT`) or 2 s × 2^n. Other answers are final.
- Secrets (a Workflows webhook URL carries its signature; a Graph token) never reach a log line,
  a report or an exception message: every text leaving this module is redacted, and httpx's own
  request logs are filtered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import httpx

from auditor.core.errors import DeliveryError

__all__ = ["post", "redact", "guard_library_logs", "PostOutcome", "PostFailed", "MAX_WAIT"]

MAX_WAIT = 60.0
TIMEOUT = 30.0
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_DETAIL_MAX = 300


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret (and a URL's query and path, which carry the signature) removed."""
    pieces: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        pieces.add(secret)
        parts = urlsplit(secret)
        if parts.scheme and parts.netloc:
            # A cut or re-encoded copy of the URL still must not show the signature.
            candidates = [parts.query, parts.path, *(v for _, v in parse_qsl(parts.query))]
            pieces.update(c for c in candidates if len(c) >= 8)
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "[redacted]")
    return text


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return max(0.0, seconds)


def _error_text(response: httpx.Response, secrets: Iterable[str | None]) -> str:
    """A short description of an error answer: Graph's `error.code: message` when present.
    Redacted before it is cut, so no cut-off piece of a secret survives."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        text = f"{error.get('code', '')}: {error.get('message', '')}"
    else:
        text = " ".join(response.text.split())
    text = redact(text, secrets)[:160]
    return f"HTTP {response.status_code}" + (f" {text}" if text else "")


class _RedactingFilter(logging.Filter):
    """Redacts known secrets from library log records: httpx logs every request URL at INFO,
    and a Workflows webhook URL carries its signature in the query string."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            clean = redact(message, self.secrets)
            if clean != message:
                record.msg, record.args = clean, None
        return True


_LIBRARY_FILTER = _RedactingFilter()


def guard_library_logs(secrets: Iterable[str | None]) -> None:
    _LIBRARY_FILTER.secrets.update(s for s in secrets if s)
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _LIBRARY_FILTER not in logger.filters:
            logger.addFilter(_LIBRARY_FILTER)


@dataclass(frozen=True, slots=True)
class PostOutcome:
    attempts: int
    http_status: int


class PostFailed(DeliveryError):
    """A channel gave up; the message is already redacted."""

    def __init__(self, message: str, attempts: int, http_status: int | None) -> None:
        super().__init__(message[:_DETAIL_MAX])
        self.attempts = attempts
        self.http_status = http_status


def post(
    http: httpx.Client,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    accept: Callable[[int], bool],
    sleep: Callable[[float], None],
    max_attempts: int,
    secrets: Iterable[str | None],
) -> PostOutcome:
    """POST with bounded retries; returns on an accepted status, raises DeliveryError otherwise."""
    secret_list = list(secrets)
    problem = "not attempted"
    last_status: int | None = None
    for attempt in range(1, max_attempts + 1):
        wait = min(MAX_WAIT, 2.0 * 2 ** (attempt - 1))
        try:
            response = http.post(url, content=content, headers=dict(headers), timeout=TIMEOUT)
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if accept(response.status_code):
                return PostOutcome(attempt, response.status_code)
            problem = _error_text(response, secret_list)
            last_status = response.status_code
            if response.status_code not in _RETRY_STATUSES:
                raise PostFailed(
                    redact(f"{problem} (not retried)", secret_list), attempt, last_status
                )
            hinted = _retry_after(response)
            if hinted is not None:
                wait = min(MAX_WAIT, hinted)
        if attempt < max_attempts:
            sleep(wait)
    raise PostFailed(
        redact(f"{problem} (gave up after {max_attempts} attempts)", secret_list),
        max_attempts,
        last_status,
    )
