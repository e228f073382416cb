"""The one rule for which azure-identity credential the app uses (Exchange tokens, storage)."""

from __future__ import annotations

from typing import Any

__all__ = ["azure_credential"]


def azure_credential(managed_identity_client_id: str | None) -> Any:
    """A user-assigned managed identity when its client id (`AZURE_CLIENT_ID`) is given, else
    `DefaultAzureCredential` (the system-assigned identity in Azure, Azure CLI on a
    workstation). Imported lazily: building it does no I/O, its first token does."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if managed_identity_client_id:
        return ManagedIdentityCredential(client_id=managed_identity_client_id)
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)
