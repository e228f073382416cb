"""PURE: the small interfaces adapters are given, so that no adapter imports another."""

from __future__ import annotations

from typing import Protocol

__all__ = ["TokenProvider"]


class TokenProvider(Protocol):
    """Something that hands out a bearer token (identity providers implement it)."""

    def get_token(self, *, force_refresh: bool = False) -> str:
        """A current token; `force_refresh` asks for a new one (after a 401)."""
        ...
