"""Generate a realistic synthetic tenant (raw Exchange records) from a seed.

Used by the Exchange emulator, the demo and the benchmarks. The mix follows what real tenants
show: mostly user mailboxes, some shared, room and equipment mailboxes; most inherit (`null`),
a few are explicitly enabled (`false`) or disabled (`true`); some have a UPN that differs from
the primary address and secondary proxy addresses.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["Tenant", "generate_tenant"]

_FIRST = ("alex", "sam", "kim", "lee", "pat", "max", "ana", "jo", "eva", "noah", "mia", "li")
_LAST = ("smith", "jones", "khan", "garcia", "nguyen", "brown", "silva", "kowalski", "murphy")
_TYPES = (
    ("UserMailbox", 0.86),
    ("SharedMailbox", 0.09),
    ("RoomMailbox", 0.03),
    ("EquipmentMailbox", 0.02),
)


@dataclass
class Tenant:
    """Raw records keyed by Guid, plus the organisation switch."""

    domain: str
    org_disabled: bool
    cas: dict[str, dict[str, Any]]
    mailboxes: dict[str, dict[str, Any]]


def _pick_type(rng: random.Random) -> str:
    roll = rng.random()
    for name, share in _TYPES:
        if roll < share:
            return name
        roll -= share
    return "UserMailbox"


def generate_tenant(
    count: int,
    *,
    seed: int = 1,
    domain: str = "contoso.onmicrosoft.com",
    vanity: str = "contoso.com",
    org_disabled: bool = False,
    explicit_enabled: float = 0.02,
    explicit_disabled: float = 0.10,
) -> Tenant:
    """`count` mailboxes; shares of explicit `false` and `true`, the rest inherit (`null`)."""
    rng = random.Random(seed)
    cas: dict[str, dict[str, Any]] = {}
    mailboxes: dict[str, dict[str, Any]] = {}
    for index in range(count):
        guid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        edoid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        kind = _pick_type(rng)
        if kind == "UserMailbox":
            alias = f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}{index}"
        elif kind == "SharedMailbox":
            alias = f"shared-{rng.choice(('finance', 'hr', 'sales', 'it', 'info'))}{index}"
        elif kind == "RoomMailbox":
            alias = f"room-{index}"
        else:
            alias = f"equipment-{index}"
        primary = f"{alias}@{vanity}"
        # One in ten users signs in with a UPN that differs from the primary address.
        upn = f"{alias}@{domain}" if kind != "UserMailbox" or index % 10 == 3 else primary
        addresses = [f"SMTP:{primary}", f"smtp:{alias}@{domain}"]
        if index % 7 == 0:
            addresses.append(f"smtp:{alias.split('.')[0]}{index}@{vanity}")
        roll = rng.random()
        setting: bool | None
        if roll < explicit_enabled:
            setting = False
        elif roll < explicit_enabled + explicit_disabled:
            setting = True
        else:
            setting = None
        cas[guid] = {
            "Guid": guid,
            "ExternalDirectoryObjectId": edoid,
            "Identity": alias,
            "Name": alias,
            "PrimarySmtpAddress": primary,
            "SmtpClientAuthenticationDisabled": setting,
        }
        mailboxes[guid] = {
            "Guid": guid,
            "ExternalDirectoryObjectId": edoid,
            "UserPrincipalName": upn,
            "Alias": alias,
            "Name": alias,
            "Identity": alias,
            "PrimarySmtpAddress": primary,
            "RecipientTypeDetails": kind,
            "EmailAddresses": addresses,
        }
    return Tenant(domain=domain, org_disabled=org_disabled, cas=cas, mailboxes=mailboxes)
