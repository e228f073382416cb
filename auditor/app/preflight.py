"""Configuration checks a command makes before it reads the tenant, so that a wrong setting is
a configuration error (exit 2, naming the setting) rather than an incomplete audit (exit 3).

- `EXO_TENANT` must look like a tenant: a GUID or a domain name (`contoso.onmicrosoft.com`).
- `EXO_BASE_URL`'s host must resolve and accept a connection (DNS failure, connection refused
  or a timeout is a configuration error; what the service then answers is the audit's business).
"""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

import httpx

from auditor.app import wiring
from auditor.app.settings import Settings
from auditor.core.errors import ConfigError

__all__ = ["check_exchange", "check_tenant", "check_reachable"]

_GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_DOMAIN = re.compile(r"(?=.{4,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")


def check_tenant(tenant: str | None) -> str:
    if not tenant:
        raise ConfigError("EXO_TENANT", "is required to read the tenant")
    if not (_GUID.fullmatch(tenant) or _DOMAIN.fullmatch(tenant)):
        raise ConfigError(
            "EXO_TENANT",
            f"must be a tenant GUID or a domain such as contoso.onmicrosoft.com, got {tenant!r}",
        )
    return tenant


def check_reachable(url: str, *, setting: str = "EXO_BASE_URL", timeout: float = 10.0) -> None:
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(setting, f"must be an http(s) URL, got {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError(setting, f"{host} does not resolve ({exc.strerror or exc})") from exc
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(setting, f"cannot connect to {host}:{port} ({reason})") from exc


def check_exchange(settings: Settings) -> str:
    """The tenant, once it looks right, its credential settings are usable (as `wiring` builds
    the client) and its endpoint answers; else ConfigError naming the setting."""
    tenant = check_tenant(settings.exo_tenant)
    with httpx.Client() as http:
        wiring.exchange_client(settings, http)  # credential settings fail here, first
    check_reachable(settings.exo_base_url or "https://outlook.office365.com")
    return tenant
