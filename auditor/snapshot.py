"""Read a snapshot file (`smtp-auth-snapshot/1`): raw Exchange records to a typed `Snapshot`.

Tolerant of what PowerShell's `ConvertTo-Json` writes (a single object where a list is
expected, `Prop@odata.type` annotation keys, extra properties, a UTF-8 BOM, property names in
any case) and loud on garbage: every error names the file and the record.

Three raw states are kept apart: `true`, `false`, `null` (inherit). A record without the
property is *unknown*, not null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import InputError
from .model import CollectionError, Mailbox, Snapshot

__all__ = ["SCHEMA", "read_snapshot", "parse_snapshot", "build_snapshot", "mailbox_from_records"]

SCHEMA = "smtp-auth-snapshot/1"
SETTING = "SmtpClientAuthenticationDisabled"

# Raw property name (lower-cased) -> slot in RawRecord.
_FIELDS = {
    "guid": "guid",
    "externaldirectoryobjectid": "edoid",
    "primarysmtpaddress": "psmtp",
    "userprincipalname": "upn",
    "alias": "alias",
    "name": "name",
    "identity": "identity",
    "samaccountname": "sam",
    "recipienttypedetails": "rtd",
    "emailaddresses": "addresses",
    "smtpclientauthenticationdisabled": "setting",
}
_TOP_LEVEL = frozenset({"schema", "tenant", "collected_at", "cas_mailboxes", "transport_config"})
_UNSET: Any = object()


class RawRecord:
    """The properties of one raw Exchange object that the auditor uses; everything else dropped.

    Built while the JSON is parsed (as `object_hook`) so that a million-mailbox file never
    exists as a million full dictionaries.
    """

    __slots__ = (*sorted(set(_FIELDS.values())), "keys")

    guid: Any
    edoid: Any
    psmtp: Any
    upn: Any
    alias: Any
    name: Any
    identity: Any
    sam: Any
    rtd: Any
    addresses: Any
    setting: Any
    keys: int

    def __init__(self, data: Mapping[str, Any]) -> None:
        for slot in self.__slots__:
            object.__setattr__(self, slot, _UNSET)
        self.keys = 0
        for key, value in data.items():
            if "@" in key:  # annotation such as Guid@odata.type: not data
                continue
            self.keys += 1
            field = _FIELDS.get(key.lower())
            if field is not None:
                object.__setattr__(self, field, value)

    def get(self, slot: str) -> Any:
        value = getattr(self, slot)
        return None if value is _UNSET else value

    def has(self, slot: str) -> bool:
        return getattr(self, slot) is not _UNSET


def _hook(data: dict[str, Any]) -> Any:
    # The top-level document and `errors` entries stay dictionaries; every other object is an
    # Exchange record and becomes a compact RawRecord.
    if _TOP_LEVEL & data.keys() or set(data) <= {"source", "message"}:
        return data
    return RawRecord(data)


def read_snapshot(path: str | Path) -> Snapshot:
    """Read and validate a snapshot file. Raises InputError naming the file and record."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(name, f"cannot read snapshot: {exc.strerror or exc}") from exc
    return parse_snapshot(raw, source=name)


def parse_snapshot(raw: bytes, *, source: str = "<snapshot>") -> Snapshot:
    if raw.startswith(b"\xff\xfe") or raw.startswith(b"\xfe\xff"):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(source, f"not valid {encoding} text (byte {exc.start})") from exc
    del raw
    try:
        document = json.loads(text, object_hook=_hook)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}", f"not JSON: {exc.msg}") from exc
    del text
    if not isinstance(document, dict):
        raise InputError(source, f"not a {SCHEMA} document (no 'schema' property)")
    return build_snapshot(document, source=source)


def build_snapshot(document: Mapping[str, Any], *, source: str = "<snapshot>") -> Snapshot:
    """Validate a parsed snapshot document whose records are RawRecords or plain dicts."""
    schema = document.get("schema")
    if schema != SCHEMA:
        raise InputError(source, f"schema is {schema!r}, expected {SCHEMA!r}")
    tenant = document.get("tenant")
    if not isinstance(tenant, str) or not tenant.strip():
        raise InputError(source, "'tenant' must be a non-empty string")
    collected_at = _parse_time(document.get("collected_at"), f"{source}: collected_at")

    org_disabled = _org_setting(document.get("transport_config"), source)
    cas = _records(document.get("cas_mailboxes"), "cas_mailboxes", source)
    directory = _records(document.get("mailboxes"), "mailboxes", source)
    errors = _errors(document.get("errors"), source)

    mailboxes: tuple[Mailbox, ...] | None = None
    if cas is not None:
        mailboxes = _join(cas, directory or [], source)
    return Snapshot(
        tenant=tenant.strip(),
        collected_at=collected_at,
        org_disabled=org_disabled,
        mailboxes=mailboxes,
        directory_collected=directory is not None,
        errors=errors,
        source=source,
    )


def _parse_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise InputError(where, "must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(where, f"not an ISO 8601 date-time: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _as_record(item: Any) -> RawRecord | None:
    if isinstance(item, RawRecord):
        return item
    if isinstance(item, Mapping):
        return RawRecord(item)
    return None


def _records(value: Any, name: str, source: str) -> list[RawRecord] | None:
    """None when not collected; a single object is a list of one (PowerShell's quirk)."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    records: list[RawRecord] = []
    for index, item in enumerate(items):
        record = _as_record(item)
        if record is None:
            raise InputError(f"{source}: {name}[{index}]", "is not a JSON object")
        records.append(record)
    return records


def _org_setting(value: Any, source: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, list):  # a one-element array from some exports
        if len(value) != 1:
            raise InputError(f"{source}: transport_config", "expected one object")
        value = value[0]
    record = _as_record(value)
    if record is None:
        raise InputError(f"{source}: transport_config", "is not a JSON object")
    if not record.has("setting"):
        return None
    setting = record.get("setting")
    if setting is None or isinstance(setting, bool):
        # The organisation value is a plain boolean; null there means it could not be judged.
        return setting
    raise InputError(
        f"{source}: transport_config.{SETTING}", f"must be true or false, got {setting!r}"
    )


def _errors(value: Any, source: str) -> tuple[CollectionError, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: list[CollectionError] = []
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            src, msg = item.get("source"), item.get("message")
        elif isinstance(item, RawRecord):
            src, msg = None, None
        else:
            src, msg = None, item
        if not isinstance(msg, str):
            raise InputError(f"{source}: errors[{index}]", "needs a 'message' string")
        out.append(CollectionError(source=str(src or "collection"), message=msg))
    return tuple(out)


def _text(record: RawRecord, slot: str, where: str) -> str | None:
    value = record.get(slot)
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, RawRecord):  # e.g. an Identity serialised as an object: not usable
        return None
    raise InputError(where, f"{slot} must be a string, got {type(value).__name__}")


def _addresses(record: RawRecord, where: str) -> tuple[str, ...]:
    value = record.get("addresses")
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise InputError(where, "EmailAddresses must be strings")
    return tuple(items)


def _lower(value: str) -> str:
    return value if value.islower() else value.lower()


def mailbox_from_records(cas: RawRecord | None, directory: RawRecord | None, where: str) -> Mailbox:
    """Merge a Get-CASMailbox record with its Get-Mailbox record (either may be missing)."""
    first = [r for r in (cas, directory) if r is not None]

    def pick(slot: str) -> str | None:
        for record in first:
            value = _text(record, slot, where)
            if value is not None:
                return value
        return None

    addresses: tuple[str, ...] = ()
    for record in first:
        addresses = addresses or _addresses(record, where)
    setting: bool | None = None
    present = cas is not None and cas.has("setting")
    if present and cas is not None:
        raw = cas.get("setting")
        if raw is not None and not isinstance(raw, bool):
            raise InputError(where, f"{SETTING} must be true, false or null, got {raw!r}")
        setting = raw
    guid = pick("guid")
    edoid = pick("edoid")
    psmtp = pick("psmtp")
    upn = pick("upn")
    alias = pick("alias")
    name = pick("name")
    identity = pick("identity")
    sam = pick("sam")
    keys: list[str] = []
    for value in (guid, edoid, psmtp, upn, alias, name, identity, sam):
        if value is not None:
            keys.append(_lower(value))
    for address in addresses:
        prefix, _, rest = address.partition(":")
        if rest and prefix.lower() == "smtp":
            keys.append(_lower(rest))
    if not keys:
        raise InputError(where, "mailbox record has no identifier (Guid, address, name...)")
    return Mailbox(
        guid=guid,
        external_directory_object_id=edoid,
        primary_smtp_address=psmtp,
        user_principal_name=upn,
        alias=alias,
        name=name,
        identity=identity,
        sam_account_name=sam,
        recipient_type_details=pick("rtd"),
        email_addresses=addresses,
        setting=setting,
        setting_present=present,
        match_keys=tuple(dict.fromkeys(keys)) if len(keys) > 1 else tuple(keys),
    )


def _join(cas: list[RawRecord], directory: Iterable[RawRecord], source: str) -> tuple[Mailbox, ...]:
    """Join CAS records to Get-Mailbox records on Guid, then ExternalDirectoryObjectId.

    A Get-Mailbox record without a CAS record is kept as a mailbox whose setting is unknown:
    a mailbox missing from the CAS listing must show up, not vanish.
    """
    by_guid: dict[str, int] = {}
    by_edoid: dict[str, int] = {}
    dir_list = list(directory)
    for index, record in enumerate(dir_list):
        where = f"{source}: mailboxes[{index}]"
        guid = _text(record, "guid", where)
        edoid = _text(record, "edoid", where)
        if guid:
            by_guid[_lower(guid)] = index
        if edoid:
            by_edoid[_lower(edoid)] = index
    used = bytearray(len(dir_list))
    seen: set[str] = set()
    mailboxes: list[Mailbox] = []
    for index, record in enumerate(cas):
        where = f"{source}: cas_mailboxes[{index}]"
        guid = _text(record, "guid", where)
        edoid = _text(record, "edoid", where)
        match = by_guid.get(_lower(guid)) if guid else None
        if match is None and edoid:
            match = by_edoid.get(_lower(edoid))
        partner = None
        if match is not None:
            used[match] = 1
            partner = dir_list[match]
        mailbox = mailbox_from_records(record, partner, where)
        if mailbox.key in seen:
            raise InputError(where, f"duplicate mailbox {mailbox.key!r} in cas_mailboxes")
        seen.add(mailbox.key)
        mailboxes.append(mailbox)
    for index, record in enumerate(dir_list):
        if used[index]:
            continue
        mailbox = mailbox_from_records(None, record, f"{source}: mailboxes[{index}]")
        if mailbox.key not in seen:
            seen.add(mailbox.key)
            mailboxes.append(mailbox)
    return tuple(mailboxes)


def snapshot_document(
    *,
    tenant: str,
    collected_at: datetime,
    transport_config: Mapping[str, Any] | None,
    cas_mailboxes: list[Mapping[str, Any]] | None,
    mailboxes: list[Mapping[str, Any]] | None,
    errors: list[CollectionError],
) -> dict[str, Any]:
    """The JSON document of a snapshot, as the collector writes it."""
    return {
        "schema": SCHEMA,
        "tenant": tenant,
        "collected_at": collected_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "transport_config": None if transport_config is None else dict(transport_config),
        "cas_mailboxes": cas_mailboxes,
        "mailboxes": mailboxes,
        "errors": [{"source": e.source, "message": e.message} for e in errors],
    }
