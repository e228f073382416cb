"""Read a snapshot file (`smtp-auth-snapshot/1`): raw Exchange records to a typed `Snapshot`.

Tolerant of what PowerShell's `ConvertTo-Json` writes (a single object where a list is
expected, `Prop@odata.type` annotation keys, extra properties, a UTF-8 BOM, property names in
any case) and loud on garbage: every error names the file and the record.

Three raw states are kept apart: `true`, `false`, `null` (inherit). A record without the
property is *unknown*, not null.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec
from msgspec import UNSET, UnsetType

from auditor.core.errors import InputError
from auditor.core.jsonstream import StreamError, read_object
from auditor.core.model import CollectionError, Mailbox, Screened, Snapshot
from auditor.core.screen import clean

__all__ = [
    "SCHEMA",
    "read_snapshot",
    "read_stream",
    "parse_snapshot",
    "build_snapshot",
    "mailbox_from_records",
    "PageJoiner",
]

SCHEMA = "smtp-auth-snapshot/1"
SETTING = "SmtpClientAuthenticationDisabled"

# Slot of RawRecord -> the property name as Exchange (and PowerShell) spells it.
_NAMES = {
    "guid": "Guid",
    "edoid": "ExternalDirectoryObjectId",
    "psmtp": "PrimarySmtpAddress",
    "upn": "UserPrincipalName",
    "alias": "Alias",
    "name": "Name",
    "identity": "Identity",
    "sam": "SamAccountName",
    "rtd": "RecipientTypeDetails",
    "addresses": "EmailAddresses",
    "setting": SETTING,
}
# Raw property name (lower-cased) -> slot in RawRecord.
_FIELDS = {name.lower(): slot for slot, name in _NAMES.items()}
_TEXT_SLOTS = ("guid", "edoid", "psmtp", "upn", "alias", "name", "identity", "sam", "rtd")
# An object where a string is expected (an `Identity` serialised as an ADObjectId) is decoded
# as a dict and then ignored, like a null: PowerShell exports do this for every record.
_Text = str | dict[str, Any] | UnsetType | None


class RawRecord(msgspec.Struct, rename=_NAMES, gc=False):
    """The properties of one raw Exchange object that the auditor uses; everything else dropped.

    Decoded straight from the JSON text by `_DECODER` (exact Exchange spelling, typed: a page of
    records is one C call and no dictionary), or built by `raw_record` from a parsed mapping
    (any case, values checked there). A property absent from the record is `UNSET`; an object
    where a string is expected (an `Identity` serialised as an ADObjectId) is ignored.
    Not tracked by the cyclic collector: it holds strings and a list of strings only.
    """

    guid: _Text = UNSET
    edoid: _Text = UNSET
    psmtp: _Text = UNSET
    upn: _Text = UNSET
    alias: _Text = UNSET
    name: _Text = UNSET
    identity: _Text = UNSET
    sam: _Text = UNSET
    rtd: _Text = UNSET
    addresses: list[str] | str | UnsetType | None = UNSET
    setting: bool | UnsetType | None = UNSET


_EMPTY = RawRecord()
# One typed decode per slice of a listing (see `_Joiner.add_run`).
_DECODER = msgspec.json.Decoder(list[RawRecord])


def raw_record(data: Mapping[str, Any], where: str) -> RawRecord:
    """The RawRecord of a parsed Exchange object: property names in any case, annotation keys
    (`Guid@odata.type`) and extra properties dropped, text properties checked.

    Raises InputError naming `where` when a text property is neither a string, null nor an
    object (objects are ignored), or EmailAddresses holds something other than strings.
    """
    get = _FIELDS.get
    values: dict[str, Any] = {}
    for key, value in data.items():
        slot = get(key.lower())
        if slot is not None:
            values[slot] = value
    for slot in _TEXT_SLOTS:
        value = values.get(slot)
        if value is None or type(value) is str:
            continue
        if isinstance(value, Mapping):  # e.g. an Identity serialised as an object: ignored
            continue
        raise InputError(where, f"{slot} must be a string, got {type(value).__name__}")
    if "addresses" in values:
        items = values["addresses"]
        if not (items is None or isinstance(items, str)) and (
            not isinstance(items, list) or not all(isinstance(i, str) for i in items)
        ):
            raise InputError(where, "EmailAddresses must be strings")
    return RawRecord(**values)


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
        document = read_object(
            handle, streamed=_STREAMED, on_item=joiner.add, on_run=joiner.add_run
        )
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
        screened=joiner.screened if mailboxes is not None else None,
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


def _org_setting(value: Any, source: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, list):  # a one-element array from some exports
        if len(value) != 1:
            raise InputError(f"{source}: transport_config", "expected one object")
        value = value[0]
    if not isinstance(value, Mapping):
        raise InputError(f"{source}: transport_config", "is not a JSON object")
    setting: Any = UNSET
    for key, item in value.items():  # any case; annotation keys never match
        if key.lower() == _SETTING_KEY:
            setting = item
    if setting is UNSET:
        return None
    if setting is None or isinstance(setting, bool):
        # The organisation value is a plain boolean; null there means it could not be judged.
        return setting
    raise InputError(
        f"{source}: transport_config.{SETTING}", f"must be true or false, got {setting!r}"
    )


_SETTING_KEY = SETTING.lower()


def _errors(value: Any, source: str) -> tuple[CollectionError, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: list[CollectionError] = []
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            src, msg = item.get("source"), item.get("message")
        else:
            src, msg = None, item
        if not isinstance(msg, str):
            raise InputError(f"{source}: errors[{index}]", "needs a 'message' string")
        out.append(CollectionError(source=str(src or "collection"), message=msg))
    return tuple(out)


def _first(cas: object, directory: object) -> str | None:
    """The CAS record's value when it is a non-blank string, else the directory record's.

    Values are already checked (decoded typed, or by `raw_record`): anything but a string
    (None, UNSET, an object) is no value.
    """
    if type(cas) is str:
        cas = cas.strip()
        if cas:
            # An equal value from the directory record is kept instead: that record is read
            # with the mailbox built from it, while the CAS listing is read first, whole. So
            # the CAS records die entirely and their memory can be given back (or reused for
            # the findings) rather than staying pinned by a few strings per mailbox.
            return directory if type(directory) is str and directory == cas else cas
    if type(directory) is str:
        directory = directory.strip()
        if directory:
            return directory
    return None


def _lower(value: str) -> str:
    """`value` lower-cased, the same object when it already is (str.islower is slow: it asks
    the Unicode tables about every character, where lower() has an ASCII fast path)."""
    lowered = value.lower()
    return value if lowered == value else lowered


def _share(value: str | None, *others: str | None) -> str | None:
    """Return an equal string object from `others` when there is one (saves memory at scale)."""
    if value is None:
        return None
    for other in others:
        if other == value:
            return other
    return value


_SPELLING_SAMPLE = 1 << 16  # characters of a listing's first run checked for other spellings
_QUOTED = tuple((f'"{name}"', f'"{name.lower()}"') for name in _NAMES.values())


def _canonical_names(text: str) -> bool:
    """Whether every property name of `text` that the auditor reads is spelt as Exchange
    spells it (a quoted name equal to one in another case counts against it, which a value
    equal to a property name in lower case can only make safer)."""
    lowered = text.lower()
    return all(text.count(exact) == lowered.count(lower) for exact, lower in _QUOTED)


def _ids(record: RawRecord) -> tuple[str | None, str | None]:
    """(Guid, directory id) of a record, stripped and lower-cased: the join keys."""
    guid = _first(record.guid, None)
    edoid = _first(record.edoid, None)
    return (_lower(guid) if guid else None, _lower(edoid) if edoid else None)


def mailbox_from_records(cas: RawRecord | None, directory: RawRecord | None, where: str) -> Mailbox:
    """Merge a Get-CASMailbox record with its Get-Mailbox record (either may be missing).

    Values from the CAS record win; `email_addresses` keeps the SMTP proxy addresses
    (`smtp:`/`SMTP:`), lower-cased and without their prefix; X500, SIP and other proxies are
    not identities the allowlist matches.
    """
    # Run once per mailbox, a million times in a large tenant: written out flat on purpose.
    c = _EMPTY if cas is None else cas
    d = _EMPTY if directory is None else directory
    raw = c.setting
    present = raw is not UNSET
    if present and raw is not None and type(raw) is not bool:
        raise InputError(where, f"{SETTING} must be true, false or null, got {raw!r}")
    setting: bool | None = raw if present else None  # type: ignore[assignment]
    first = _first
    guid = first(c.guid, d.guid)
    edoid = first(c.edoid, d.edoid)
    psmtp = first(c.psmtp, d.psmtp)
    upn = first(c.upn, d.upn)
    name = first(c.name, d.name)
    alias = first(c.alias, d.alias)
    identity = first(c.identity, d.identity)
    sam = first(c.sam, d.sam)
    rtd = first(c.rtd, d.rtd)
    # One object for equal strings (saves memory at scale).
    if upn is not None and upn == psmtp:
        upn = psmtp
    if alias is not None and alias == name:
        alias = name
    if identity is not None:
        if identity == name:
            identity = name
        elif identity == alias:
            identity = alias
    if sam is not None:
        if sam == name:
            sam = name
        elif sam == alias:
            sam = alias
    # Lower-cased identifiers, most stable first (the first is the mailbox's key); a string
    # already in lower case is kept as is, so the key and the value share one object.
    keys = [
        value if (lowered := value.lower()) == value else lowered
        for value in (guid, edoid, psmtp, upn, identity, name, alias, sam)
        if value is not None
    ]
    if not keys:
        raise InputError(where, "mailbox record has no identifier (Guid, address, name...)")
    addresses: tuple[str, ...] = ()
    value = c.addresses
    if value is UNSET or value is None or not (found := _smtp(value, psmtp)):
        value = d.addresses
        found = [] if value is UNSET or value is None else _smtp(value, psmtp)
    if found:
        addresses = tuple(dict.fromkeys(found))
        keys += addresses
    return Mailbox(
        guid,
        edoid,
        psmtp,
        upn,
        alias,
        name,
        identity,
        sam,
        sys.intern(rtd) if rtd else None,
        addresses,
        setting,
        present,
        tuple(dict.fromkeys(keys)),
        keys[0],
    )


def _smtp(value: str | list[str], psmtp: str | None) -> list[str]:
    """The SMTP proxy addresses of EmailAddresses, lower-cased, without their prefix; the
    primary address's own string object where it is one of them."""
    primary = None if psmtp is None else _lower(psmtp)
    out: list[str] = []
    for address in [value] if type(value) is str else value:
        if address.startswith(_SMTP_PREFIXES) or (
            address[4:5] == ":" and address[:4].lower() == "smtp"
        ):
            key = address[5:]
            if not key:
                continue
            key = key.lower()
            out.append(primary if primary is not None and key == primary else key)
    return out


_SMTP_PREFIXES = ("SMTP:", "smtp:")


class _Joiner:
    """Joins CAS records to Get-Mailbox records as they arrive (on Guid, then
    ExternalDirectoryObjectId), so each pair becomes one Mailbox at once and the raw records
    are freed: peak memory stays near one copy of the evidence.

    A Get-Mailbox record without a CAS record is kept as a mailbox whose setting is unknown:
    a mailbox missing from the CAS listing must show up, not vanish.

    Unpaired CAS records are indexed by Guid as they arrive; their directory-id index is built
    only when a Get-Mailbox record is not found by Guid (Exchange gives both listings Guids, so
    that index, a million entries at a million mailboxes, is normally never built).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.cas: list[Mailbox | RawRecord] = []
        self.directory: dict[int, RawRecord] = {}
        # Unpaired records by lower-cased Guid / directory id -> position.
        self.cas_guid: dict[str, int] = {}
        self.cas_edoid: dict[str, int] | None = None  # built on first need
        self.dir_guid: dict[str, int] = {}
        self.dir_edoid: dict[str, int] = {}
        # Listings whose first run was checked for names spelt in another case ("tolerant":
        # it has some, and the whole listing is read record by record).
        self.spelling: dict[str, bool] = {}
        # Every mailbox is checked by `core.screen.clean` as it is built (while the reads
        # page, for the nightly audit), so the screen after the last page looks only at
        # these (by `id`; a stale id costs one more check, never a missed record).
        self._unclean: set[int] = set()
        self.screened: Screened | None = None  # set by `finish`

    def _cas_edoid(self) -> dict[str, int]:
        if self.cas_edoid is None:
            index: dict[str, int] = {}
            for position, item in enumerate(self.cas):
                if type(item) is RawRecord:
                    edoid = _ids(item)[1]
                    if edoid:
                        index.setdefault(edoid, position)
            self.cas_edoid = index
        return self.cas_edoid

    def _forget_cas(self, record: RawRecord) -> None:
        guid, edoid = _ids(record)
        if guid:
            self.cas_guid.pop(guid, None)
        if edoid and self.cas_edoid is not None:
            self.cas_edoid.pop(edoid, None)

    def _forget_dir(self, record: RawRecord) -> None:
        guid, edoid = _ids(record)
        if guid:
            self.dir_guid.pop(guid, None)
        if edoid:
            self.dir_edoid.pop(edoid, None)

    def add(self, member: str, index: int, item: Any) -> None:
        """One element of a listing, as parsed (a mapping, checked by `raw_record`)."""
        where = f"{self.source}: {member}[{index}]"
        if not isinstance(item, Mapping):
            raise InputError(where, "is not a JSON object")
        self.add_record(member, index, raw_record(item, where))

    def add_run(self, member: str, index: int, text: str | bytes) -> int | None:
        """Elements `index`... of a listing as JSON text (`{...},{...}`), decoded in one typed
        call. Returns how many; -1 when the text is not well-formed; None when it must be read
        element by element by the tolerant path: a value has an unexpected type, or a record
        lacks the properties Exchange always writes (its Guid, and the setting in the CAS
        listing).

        The typed decode knows the names as Exchange spells them and skips any other key, so a
        listing written with names in another case (a camelCase exporter) must not be read
        typed: its first run is checked for such spellings, and if it has any the whole
        listing is read by the tolerant path. A file is written by one exporter, so one run
        tells; a later record spelt differently is caught only if it lacks its Guid (or, in
        the CAS listing, its setting).
        """
        canonical = self.spelling.get(member)
        if canonical is None:
            sample = (
                text[: 4 * _SPELLING_SAMPLE].decode("utf-8", "ignore")
                if isinstance(text, bytes)
                else text
            )
            canonical = self.spelling[member] = _canonical_names(sample[:_SPELLING_SAMPLE])
        if not canonical:
            return None
        try:
            records = _DECODER.decode(
                b"".join((b"[", text, b"]"))
                if isinstance(text, bytes)
                else "".join(("[", text, "]"))
            )
        except msgspec.ValidationError:
            return None
        except msgspec.DecodeError:
            return -1
        cas = member == "cas_mailboxes"
        for record in records:
            if record.guid is UNSET or (cas and record.setting is UNSET):
                return None
        add = self.add_record
        for offset, record in enumerate(records):
            add(member, index + offset, record)
        return len(records)

    def add_record(self, member: str, index: int, record: RawRecord) -> None:
        guid, edoid = _ids(record)
        if member == "cas_mailboxes":
            position = len(self.cas)
            partner_at = self.dir_guid.pop(guid, None) if guid else None
            if partner_at is None and edoid:
                partner_at = self.dir_edoid.pop(edoid, None)
            if partner_at is not None:
                partner = self.directory.pop(partner_at)
                self._forget_dir(partner)
                where = f"{self.source}: {member}[{index}]"
                self.cas.append(self._checked(mailbox_from_records(record, partner, where)))
            else:
                self.cas.append(record)
                if guid:
                    self.cas_guid.setdefault(guid, position)
                if edoid and self.cas_edoid is not None:
                    self.cas_edoid.setdefault(edoid, position)
            return
        partner_at = self.cas_guid.pop(guid, None) if guid else None
        by_guid = partner_at is not None
        if partner_at is None and edoid:
            partner_at = self._cas_edoid().pop(edoid, None)
        if partner_at is not None:
            partner_record = self.cas[partner_at]
            assert type(partner_record) is RawRecord
            if not by_guid or self.cas_edoid is not None:  # else its one index entry is gone
                self._forget_cas(partner_record)
            self.cas[partner_at] = self._checked(
                mailbox_from_records(partner_record, record, self._cas_where(partner_at))
            )
        else:
            self.directory[index] = record
            if guid:
                self.dir_guid.setdefault(guid, index)
            if edoid:
                self.dir_edoid.setdefault(edoid, index)

    def _cas_where(self, position: int) -> str:
        return f"{self.source}: cas_mailboxes[{position}]"

    def _checked(self, mailbox: Mailbox) -> Mailbox:
        if not clean(mailbox):
            self._unclean.add(id(mailbox))
        return mailbox

    def finish(self) -> tuple[Mailbox, ...]:
        mailboxes: list[Mailbox] = []
        seen: set[str] = set()
        cas, self.cas = self.cas, []
        for position, item in enumerate(cas):
            if type(item) is RawRecord:
                item = self._checked(mailbox_from_records(item, None, self._cas_where(position)))
            assert type(item) is Mailbox
            if item.key in seen:
                raise InputError(
                    self._cas_where(position), f"duplicate mailbox {item.key!r} in cas_mailboxes"
                )
            seen.add(item.key)
            mailboxes.append(item)
        del cas
        for index, record in sorted(self.directory.items()):
            mailbox = mailbox_from_records(None, record, f"{self.source}: mailboxes[{index}]")
            mailbox = self._checked(mailbox)
            if mailbox.key not in seen:
                seen.add(mailbox.key)
                mailboxes.append(mailbox)
        self.directory = {}
        joined = tuple(mailboxes)
        unclean, self._unclean = self._unclean, set()
        positions = [i for i, m in enumerate(joined) if id(m) in unclean] if unclean else []
        self.screened = Screened(joined, tuple(positions))
        return joined


class PageJoiner:
    """The snapshot of a collection, joined page by page while the reads page (issue 17;
    docs/architecture.md, "A nightly run").

    `add_page(member, run, count)` takes one page of a listing as the very bytes stored in the
    evidence (`{...},{...}`, as `evidence.ListingEncoder` encodes it), decoded typed by
    `_Joiner.add_run` or, when it refuses the run, record by record (`_Joiner.add`) as a
    snapshot file would be read. The CAS and mailbox reads run in threads of their own: each
    page is joined under one lock, and each listing's record numbers (`cas_mailboxes[N]` in
    errors) count on from its earlier pages. As with a file, a listing's first run (here its
    first page) decides whether its names are spelt as Exchange spells them.

    The joined snapshot is only a faster way to the one that reading the stored evidence
    gives. Whatever could make them differ spoils it (`spoil`: a read that failed after some
    pages were joined, a record the joiner refuses), and `snapshot` then returns None: the
    caller reads the stored evidence instead (`evidence.read_evidence`), which names the error.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._joiner: _Joiner | None = _Joiner(source)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_STREAMED, 0)
        self.spoilt: str | None = None  # why the joined snapshot is not used

    def add_page(self, member: str, run: bytes, count: int) -> None:
        """Join `count` records of `member` (`run`: their JSON, comma-joined, no brackets)."""
        with self._lock:
            index = self._counts[member]
            self._counts[member] = index + count
            joiner = self._joiner
            if joiner is None or not count:
                return
            try:
                if joiner.add_run(member, index, run) != count:  # refused: the tolerant path
                    for offset, item in enumerate(json.loads(b"".join((b"[", run, b"]")))):
                        joiner.add(member, index + offset, item)
            except (InputError, ValueError) as exc:
                self._spoil(f"{member}[{index}...]: {exc}")

    def spoil(self, why: str) -> None:
        """Give up the joined records (e.g. `why` a read failed): `snapshot` will be None."""
        with self._lock:
            self._spoil(why)

    def _spoil(self, why: str) -> None:
        if self.spoilt is None:
            self.spoilt = why
        self._joiner = None

    def snapshot(self, document: Mapping[str, Any]) -> Snapshot | None:
        """The Snapshot of `document` (a `snapshot_document` whose listings are placeholders:
        None for a read that failed, anything else for one that was joined), or None when the
        join was spoilt. Once only: the joined records are handed over."""
        with self._lock:
            joiner, self._joiner = self._joiner, None
        if joiner is None:
            return None
        copy = dict(document)
        for member in _STREAMED:
            if copy.get(member) is not None:
                copy[member] = joiner
        try:
            return _validate(copy, joiner, self.source)
        except InputError as exc:
            self.spoilt = str(exc)
            return None


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
