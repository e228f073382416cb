"""Exchange error bodies → the auditor's errors (docs/exchange-protocol.md, "Errors").

An error body is `{"error": {"code", "message", "details": [{"message": "ErrId|Type|text"}],
"innererror": {...}}}` when it is JSON at all; an RBAC refusal may instead be empty or a run of
NUL bytes. Nothing here decodes a body the server mislabelled: bytes are cleaned, never
decompressed, and NUL characters never reach a message.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

__all__ = [
    "REQUIRED_ROLES",
    "TRANSIENT_EXCEPTIONS",
    "body_text",
    "challenge_error",
    "detail",
    "is_rbac_refusal",
    "required_role",
]

# The least-privilege Exchange role each cmdlet needs (docs/exchange-protocol.md, "Roles").
REQUIRED_ROLES = {
    "get-transportconfig": "View-Only Configuration",
    "get-casmailbox": "View-Only Recipients",
    "get-mailbox": "View-Only Recipients",
    "set-casmailbox": "Mail Recipients",
    "set-transportconfig": "Organization Transport Settings",
}
TRANSIENT_EXCEPTIONS = (
    "DCOverloadedException",
    "SuitabilityDirectoryException",
    "ServerInMMException",
    "ADServerSettingsChangedException",
    "StorageTransientException",
)
_RBAC = "is not allowed to call"
_ROLE_DEFINITION = "present in the role definition"
_MAX_ERROR_BODY = 1 << 20  # an error body is read for its message only


def required_role(cmdlet: str) -> str:
    return REQUIRED_ROLES.get(cmdlet.lower(), "an Exchange role that allows it")


def body_text(raw: bytes, encoding: str = "") -> str:
    """An error body as text that is safe to show: never raises, never holds NUL or control
    characters.

    `raw` is the body as received. It is gunzipped only if it really is gzip (the magic bytes):
    an RBAC 403 comes as a run of NUL bytes labelled `Content-Encoding: gzip`."""
    data = raw[:_MAX_ERROR_BODY]
    if "gzip" in encoding.lower() and data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)[:_MAX_ERROR_BODY]
        except (OSError, EOFError, zlib.error):
            data = b""
    text = data.decode("utf-8", errors="replace").replace("\ufffd", "")
    if any(ord(c) < 32 and c not in "\t\r\n" for c in text):
        text = "".join(c for c in text if ord(c) >= 32 or c in "\t\r\n")
    return text.strip()


def is_rbac_refusal(status: int, text: str) -> bool:
    """An answer that means "this identity may not run this cmdlet (or these parameters)".

    A 403 without a readable body (empty, or the NUL-byte run) is one too; a 401 without one is
    not: that is the token's problem (refreshed once)."""
    lowered = text.lower()
    if 400 <= status < 500 and _ROLE_DEFINITION in lowered:
        return True  # parameters outside the role: its status is not documented
    if status not in (401, 403):
        return False
    return _RBAC in lowered or (status == 403 and not text)


def challenge_error(challenge: str) -> str:
    for part in challenge.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower().endswith("error"):
            return value.strip('"')
    return "claims"


def _strip_prefix(message: str) -> str:
    """`ErrId|Type|text` -> `text`; split on the first two `|` only (the text may hold `|`)."""
    parts = message.split("|", 2)
    if len(parts) == 3 and " " not in parts[0].strip() and " " not in parts[1].strip():
        return parts[2].strip() or message
    return message


def detail(text: str) -> str:
    """The cmdlet's own message from an error body: details[0], then innererror."""
    try:
        document = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "(empty body)"
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return text.strip()[:300]
    candidates: list[Any] = []
    details = error.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        candidates.append(details[0].get("message"))
    inner = error.get("innererror")
    if isinstance(inner, dict):
        internal = inner.get("internalexception")
        if isinstance(internal, dict):
            candidates.append(internal.get("message"))
        candidates.append(inner.get("message"))
    candidates.append(error.get("message"))
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            message = candidate.strip()
            if message.startswith("{"):  # sometimes a JSON string itself
                try:
                    nested = json.loads(message)
                    message = str(nested.get("Message") or nested.get("message") or message)
                except (ValueError, AttributeError):
                    pass
            message = _strip_prefix(message)
            code = error.get("code")
            return f"{code}: {message[:400]}" if code else message[:400]
    return text.strip()[:300]
