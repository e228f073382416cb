"""Read a snapshot file (`smtp-auth-snapshot/1`): raw Exchange records to a typed `Snapshot`.

Tolerant of what PowerShell's `ConvertTo-Json` writes (a single object where a list is
expected, `Prop@odata.type` annotation keys, extra properties, a UTF-8 BOM, property names in
any case) and loud on garbage: every error names the file and the record.

Three raw states are kept apart: `true`, `false`, `null` (inherit). A record without the
property is *unknown*, not null.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from auditor.core.errors import InputError
from auditor.core.jsonstream import StreamError, read_object
from auditor.core.model import CollectionError, Mailbox, Snapshot

__all__ = [
    "SCHEMA",
    "read_snapshot",
    "read_stream",
    "parse_snapshot",
    "build_snapshot",
    "mailbox_from_records",
]

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


class RawRecord:
    """The properties of one raw Exchange object that the auditor uses; everything else dropped.

    Annotation keys (`Guid@odata.type`) are ignored; property names match in any case.
    """

    __slots__ = ("ids", "values")

    def __init__(self, data: Mapping[str, Any]) -> None:
        get = _FIELDS.get
        # An annotation such as `Guid@odata.type` never matches a field name: dropped here.
        self.values: dict[str, Any] = {
            field: value for key, value in data.items() if (field := get(key.lower())) is not None
        }
        self.ids: tuple[str | None, str | None] | None = None  # (guid, directory id), lowered

    def get(self, slot: str) -> Any:
        return self.values.get(slot)

    def has(self, slot: str) -> bool:
        return slot in self.values


def read_snapshot(path: str | Path) -> Snapshot:
    """Read and validate a snapshot file, streaming its mailbox arrays.

    Raises InputError naming the file and the record (or line) at fault.
    """
    name = str(path)
    try:
        with Path(path).open("rb") as probe:
            head = probe.read(4)
        encoding = _encoding(head)
        with Path(path).open(encoding=encoding, newline="") as handle:
            return read_stream(handle, name)
    except OSError as exc:
        raise InputError(name, f"cannot read snapshot: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(name, f"not valid {encoding} text (byte {exc.start})") from exc


def parse_snapshot(raw: bytes, *, source: str = "<snapshot>") -> Snapshot:
    """Validate a snapshot held in memory (bytes of the JSON file)."""
    encoding = _encoding(raw[:4])
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(source, f"not valid {encoding} text (byte {exc.start})") from exc
    return read_stream(io.StringIO(text), source)


def _encoding(head: bytes) -> str:
    return "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"


_STREAMED = ("cas_mailboxes", "mailboxes")


def read_stream(handle: TextIO, source: str) -> Snapshot:
    """Read a snapshot document from a text stream, one mailbox record at a time."""
    joiner = _Joiner(source)
    try:
        document = read_object(handle, streamed=_STREAMED, on_item=joiner.add)
    except StreamError as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        if exc.where and exc.where != "document":
            where += f" ({exc.where})"
        raise InputError(where, str(exc)) from exc
    for member in _STREAMED:
        value = document.get(member)
        if isinstance(value, int) and not isinstance(value, bool):
            document[member] = joiner  # streamed already
    return _validate(document, joiner, source)


def build_snapshot(document: Mapping[str, Any], *, source: str = "<snapshot>") -> Snapshot:
    """Validate a snapshot document already in memory (e.g. what the collector built)."""
    joiner = _Joiner(source)
    copy = dict(document)
    for member in _STREAMED:
        value = copy.get(member)
        if isinstance(value, list):
            for index, item in enumerate(value):
                joiner.add(member, index, item)
            copy[member] = joiner
    return _validate(copy, joiner, source)


def _validate(document: Mapping[str, Any], joiner: _Joiner, source: str) -> Snapshot:
    schema = document.get("schema")
    if schema != SCHEMA:
        raise InputError(source, f"schema is {schema!r}, expected {SCHEMA!r}")
    tenant = document.get("tenant")
    if not isinstance(tenant, str) or not tenant.strip():
        raise InputError(source, "'tenant' must be a non-empty string")
    collected_at = _parse_time(document.get("collected_at"), f"{source}: collected_at")
    org_disabled = _org_setting(document.get("transport_config"), source)
    collected: dict[str, bool] = {}
    for member in _STREAMED:
        value = document.get(member)
        if value is None:
            collected[member] = False
        elif value is joiner:
            collected[member] = True
        else:  # PowerShell writes a single object where a list is expected
            joiner.add(member, 0, value)
            collected[member] = True
    errors = _errors(document.get("errors"), source)
    mailboxes = joiner.finish() if collected["cas_mailboxes"] else None
    return Snapshot(
        tenant=tenant.strip(),
        collected_at=collected_at,
        org_disabled=org_disabled,
        mailboxes=mailboxes,
        directory_collected=collected["mailboxes"],
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


_NOT_TEXT = frozenset({"setting", "addresses"})


def _text(record: RawRecord, slot: str, where: str) -> str | None:
    value = record.values.get(slot)
    if value is None:
        return None
    if type(value) is str:
        value = value.strip()
        return value or None
    if isinstance(value, (Mapping, RawRecord)):  # e.g. an Identity serialised as an object
        return None
    raise InputError(where, f"{slot} must be a string, got {type(value).__name__}")


def _addresses(record: RawRecord, where: str) -> list[str]:
    value = record.get("addresses")
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise InputError(where, "EmailAddresses must be strings")
    return items


def _lower(value: str) -> str:
    return value if value.islower() else value.lower()


def _share(value: str | None, *others: str | None) -> str | None:
    """Return an equal string object from `others` when there is one (saves memory at scale)."""
    if value is None:
        return None
    for other in others:
        if other == value:
            return other
    return value


def mailbox_from_records(cas: RawRecord | None, directory: RawRecord | None, where: str) -> Mailbox:
    """Merge a Get-CASMailbox record with its Get-Mailbox record (either may be missing).

    Values from the CAS record win; `email_addresses` keeps the SMTP proxy addresses
    (`smtp:`/`SMTP:`), lower-cased and without their prefix; X500, SIP and other proxies are
    not identities the allowlist matches.
    """
    first = [r for r in (cas, directory) if r is not None]
    # The text properties of both records, the CAS record's winning (it is applied last).
    text: dict[str, str] = {}
    for record in reversed(first):
        for slot, value in record.values.items():
            if type(value) is str:
                value = value.strip()
                if value:
                    text[slot] = value
            elif slot not in _NOT_TEXT:
                _text(record, slot, where)  # None, an object (ignored), or an error
    pick = text.get

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
    upn = _share(pick("upn"), psmtp)
    name = pick("name")
    alias = _share(pick("alias"), name)
    identity = _share(pick("identity"), name, alias)
    sam = _share(pick("sam"), name, alias)
    rtd = pick("rtd")
    lowered = {
        field: _lower(value)
        for field, value in (
            ("guid", guid),
            ("edoid", edoid),
            ("psmtp", psmtp),
            ("upn", upn),
            ("identity", identity),
            ("name", name),
            ("alias", alias),
            ("sam", sam),
        )
        if value is not None
    }
    if not lowered:
        raise InputError(where, "mailbox record has no identifier (Guid, address, name...)")
    primary = lowered.get("psmtp")
    keys = list(lowered.values())
    smtp: list[str] = []
    for record in first:
        for address in _addresses(record, where):
            prefix, _, rest = address.partition(":")
            if rest and prefix.lower() == "smtp":
                smtp_key = _share(_lower(rest), primary) or rest
                smtp.append(smtp_key)
                keys.append(smtp_key)
        if smtp:
            break
    return Mailbox(
        guid=guid,
        external_directory_object_id=edoid,
        primary_smtp_address=psmtp,
        user_principal_name=upn,
        alias=alias,
        name=name,
        identity=identity,
        sam_account_name=sam,
        recipient_type_details=sys.intern(rtd) if rtd else None,
        email_addresses=tuple(dict.fromkeys(smtp)),
        setting=setting,
        setting_present=present,
        match_keys=tuple(dict.fromkeys(keys)),
        key=next(iter(lowered.values())),
    )


class _Joiner:
    """Joins CAS records to Get-Mailbox records as they arrive (on Guid, then
    ExternalDirectoryObjectId), so each pair becomes one Mailbox at once and the raw records
    are freed: peak memory stays near one copy of the evidence.

    A Get-Mailbox record without a CAS record is kept as a mailbox whose setting is unknown:
    a mailbox missing from the CAS listing must show up, not vanish.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.cas: list[Mailbox | RawRecord] = []
        self.directory: dict[int, RawRecord] = {}
        # Unpaired records by lower-cased Guid / directory id -> position.
        self.index: dict[str, dict[str, int]] = {
            "cas_guid": {},
            "cas_edoid": {},
            "dir_guid": {},
            "dir_edoid": {},
        }

    def _ids(self, record: RawRecord, where: str) -> tuple[str | None, str | None]:
        if record.ids is None:
            guid = _text(record, "guid", where)
            edoid = _text(record, "edoid", where)
            record.ids = (_lower(guid) if guid else None, _lower(edoid) if edoid else None)
        return record.ids

    def _take(self, side: str, guid: str | None, edoid: str | None) -> int | None:
        found = self.index[f"{side}_guid"].pop(guid, None) if guid else None
        if found is None and edoid:
            found = self.index[f"{side}_edoid"].pop(edoid, None)
        return found

    def _forget(self, side: str, record: RawRecord, where: str) -> None:
        guid, edoid = self._ids(record, where)
        if guid:
            self.index[f"{side}_guid"].pop(guid, None)
        if edoid:
            self.index[f"{side}_edoid"].pop(edoid, None)

    def _remember(self, side: str, guid: str | None, edoid: str | None, position: int) -> None:
        if guid:
            self.index[f"{side}_guid"].setdefault(guid, position)
        if edoid:
            self.index[f"{side}_edoid"].setdefault(edoid, position)

    def add(self, member: str, index: int, item: Any) -> None:
        where = f"{self.source}: {member}[{index}]"
        record = _as_record(item)
        if record is None:
            raise InputError(where, "is not a JSON object")
        guid, edoid = self._ids(record, where)
        if member == "cas_mailboxes":
            position = len(self.cas)
            partner_at = self._take("dir", guid, edoid)
            if partner_at is not None:
                partner = self.directory.pop(partner_at)
                self._forget("dir", partner, where)
                self.cas.append(mailbox_from_records(record, partner, where))
            else:
                self.cas.append(record)
                self._remember("cas", guid, edoid, position)
        else:
            partner_at = self._take("cas", guid, edoid)
            if partner_at is not None:
                partner_record = self.cas[partner_at]
                assert isinstance(partner_record, RawRecord)
                cas_where = self._cas_where(partner_at)
                self._forget("cas", partner_record, cas_where)
                self.cas[partner_at] = mailbox_from_records(partner_record, record, cas_where)
            else:
                self.directory[index] = record
                self._remember("dir", guid, edoid, index)

    def _cas_where(self, position: int) -> str:
        return f"{self.source}: cas_mailboxes[{position}]"

    def finish(self) -> tuple[Mailbox, ...]:
        mailboxes: list[Mailbox] = []
        seen: set[str] = set()
        for position, item in enumerate(self.cas):
            if isinstance(item, RawRecord):
                item = mailbox_from_records(item, None, self._cas_where(position))
            if item.key in seen:
                raise InputError(
                    self._cas_where(position), f"duplicate mailbox {item.key!r} in cas_mailboxes"
                )
            seen.add(item.key)
            mailboxes.append(item)
        for index, record in sorted(self.directory.items()):
            mailbox = mailbox_from_records(None, record, f"{self.source}: mailboxes[{index}]")
            if mailbox.key not in seen:
                seen.add(mailbox.key)
                mailboxes.append(mailbox)
        self.cas = []
        self.directory = {}
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
