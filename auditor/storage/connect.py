"""`AUDITOR_STORAGE` as a `TableServiceClient`: the one connection rule for every store.

A connection string (Azurite, break-glass) or an account's table endpoint URL used with a token
credential (the Function's managed identity). The caller passes the credential for URLs; the
wiring builds it with `auditor.identity.azure.azure_credential`, the one identity rule.
Nothing connects until the first call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.data.tables import TableServiceClient

from auditor.core.errors import ConfigError

__all__ = ["connect", "SETTING"]

SETTING = "AUDITOR_STORAGE"


def connect(value: str | None, *, credential: Callable[[], Any] | Any = None) -> TableServiceClient:
    """A client for `value`. `credential` (or a zero-argument factory of one) serves URLs."""
    text = (value or "").strip()
    if not text:
        raise ConfigError(SETTING, "is required (a connection string or a table endpoint URL)")
    if text.lower().startswith(("http://", "https://")):
        if credential is None:
            raise ConfigError(SETTING, "a table endpoint URL needs a credential (managed identity)")
        token_credential = credential() if callable(credential) else credential
        return TableServiceClient(endpoint=text.rstrip("/"), credential=token_credential)
    if ("=" in text and ";" in text) or text.lower().startswith("usedevelopmentstorage"):
        try:
            return TableServiceClient.from_connection_string(text)
        except ValueError as exc:
            # The SDK's message may quote the value: a secret, never echoed.
            raise ConfigError(SETTING, "is not a valid connection string (not shown)") from exc
    raise ConfigError(
        SETTING,
        "must be a connection string or a table endpoint URL "
        "(https://<account>.table.core.windows.net)",
    )
