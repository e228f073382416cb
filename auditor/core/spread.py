"""PURE: how a tenant's mailbox names spread over their first characters.

A sharded read (`exchange.shards`) splits each listing by the first character of `Name`; the
spread the last complete run counted is what balances its groups (docs/exchange-protocol.md,
"Sharded reads"). It is a count per character, never an identity, so it may be kept with the
commit and logged.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable, Mapping

from auditor.core.model import Mailbox

__all__ = ["OTHER", "PREFIXES", "name_spread", "read_spread"]

# The first characters a shard prefix names (`exchange.shards` groups exactly these): a name
# starting with anything else is counted under OTHER, the complement shard's share.
PREFIXES = string.ascii_lowercase + string.digits
_NAMED = frozenset(PREFIXES)
OTHER = ""


def name_spread(mailboxes: Iterable[Mailbox]) -> dict[str, int]:
    """Mailboxes per lower-cased first character of their name (`OTHER` for any other start:
    another script, a symbol, no name at all)."""
    firsts = Counter(mailbox.name[:1] if mailbox.name else "" for mailbox in mailboxes)
    spread: dict[str, int] = {}
    for first, count in firsts.items():  # a few dozen distinct characters, not a million
        key = first.lower()
        key = key if key in _NAMED else OTHER
        spread[key] = spread.get(key, 0) + count
    return dict(sorted(spread.items()))


def read_spread(value: object) -> dict[str, int]:
    """A stored spread back, or {} for anything that is not one: a spread only balances the
    shards, so an unreadable one reads as none (the typical spread) rather than failing a run."""
    if not isinstance(value, Mapping):
        return {}
    spread: dict[str, int] = {}
    for key, count in value.items():
        if not isinstance(key, str) or type(count) is not int or count < 0:
            return {}
        key = key if key in _NAMED else OTHER
        spread[key] = spread.get(key, 0) + count
    return spread
