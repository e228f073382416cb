"""Where a client's requests go: the endpoint, and the one regional redirect it may follow.

Some tenants are redirected from the front door (`outlook.office365.com`) to a tenant-specific
host (`<label>.outlook.office365.com`; docs/exchange-protocol.md, "Regional hosts"). A 3xx
from the front door to such a host (same scheme, same port, one more label under the front
door's own name) is followed once; from then on the client's endpoint and the nextLinks it
accepts are on that host. Anything else — a second redirect, another scheme, port or domain — is
refused, and the read is incomplete.
"""

from __future__ import annotations

import threading
from urllib.parse import urljoin, urlsplit, urlunsplit

from auditor.core.errors import CollectionFailed

__all__ = ["Route", "origin"]

Origin = tuple[str, str, int | None]


def origin(url: str) -> Origin:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class Route:
    """The endpoint and accepted origin of one client; thread-safe (reads run in parallel)."""

    def __init__(self, endpoint: str) -> None:
        self._lock = threading.Lock()
        self._front = origin(endpoint)
        self._endpoint = endpoint
        self._origin = self._front
        self.redirected_to: str | None = None  # the regional host, once followed

    @property
    def endpoint(self) -> str:
        with self._lock:
            return self._endpoint

    @property
    def origin(self) -> Origin:
        with self._lock:
            return self._origin

    def follow(self, url: str, location: str | None, where: str) -> str:
        """The URL to re-send a redirected request to, or `CollectionFailed`."""
        if not location:
            raise CollectionFailed(f"{where}: a redirect without a Location; refused")
        target = urljoin(url, location)
        scheme, host, port = origin(target)
        with self._lock:
            came_from = origin(url)
            if came_from != self._front:
                raise CollectionFailed(
                    f"{where}: a second redirect (from {came_from[1]} to {host}); refused, so "
                    "the read is incomplete"
                )
            front_scheme, front_host, front_port = self._front
            label, _, parent = host.partition(".")
            if (
                scheme != front_scheme
                or port != front_port
                or parent != front_host
                or not label
                or not label.replace("-", "").isalnum()
            ):
                raise CollectionFailed(
                    f"{where}: redirected to {urlsplit(target).netloc or target!r}, which is not "
                    f"a tenant host under {front_host}; refused, so the read is incomplete"
                )
            if self._origin not in (self._front, (scheme, host, port)):
                raise CollectionFailed(
                    f"{where}: redirected to {host}, but this client already follows "
                    f"{self._origin[1]}; refused"
                )
            if self.redirected_to is None:
                parts = urlsplit(self._endpoint)
                netloc = host if urlsplit(target).port is None else f"{host}:{port}"
                self._endpoint = urlunsplit(
                    (parts.scheme, netloc, parts.path, parts.query, parts.fragment)
                )
                self._origin = (scheme, host, port)
                self.redirected_to = host
        return target
