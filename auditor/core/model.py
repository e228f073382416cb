"""Plain data of the auditor: frozen dataclasses and enums, no I/O.

Every other module speaks in these types. They carry evidence exactly as judged, so a report can
show what was seen and a stored run can be re-evaluated later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import ClassVar, NamedTuple

import msgspec

__all__ = [
    "Setting",
    "AllowlistEntry",
    "Allowlist",
    "CollectionError",
    "Effective",
    "Evaluation",
    "Finding",
    "Mailbox",
    "MailboxUsage",
    "PreviousRun",
    "PriorFinding",
    "Readiness",
    "Severity",
    "Screened",
    "Snapshot",
    "Status",
]


class Setting:
    """The one codec of `SmtpClientAuthenticationDisabled` values, everywhere they are stored,
    printed or parsed: `True` = blocked, `False` = explicitly enabled, `None` = follow the
    organisation ("null"); a property absent from a record is "missing" (not null)."""

    MISSING = "missing"
    _TEXT: ClassVar[dict[bool | None, str]] = {True: "true", False: "false", None: "null"}
    _VALUE: ClassVar[dict[str, bool | None]] = {"true": True, "false": False, "null": None}

    @staticmethod
    def text(value: bool | None) -> str:
        """ "true", "false" or "null"."""
        return Setting._TEXT[value]

    @staticmethod
    def code(value: bool | None, present: bool = True) -> str:
        """`text(value)`, or "missing" when the property was not in the record."""
        return Setting._TEXT[value] if present else Setting.MISSING

    @staticmethod
    def parse(value: object) -> bool | None:
        """A stored or typed value (`true`/`false`/`null`, any case, or a JSON bool/None) back
        to its setting; anything else is a ValueError naming it."""
        if value is None or isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in Setting._VALUE:
            raise ValueError(f"not true/false/null: {value!r}")
        return Setting._VALUE[text]

    @staticmethod
    def from_code(code: str) -> tuple[bool | None, bool]:
        """(setting, present) of a `code`: "missing" is (None, False)."""
        if code == Setting.MISSING:
            return None, False
        return Setting.parse(code), True


class Effective(StrEnum):
    """Whether a mailbox may use SMTP AUTH, after the organisation value is applied."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    UNKNOWN = "unknown"


class Status(StrEnum):
    """Outcome of one finding. `unknown` means the evidence could not be read: never a pass."""

    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    EXEMPT = "exempt"
    WARNING = "warning"
    UNKNOWN = "unknown"


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class Mailbox(msgspec.Struct, frozen=True, gc=False):
    """One mailbox: its identities and its raw `SmtpClientAuthenticationDisabled` value.

    `setting` is the raw value (True = SMTP AUTH blocked, False = explicitly allowed, None =
    follow the organisation). `setting_present` is False when the record did not carry the
    property at all, or when no `Get-CASMailbox` record was found for the mailbox: that is
    unknown, which is not the same as null.

    `match_keys` holds every identity the allowlist may name, lower-cased, computed once when
    the snapshot is read so that evaluation stays a set look-up per mailbox; `key` is the
    mailbox's stable identifier (see below).

    Frozen like the dataclasses here, but a msgspec Struct: a snapshot builds one per mailbox,
    a million of them, and a Struct is built in C (a frozen dataclass sets each field through
    object.__setattr__, which cost more than decoding the records). It holds only strings,
    tuples of strings and booleans, so the cyclic collector does not track it.
    """

    guid: str | None
    external_directory_object_id: str | None
    primary_smtp_address: str | None
    user_principal_name: str | None
    alias: str | None
    name: str | None
    identity: str | None
    sam_account_name: str | None
    recipient_type_details: str | None
    email_addresses: tuple[str, ...]
    setting: bool | None
    setting_present: bool
    match_keys: tuple[str, ...]
    # The most stable identifier, lower-cased: Guid, then directory id, then address, UPN,
    # identity, name, alias. Computed once when the snapshot is read.
    key: str

    @property
    def display(self) -> str:
        """A human label: the address people recognise first."""
        return (
            self.primary_smtp_address
            or self.user_principal_name
            or self.identity
            or self.name
            or self.alias
            or self.guid
            or self.external_directory_object_id
            or "?"
        )


@dataclass(frozen=True, slots=True)
class CollectionError:
    """A part of the collection that failed; `source` names the cmdlet or evidence."""

    source: str
    message: str


@dataclass(frozen=True, slots=True)
class Screened:
    """Which mailboxes of one exact `mailboxes` tuple failed `core.screen.clean` when they
    were built (positions in it): the screen then looks at those only. Tied to the tuple by
    identity, so a snapshot whose mailboxes were replaced is screened whole again."""

    mailboxes: tuple[Mailbox, ...]
    unclean: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One collection of evidence (`smtp-auth-snapshot/1`), typed.

    `org_disabled` is None when the organisation setting was not collected. `mailboxes` is None
    when the per-mailbox settings were not collected: then nothing may be concluded about any
    mailbox. `directory_collected` says whether `Get-Mailbox` data (UPN, type, proxy addresses)
    was available for matching.
    """

    tenant: str
    collected_at: datetime
    org_disabled: bool | None
    mailboxes: tuple[Mailbox, ...] | None
    directory_collected: bool
    errors: tuple[CollectionError, ...] = ()
    source: str = ""
    # Set by the join, which checks every mailbox as it is built (during paging, for the
    # nightly audit): what `core.screen.screen` need not check again.
    screened: Screened | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AllowlistEntry:
    """One allowlisted identity, with the metadata an auditor asks for (CSV allowlists)."""

    identity: str
    source: str
    line: int
    owner: str | None = None
    reason: str | None = None
    ticket: str | None = None
    expires: date | None = None

    @property
    def key(self) -> str:
        return normalise_identity(self.identity)

    def is_current(self, today: date) -> bool:
        """Valid through the whole UTC day of `expires`."""
        return self.expires is None or today <= self.expires

    @property
    def where(self) -> str:
        """`file:line` with the file's name only: reasons, alerts and reports travel to other
        people and machines, where a local absolute path means nothing (and tells too much)."""
        name = self.source.replace("\\", "/").rsplit("/", 1)[-1] or self.source
        return f"{name}:{self.line}"


@dataclass(frozen=True, slots=True)
class Allowlist:
    entries: tuple[AllowlistEntry, ...] = ()
    warnings: tuple[str, ...] = ()
    source: str = ""


class Finding(NamedTuple):
    """One judgement. `id` is stable across runs for the same control and subject.

    Immutable like the dataclasses here, but a NamedTuple: a tenant where the organisation
    allows SMTP AUTH yields one finding per mailbox, and a tuple is built several times faster
    than a frozen dataclass (which sets each field through object.__setattr__).
    """

    id: str
    control: str
    status: Status
    severity: Severity
    subject: str
    reason: str
    mailbox: Mailbox | None = None
    effective: Effective | None = None
    via: str | None = None  # "explicit" or "inherited" for enabled mailboxes
    entry: AllowlistEntry | None = None
    org_disabled: bool | None = None
    note: str | None = None  # context that does not change the verdict (mailbox type...)


@dataclass(frozen=True, slots=True)
class MailboxUsage:
    """One mailbox's SMTP AUTH sign-ins in the window (`core.usage`), keyed by `Mailbox.key`."""

    key: str
    successes: int = 0
    failures: int = 0
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_ip: str | None = None
    last_app: str | None = None

    @property
    def used(self) -> bool:
        return self.successes > 0


@dataclass(frozen=True, slots=True)
class Readiness:
    """Who used SMTP AUTH in the sign-in window and what the switch-off would break.

    `state` is the usage evidence's: "collected", "unknown" (then `reason` says why and the
    counts are not known) or "off" (USAGE_EVIDENCE is false)."""

    state: str
    reason: str = ""
    lookback_days: int = 30
    window_start: datetime | None = None
    used: int = 0  # mailboxes with a successful SMTP AUTH sign-in in the window
    used_allowlisted: int = 0
    used_not_allowlisted: int = 0
    break_at_org_switch: int = 0  # used, inheriting and not allowlisted: cut off by the switch
    break_at_revocation: int = 0  # used, explicitly enabled and not allowlisted
    stale_exceptions: int = 0  # allowlisted and enabled, but no use in the window
    failures_only: int = 0  # mailboxes with failed SMTP AUTH sign-ins and no success
    unmatched_signins: int = 0  # successful or failed sign-ins of no known mailbox
    # Mailbox key -> its use, for mailboxes with a successful sign-in in the window: what a
    # revocation would break (remediation.plan annotates its targets with it).
    mailboxes: Mapping[str, MailboxUsage] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The findings of one snapshot against one allowlist on one day."""

    tenant: str
    evaluated_at: datetime
    snapshot_collected_at: datetime
    org_disabled: bool | None
    findings: tuple[Finding, ...]
    counts: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    readiness: Readiness | None = None  # None: evaluated without usage evidence (off)

    def exit_code(self) -> int:
        """0 compliant, 1 any fail, 3 no fail but some evidence unknown (README, contracts)."""
        statuses = {f.status for f in self.findings}
        if Status.FAIL in statuses:
            return 1
        if Status.UNKNOWN in statuses:
            return 3
        return 0


def normalise_identity(value: str) -> str:
    """Case-insensitive form of an identity; GUIDs lose their braces, addresses their prefix."""
    text = value.strip().lower()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("smtp:"):
        text = text[5:]
    return text


class PriorFinding(NamedTuple):
    """A finding as a previous run recorded it: enough to tell new, persisting and resolved.

    A NamedTuple, as `Finding` is: the alert baseline builds one per open finding (90,000
    when the organisation allows SMTP AUTH), several times faster than a frozen dataclass."""

    id: str
    control: str
    status: Status
    subject: str


@dataclass(frozen=True, slots=True)
class PreviousRun:
    """What the last recorded run saw, for deciding what changed (alerts, lifecycle).

    `complete` is False when that run's collection failed or was cut short: its absence of a
    finding then proves nothing, so nothing may be called resolved against it.
    """

    run_id: str
    evaluated_at: datetime
    org_disabled: bool | None
    complete: bool
    findings: Mapping[str, PriorFinding]
