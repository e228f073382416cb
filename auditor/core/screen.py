"""PURE: values read from Exchange, screened before anything is judged or stored.

One bad record (a lone surrogate, a value far longer than any identity) must not fail every
later run: it becomes one `unknown` mailbox named in the run's errors (record, field, why),
and the rest of the run completes. Bad values are made safe deterministically (the same bad
record gives the same key every run, so it is never "removed" and "added" again): lone
surrogates are escaped (`\\udc80`), and a value over `MAX_FIELD` characters is cut there.
"""

from __future__ import annotations

from dataclasses import replace
from operator import attrgetter

from msgspec.structs import replace as struct_replace  # Mailbox is a msgspec Struct

from auditor.core.model import CollectionError, Mailbox, Snapshot

__all__ = ["MAX_FIELD", "RECORD_SOURCE", "clean", "screen", "read_failures", "read_whole"]

MAX_FIELD = 1024  # characters: an address is at most 320, a UPN 1,024 (Entra ID)
RECORD_SOURCE = "record:"  # CollectionError.source prefix of a screened record (not a failed read)
_FIELDS = (
    "guid",
    "external_directory_object_id",
    "primary_smtp_address",
    "user_principal_name",
    "alias",
    "name",
    "identity",
    "sam_account_name",
    "recipient_type_details",
    "key",
)
_MAX_ERRORS = 20  # named one by one; the rest are counted


def _why(value: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    if len(value) > MAX_FIELD:
        return f"is {len(value)} characters, over the {MAX_FIELD} an identity can have"
    return None


def _safe(value: str) -> str:
    text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:MAX_FIELD]


def _label(mailbox: Mailbox) -> str:
    for value in (mailbox.guid, mailbox.external_directory_object_id, mailbox.key):
        if value and _why(value) is None:
            return value
    return _safe(mailbox.key)[:100]


_text_fields = attrgetter(*_FIELDS)


def clean(mailbox: Mailbox) -> bool:
    """True when no value of the record needs screening, checked in one pass: the longest
    value against `MAX_FIELD` and one UTF-8 encoding of all of them joined (Python never
    merges two lone surrogates into a pair, so the join hides none)."""
    values = [v for v in _text_fields(mailbox) if isinstance(v, str)]
    values.extend(mailbox.email_addresses)
    values.extend(mailbox.match_keys)
    if max(map(len, values), default=0) > MAX_FIELD:
        return False
    try:
        "".join(values).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def screen(snapshot: Snapshot) -> Snapshot:
    """The snapshot with every bad mailbox record made safe and `unknown`, and named. Only the
    mailboxes the join found unclean when it built them are looked at, when it checked these
    very mailboxes (`Snapshot.screened`); otherwise every one."""
    mailboxes = snapshot.mailboxes
    if mailboxes is None:
        return snapshot
    checked = snapshot.screened
    if checked is not None and checked.mailboxes is mailboxes:
        candidates: range | tuple[int, ...] = checked.unclean
    else:
        candidates = range(len(mailboxes))
    out: list[Mailbox] | None = None
    errors: list[CollectionError] = []
    bad = 0
    for index in candidates:
        mailbox = mailboxes[index]
        if clean(mailbox):  # the common case; a record that is not is examined field by field
            continue
        problems: dict[str, object] = {}
        reasons: list[str] = []
        for name in _FIELDS:
            value = getattr(mailbox, name)
            if isinstance(value, str) and (why := _why(value)) is not None:
                problems[name] = _safe(value)
                reasons.append(f"{name} {why}")
        addresses = mailbox.email_addresses
        if any(_why(a) for a in addresses):
            problems["email_addresses"] = tuple(_safe(a) for a in addresses)
            reasons.append("email_addresses has an invalid or over-long value")
        if any(_why(k) for k in mailbox.match_keys):
            problems["match_keys"] = tuple(_safe(k) for k in mailbox.match_keys)
        if not problems:
            continue
        if out is None:
            out = list(mailboxes)
        out[index] = struct_replace(mailbox, setting=None, setting_present=False, **problems)
        bad += 1
        if len(errors) < _MAX_ERRORS:
            errors.append(
                CollectionError(
                    RECORD_SOURCE + _label(mailbox),
                    f"mailbox record {_label(mailbox)}: {'; '.join(reasons)}; judged unknown "
                    "and stored made safe",
                )
            )
    if out is None:
        return snapshot
    if bad > len(errors):
        errors.append(
            CollectionError(
                RECORD_SOURCE + "more", f"and {bad - len(errors)} more bad mailbox records"
            )
        )
    return replace(
        snapshot, mailboxes=tuple(out), errors=(*snapshot.errors, *errors), screened=None
    )


def read_failures(errors: tuple[CollectionError, ...]) -> tuple[CollectionError, ...]:
    """The errors that mean a read failed (a screened record is not one: the run is whole)."""
    return tuple(e for e in errors if not e.source.startswith(RECORD_SOURCE))


def read_whole(snapshot: Snapshot) -> bool:
    """Every read of the snapshot ended whole: the organisation setting and both listings were
    read and no read failed. Only such a run can be recorded complete (storage may still find
    it implausible, docs/architecture.md "Partial reads keep verdicts; plausibility")."""
    return (
        not read_failures(snapshot.errors)
        and snapshot.org_disabled is not None
        and snapshot.mailboxes is not None
    )
