"""Settings: environment variables (= Function app settings), each documented once, here.

`SETTINGS` is the single table of every setting the code reads; the README's settings table and
the Bicep app settings are checked against it by the tests. `Settings.from_env` validates and
never touches the network: a bad value is a ConfigError naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from auditor.core.errors import ConfigError

__all__ = ["Setting", "SETTINGS", "Settings"]


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str | None
    description: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("EXO_TENANT", None, "Tenant to audit: tenant GUID or `*.onmicrosoft.com` domain."),
    Setting(
        "EXO_BASE_URL",
        "https://outlook.office365.com",
        "Exchange admin endpoint; `https://outlook.office365.us` (GCC High), "
        "`https://outlook-dod.office365.us` (DoD), `https://outlook.office365.cn` (21Vianet), "
        "or a local emulator.",
    ),
    Setting(
        "EXO_ACCESS_TOKEN",
        None,
        "A pre-acquired Exchange token (like `Connect-ExchangeOnline -AccessToken`); for "
        "emulators and break-glass. Unset in production: the managed identity is used.",
        secret=True,
    ),
    Setting(
        "EXO_CLIENT_ID",
        None,
        "App (client) id of an app registration in `EXO_TENANT`, to audit a tenant other than "
        "the Function's own (msal client credentials). Unset: the managed identity is used.",
    ),
    Setting(
        "EXO_CERTIFICATE_PATH",
        None,
        "That app's certificate: a PEM file (private key + certificate) or a `.pfx`/`.p12`. "
        "Preferred over a secret.",
    ),
    Setting(
        "EXO_CERTIFICATE_PASSWORD",
        None,
        "Password of the private key in `EXO_CERTIFICATE_PATH`, if it has one.",
        secret=True,
    ),
    Setting(
        "EXO_CLIENT_SECRET",
        None,
        "That app's client secret, used only when no certificate is configured.",
        secret=True,
    ),
    Setting(
        "EXO_AUTHORITY_HOST",
        "https://login.microsoftonline.com",
        "Entra ID sign-in host for the app registration; `https://login.microsoftonline.us` "
        "(US Government), `https://login.partner.microsoftonline.cn` (21Vianet).",
    ),
    Setting(
        "EXO_SHARDS",
        "1",
        "Read each mailbox listing as this many `-Filter` chains on `Name` (1-16), merged "
        "without duplicates; for the largest tenants. 1: one chain.",
    ),
    Setting(
        "EXO_MAX_PARALLEL",
        "3",
        "At most this many shard chains of one listing at a time (1-16).",
    ),
    Setting(
        "AZURE_CLIENT_ID",
        None,
        "Client id of a user-assigned managed identity to call Exchange with. Unset: the "
        "system-assigned identity (or, on a workstation, `DefaultAzureCredential`).",
    ),
    Setting(
        "AUDITOR_STORAGE",
        None,
        "Table Storage: a connection string, or an account's table endpoint URL "
        "(`https://<account>.table.core.windows.net`) used with the managed identity.",
        secret=True,
    ),
    Setting(
        "AUDITOR_TABLE_PREFIX",
        "smtpauth",
        "Prefix of the history tables (`<prefix>runs`, `state`, `history`, `evidence`, "
        "`alerts`); letters and digits. One prefix per audited tenant in a shared account.",
    ),
    Setting(
        "AUDITOR_ALLOWLIST",
        None,
        "Path of the allowlist file (`.txt` one identity per line, or `.csv` with "
        "Identity, Owner, Reason, Ticket, Expires).",
    ),
    Setting(
        "AUDITOR_EXPIRING_DAYS",
        "14",
        "Warn this many days before an allowlist exception expires.",
    ),
    Setting(
        "AUDIT_LEASE_SECONDS",
        "60",
        "Seconds a run's lease lasts without renewal (renewed every third of it while the run "
        "works); a run not renewed in time is stale and the next run takes over and repairs it.",
    ),
    Setting(
        "AUDIT_MAX_REMOVED_PERCENT",
        "20",
        "A complete read in which more than this percentage of the known mailboxes vanished is "
        "recorded `suspect`: it alerts and removes nothing until a following run confirms.",
    ),
    Setting(
        "AUDIT_SCHEDULE",
        "0 0 2 * * *",
        "NCRONTAB schedule (six fields, UTC) of the nightly audit.",
    ),
    Setting(
        "ALERT_TEAMS_WEBHOOK_URL",
        None,
        "Teams Workflows webhook URL (a secret: it carries a signature).",
        secret=True,
    ),
    Setting("ALERT_EMAIL_FROM", None, "Sender mailbox of alert emails (Graph sendMail)."),
    Setting("ALERT_EMAIL_TO", None, "Comma-separated recipients of alert emails."),
    Setting("GRAPH_BASE_URL", "https://graph.microsoft.com", "Microsoft Graph endpoint."),
    Setting(
        "GRAPH_ACCESS_TOKEN",
        None,
        "A pre-acquired Graph token, for local receivers and break-glass.",
        secret=True,
    ),
    Setting(
        "USAGE_EVIDENCE",
        "false",
        "`true`: read SMTP AUTH sign-ins (Graph `auditLogs/signIns`, needs AuditLog.Read.All and "
        "Entra ID P1/P2) and who changed the setting (`Search-UnifiedAuditLog`, needs View-Only "
        "Audit Logs); judge stale exceptions and unapproved use.",
    ),
    Setting(
        "USAGE_LOOKBACK_DAYS",
        "30",
        "Days of sign-ins judged (1-30; Entra keeps sign-ins 30 days): an exception unused for "
        "this long is stale.",
    ),
    Setting(
        "ALERT_DIGEST",
        "false",
        "`true`: send a short daily summary even when nothing changed, so silence can be "
        "told apart from a dead auditor.",
    ),
    Setting(
        "ALERT_REPORT_BASE_URL",
        None,
        "Base URL of the run reports; alerts link to `<base>/<run id>`. Unset: no report button.",
    ),
    Setting(
        "APPROVER_TENANT_ID",
        None,
        "Entra tenant GUID whose tokens may approve remediations (issuer and `tid` are checked).",
    ),
    Setting(
        "APPROVER_AUDIENCE",
        None,
        "Comma-separated accepted token audiences: the auditor API's Application ID URI "
        "and/or client id.",
    ),
    Setting(
        "APPROVER_ROLE",
        "Remediation.Approve",
        "App role (in the token's `roles`) an approver must hold.",
    ),
    Setting(
        "APPROVER_JWKS_URL",
        None,
        "Signing keys of approver tokens. Unset: "
        "`https://login.microsoftonline.com/<APPROVER_TENANT_ID>/discovery/v2.0/keys`.",
    ),
    Setting(
        "EASY_AUTH_ENABLED",
        "false",
        "`true` only when App Service Authentication is on for the app: then its "
        "`X-MS-CLIENT-PRINCIPAL` header is trusted as an approver identity.",
    ),
    Setting(
        "AUDITOR_FORM_SECRET",
        None,
        "Secret (32+ characters) for the anti-forgery token of the confirmation page.",
        secret=True,
    ),
    Setting(
        "APPROVAL_SIGNING_KEY",
        None,
        "Secret (32+ bytes) that signs each approval record (HMAC-SHA256); the executor runs "
        "nothing whose approval does not verify. Required to approve and execute remediations; "
        "from Key Vault.",
        secret=True,
    ),
    Setting(
        "REMEDIATION_PUBLIC_URL",
        None,
        "Public base URL of the Function App (`https://<app>.azurewebsites.net`), for "
        "approval and status links. Unset: taken from the request.",
    ),
    Setting(
        "REMEDIATION_FORCE_TRUE",
        "false",
        "`true`: revoke explicit enables by setting `true` even when the organisation "
        "blocks (default: `null`, back to organisation control).",
    ),
    Setting("REMEDIATION_EXPIRY_DAYS", "7", "Days a remediation proposal can be approved."),
    Setting(
        "REMEDIATION_INLINE_LIMIT",
        "10",
        "Approved plans with at most this many targets run inline in the HTTP call; larger "
        "ones go to the `remediations` queue (the call answers 202).",
    ),
    Setting(
        "REMEDIATION_VERIFY_SECONDS",
        "120",
        "How long a change is read back (with backoff) until Exchange shows it, before the "
        'target is "verify failed" (reads can lag writes).',
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


# The tenant's native domain: `*.onmicrosoft.com`, or its sovereign-cloud forms (GCC High/DoD
# `*.onmicrosoft.us`, 21Vianet `*.partner.onmschina.cn`; see EXO_BASE_URL).
_NATIVE_DOMAIN = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.(?:onmicrosoft\.com|onmicrosoft\.us|partner\.onmschina\.cn)",
    re.IGNORECASE,
)


def _tenant_name(value: str) -> bool:
    """A tenant GUID or native domain: what `/adminapi/beta/{tenant}/` is documented to take."""
    return bool(_GUID.fullmatch(value) or _NATIVE_DOMAIN.fullmatch(value))


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return _BY_NAME[name].default
    if value.strip().startswith("@Microsoft.KeyVault("):
        # The platform leaves the reference text in place when it cannot resolve it: using it
        # as a secret (a webhook URL, the form key) would be silently wrong.
        raise ConfigError(
            name,
            "is an unresolved Key Vault reference: give the app's identity 'Key Vault Secrets "
            "User' on the vault and check that the secret exists",
        )
    return value.strip()


def _shown(name: str, value: str) -> str:
    """A setting's value for an error message: never a secret's."""
    if _BY_NAME[name].secret:
        return f"a value of {len(value)} characters (not shown: the setting is a secret)"
    return repr(value)


def _url(env: Mapping[str, str], name: str) -> str | None:
    value = _get(env, name)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(name, f"must be an http(s) URL, got {_shown(name, value)}")
    return value.rstrip("/")


def _bool(env: Mapping[str, str], name: str) -> bool:
    value = (_get(env, name) or "false").lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ConfigError(name, f"must be true or false, got {value!r}")


def _int(env: Mapping[str, str], name: str, minimum: int, maximum: int) -> int:
    value = _get(env, name) or "0"
    try:
        number = int(value)
    except ValueError as exc:
        raise ConfigError(name, f"must be a whole number, got {value!r}") from exc
    if not minimum <= number <= maximum:
        raise ConfigError(name, f"must be between {minimum} and {maximum}, got {number}")
    return number


def _remediation_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings of approved remediation (issue 6): approver identity, form secret, planning."""
    tenant = _get(env, "APPROVER_TENANT_ID")
    if tenant is not None and not _GUID.fullmatch(tenant):
        raise ConfigError("APPROVER_TENANT_ID", f"must be a tenant GUID, got {tenant!r}")
    jwks = _url(env, "APPROVER_JWKS_URL")
    if jwks is None and tenant is not None:
        jwks = f"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"
    secret = _get(env, "AUDITOR_FORM_SECRET")
    if secret is not None and len(secret) < 32:
        raise ConfigError("AUDITOR_FORM_SECRET", "must be at least 32 characters")
    signing = _get(env, "APPROVAL_SIGNING_KEY")
    if signing is not None and len(signing.encode("utf-8")) < 32:
        raise ConfigError("APPROVAL_SIGNING_KEY", "must be at least 32 bytes")
    audiences = tuple(
        a.strip() for a in (_get(env, "APPROVER_AUDIENCE") or "").split(",") if a.strip()
    )
    return {
        "approver_tenant_id": tenant.lower() if tenant else None,
        "approver_audiences": audiences,
        "approver_role": _get(env, "APPROVER_ROLE") or "",
        "approver_jwks_url": jwks,
        "easy_auth_enabled": _bool(env, "EASY_AUTH_ENABLED"),
        "form_secret": secret,
        "approval_signing_key": signing.encode("utf-8") if signing else None,
        "remediation_public_url": _url(env, "REMEDIATION_PUBLIC_URL"),
        "remediation_force_true": _bool(env, "REMEDIATION_FORCE_TRUE"),
        "remediation_expiry_days": _int(env, "REMEDIATION_EXPIRY_DAYS", 1, 90),
        "remediation_inline_limit": _int(env, "REMEDIATION_INLINE_LIMIT", 0, 1000),
        "remediation_verify_seconds": _int(env, "REMEDIATION_VERIFY_SECONDS", 0, 3600),
    }


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = _get(env, name)
    return Path(value) if value else None


def _table_prefix(env: Mapping[str, str]) -> str:
    value = _get(env, "AUDITOR_TABLE_PREFIX") or ""
    if not (value.isascii() and value.isalnum() and value[:1].isalpha() and len(value) <= 50):
        raise ConfigError(
            "AUDITOR_TABLE_PREFIX",
            f"must be 1-50 letters and digits, starting with a letter, got {value!r}",
        )
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings. Secrets are kept out of `repr` so they never reach a log line."""

    exo_tenant: str | None = None
    exo_base_url: str = "https://outlook.office365.com"
    exo_access_token: str | None = field(default=None, repr=False)
    exo_client_id: str | None = None
    exo_certificate_path: Path | None = None
    exo_certificate_password: str | None = field(default=None, repr=False)
    exo_client_secret: str | None = field(default=None, repr=False)
    exo_authority_host: str = "https://login.microsoftonline.com"
    exo_shards: int = 1
    exo_max_parallel: int = 3
    azure_client_id: str | None = None
    storage: str | None = field(default=None, repr=False)
    table_prefix: str = "smtpauth"
    allowlist: Path | None = None
    expiring_days: int = 14
    lease_seconds: int = 60
    max_removed_percent: int = 20
    audit_schedule: str = "0 0 2 * * *"
    teams_webhook_url: str | None = field(default=None, repr=False)
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    graph_base_url: str = "https://graph.microsoft.com"
    graph_access_token: str | None = field(default=None, repr=False)
    alert_digest: bool = False
    alert_report_base_url: str | None = None
    usage_evidence: bool = False
    usage_lookback_days: int = 30

    approver_tenant_id: str | None = None
    approver_audiences: tuple[str, ...] = ()
    approver_role: str = "Remediation.Approve"
    approver_jwks_url: str | None = None
    easy_auth_enabled: bool = False
    form_secret: str | None = field(default=None, repr=False)
    approval_signing_key: bytes | None = field(default=None, repr=False)
    remediation_public_url: str | None = None
    remediation_force_true: bool = False
    remediation_expiry_days: int = 7
    remediation_inline_limit: int = 10
    remediation_verify_seconds: int = 120

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        tenant = _get(env, "EXO_TENANT")
        if tenant is not None and not _tenant_name(tenant):
            raise ConfigError(
                "EXO_TENANT",
                f"must be a tenant GUID or domain (`*.onmicrosoft.com`), got {tenant!r}",
            )
        allowlist = _get(env, "AUDITOR_ALLOWLIST")
        recipients = tuple(
            a.strip() for a in (_get(env, "ALERT_EMAIL_TO") or "").split(",") if a.strip()
        )
        for address in recipients:
            if "@" not in address:
                raise ConfigError("ALERT_EMAIL_TO", f"not an email address: {address!r}")
        email_from = _get(env, "ALERT_EMAIL_FROM")
        if email_from is not None and "@" not in email_from:
            raise ConfigError("ALERT_EMAIL_FROM", f"not an email address: {email_from!r}")
        schedule = _get(env, "AUDIT_SCHEDULE") or ""
        if len(schedule.split()) != 6:
            raise ConfigError(
                "AUDIT_SCHEDULE",
                f"must be an NCRONTAB expression with six fields, got {schedule!r}",
            )
        return cls(
            **_remediation_settings(env),
            exo_tenant=tenant,
            exo_base_url=_url(env, "EXO_BASE_URL") or "",
            exo_access_token=_get(env, "EXO_ACCESS_TOKEN"),
            exo_client_id=_get(env, "EXO_CLIENT_ID"),
            exo_certificate_path=_path(env, "EXO_CERTIFICATE_PATH"),
            exo_certificate_password=_get(env, "EXO_CERTIFICATE_PASSWORD"),
            exo_client_secret=_get(env, "EXO_CLIENT_SECRET"),
            exo_authority_host=_url(env, "EXO_AUTHORITY_HOST") or "",
            exo_shards=_int(env, "EXO_SHARDS", 1, 16),
            exo_max_parallel=_int(env, "EXO_MAX_PARALLEL", 1, 16),
            azure_client_id=_get(env, "AZURE_CLIENT_ID"),
            storage=_get(env, "AUDITOR_STORAGE"),
            table_prefix=_table_prefix(env),
            allowlist=Path(allowlist) if allowlist else None,
            expiring_days=_int(env, "AUDITOR_EXPIRING_DAYS", 0, 365),
            lease_seconds=_int(env, "AUDIT_LEASE_SECONDS", 5, 3600),
            max_removed_percent=_int(env, "AUDIT_MAX_REMOVED_PERCENT", 0, 100),
            audit_schedule=schedule,
            teams_webhook_url=_url(env, "ALERT_TEAMS_WEBHOOK_URL"),
            email_from=email_from,
            email_to=recipients,
            graph_base_url=_url(env, "GRAPH_BASE_URL") or "",
            graph_access_token=_get(env, "GRAPH_ACCESS_TOKEN"),
            alert_digest=_bool(env, "ALERT_DIGEST"),
            alert_report_base_url=_url(env, "ALERT_REPORT_BASE_URL"),
            usage_evidence=_bool(env, "USAGE_EVIDENCE"),
            usage_lookback_days=_int(env, "USAGE_LOOKBACK_DAYS", 1, 30),
        )
