"""The auditor's typed errors. Adapters map library exceptions to these at their boundary."""

from __future__ import annotations

__all__ = [
    "Refused",
    "AuditorError",
    "ConfigError",
    "InputError",
    "CollectionFailed",
    "PermissionDenied",
    "StoreError",
    "DeliveryError",
]


class AuditorError(Exception):
    """Base of every error the auditor raises on purpose."""


class InputError(AuditorError):
    """Bad input (allowlist, snapshot, request body): the message names what and where."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.detail = message
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(InputError):
    """A setting is missing or malformed; `where` is the setting's name."""


class CollectionFailed(AuditorError):
    """A read from Exchange failed or was cut short; its evidence is unknown."""


class PermissionDenied(CollectionFailed):
    """Exchange refused the call for lack of an RBAC role: retrying will not help."""


class StoreError(AuditorError):
    """Table Storage refused or failed an operation, or a limit would be exceeded."""


class DeliveryError(AuditorError):
    """An alert channel could not be reached after its retries."""


class Refused(AuditorError):
    """A proposal operation is refused; `code` is a stable word ("not_found", "already_used",
    "tampered", "expired", "rejected", "plan_changed", "bad_subset", "bad_request", ...).
    Only the web layer turns it into an HTTP status (`auditor.web.api.STATUS`)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)
