"""Exchange error bodies → the auditor's errors (docs/exchange-protocol.md, "Errors").

An error body is `{"error": {"code", "message", "details": [{"message": "ErrId|Type|text"}],
"innererror": {...}}}` when it is JSON at all; an RBAC refusal may instead be empty or a run of
NUL bytes. Nothing here decodes a body the server mislabelled: bytes are cleaned, never
decompressed, and NUL characters never reach a message.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "REQUIRED_ROLES",
    "TRANSIENT_EXCEPTIONS",
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


def required_role(cmdlet: str) -> str:
    return REQUIRED_ROLES.get(cmdlet.lower(), "an Exchange role that allows it")


def is_rbac_refusal(status: int, text: str) -> bool:
    """A 401/403 that means "this identity may not run this cmdlet"."""
    return status in (401, 403) and _RBAC in text.lower()


def challenge_error(challenge: str) -> str:
    for part in challenge.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower().endswith("error"):
            return value.strip('"')
    return "claims"


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
            code = error.get("code")
            return f"{code}: {message[:400]}" if code else message[:400]
    return text.strip()[:300]
