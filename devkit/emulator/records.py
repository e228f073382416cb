"""What the emulated Exchange returns for one object: full records, projections, annotations.

The tenant state keeps compact records (the properties the generator or a JSON file gave). A
response without `$select` carries the full set of properties a real `Get-CASMailbox`,
`Get-Mailbox` or `Get-TransportConfig` object has, derived deterministically from the record,
so that an unprojected response weighs what a real one does. Stored properties always win over
derived ones.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "annotate",
    "backend_server",
    "exchange_object_id",
    "proxy_addresses",
    "full_cas",
    "full_mailbox",
    "full_transport_config",
    "project",
    "CAS_SETTABLE",
]

_GUID_PROPS = frozenset({"Guid", "ExchangeObjectId", "ExternalDirectoryObjectId"})
_TIME_PROPS = frozenset({"WhenChanged", "WhenCreated", "WhenChangedUTC", "WhenCreatedUTC"})

# Set-CASMailbox parameters the emulator accepts, with whether $null is a valid value.
CAS_SETTABLE: dict[str, bool] = {
    "SmtpClientAuthenticationDisabled": True,
    "ActiveSyncEnabled": False,
    "OWAEnabled": False,
    "PopEnabled": False,
    "ImapEnabled": False,
    "MAPIEnabled": False,
    "EwsEnabled": True,
    "OutlookMobileEnabled": False,
    "UniversalOutlookEnabled": False,
}


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


def _when(moment: datetime, ticks: int) -> str:
    """A System.DateTime as Exchange serialises it: seven fractional digits and `Z`."""
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{ticks % 10_000_000:07d}Z"


def _times(key: str) -> tuple[str, str]:
    digest = _digest(key)
    start = datetime(2019, 1, 1, tzinfo=UTC)
    created = start + timedelta(seconds=int.from_bytes(digest[:4]) % 150_000_000)
    changed = created + timedelta(seconds=int.from_bytes(digest[4:8]) % 30_000_000)
    return _when(created, int.from_bytes(digest[8:12])), _when(changed, int.from_bytes(digest[12:]))


def exchange_object_id(guid: str) -> str:
    """`ExchangeObjectId` is its own GUID, not the object's `Guid`."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"exo:{guid}"))


def backend_server(key: str) -> str:
    digest = _digest(key)
    return f"AM{digest[8] % 9}PR0{digest[9] % 9}MB{int.from_bytes(digest[10:12]):04d}"


def proxy_addresses(addresses: Any, guid: str, tenant_id: str) -> Any:
    """Proxy addresses as Get-Mailbox shows them: the SMTP ones plus `SIP:` (the primary
    address) and `SPO:SPO_<guid>@SPO_<tenant id>`, unless the record already has them."""
    if not isinstance(addresses, list):
        return addresses
    prefixes = {a.split(":", 1)[0].upper() for a in addresses if isinstance(a, str)}
    out = list(addresses)
    primary = next((a[5:] for a in addresses if isinstance(a, str) and a.startswith("SMTP:")), None)
    if "SPO" not in prefixes:
        out.insert(0, f"SPO:SPO_{uuid.uuid5(uuid.NAMESPACE_URL, guid)}@SPO_{tenant_id}")
    if "SIP" not in prefixes and primary:
        out.insert(1, f"SIP:{primary.lower()}")
    return out


def full_cas(record: Mapping[str, Any], domain: str) -> dict[str, Any]:
    """The ~70 properties of a Get-CASMailbox object, stored values overriding derived ones."""
    guid = str(record.get("Guid") or "")
    alias = str(record.get("Identity") or record.get("Name") or guid[:8])
    primary = str(record.get("PrimarySmtpAddress") or f"{alias}@{domain}")
    created, changed = _times(guid)
    digest = _digest(guid)
    server = backend_server(guid)
    org = f"{domain.split('.')[0].upper()}.onmicrosoft.com"
    dn = (
        f"CN={alias},OU={domain},OU=Microsoft Exchange Hosted Organizations,"
        "DC=EURPR01A001,DC=PROD,DC=OUTLOOK,DC=COM"
    )
    admin_group = "/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)"
    out: dict[str, Any] = {
        "Identity": alias,
        "Name": alias,
        "DisplayName": alias.replace(".", " ").title(),
        "Guid": guid,
        "ExternalDirectoryObjectId": record.get("ExternalDirectoryObjectId"),
        "ExchangeObjectId": exchange_object_id(guid),
        "PrimarySmtpAddress": primary,
        "SamAccountName": f"$R{int.from_bytes(digest[:3]):06X}-{alias[:10]}",
        "ServerLegacyDN": f"{admin_group}/cn=Configuration/cn=Servers/cn={server}",
        "ServerName": server.lower(),
        "LegacyExchangeDN": f"{admin_group}/cn=Recipients/cn={guid.replace('-', '')}-{alias[:10]}",
        "EmailAddresses": [f"SMTP:{primary}", f"smtp:{alias}@{domain}"],
        "LinkedMasterAccount": None,
        "ActiveSyncAllowedDeviceIDs": [],
        "ActiveSyncBlockedDeviceIDs": [],
        "ActiveSyncMailboxPolicy": "Default",
        "ActiveSyncMailboxPolicyIsDefaulted": True,
        "ActiveSyncDebugLogging": False,
        "ActiveSyncEnabled": True,
        "HasActiveSyncDevicePartnership": bool(digest[12] % 3 == 0),
        "ActiveSyncSuppressReadReceipt": False,
        "OwaMailboxPolicy": "OwaMailboxPolicy-Default",
        "OWAEnabled": True,
        "OWAforDevicesEnabled": True,
        "IsOptimizedForAccessibility": False,
        "ECPEnabled": True,
        "EmwsEnabled": True,
        "PopEnabled": True,
        "PopUseProtocolDefaults": True,
        "PopMessagesRetrievalMimeFormat": "BestBodyFormat",
        "PopEnableExactRFC822Size": False,
        "PopProtocolLoggingEnabled": False,
        "PopMessageDeleteEnabled": True,
        "PopSuppressReadReceipt": False,
        "PopForceICalForCalendarRetrievalOption": False,
        "ImapEnabled": True,
        "ImapUseProtocolDefaults": True,
        "ImapMessagesRetrievalMimeFormat": "BestBodyFormat",
        "ImapEnableExactRFC822Size": False,
        "ImapProtocolLoggingEnabled": False,
        "ImapSuppressReadReceipt": False,
        "ImapForceICalForCalendarRetrievalOption": False,
        "MAPIEnabled": True,
        "MapiHttpEnabled": None,
        "UniversalOutlookEnabled": True,
        "OutlookMobileEnabled": True,
        "MacOutlookEnabled": True,
        "MAPIBlockOutlookNonCachedMode": False,
        "MAPIBlockOutlookVersions": None,
        "MAPIBlockOutlookRpcHttp": False,
        "MAPIBlockOutlookExternalConnectivity": False,
        "EwsEnabled": None,
        "EwsAllowOutlook": None,
        "EwsAllowMacOutlook": None,
        "EwsAllowEntourage": None,
        "EwsApplicationAccessPolicy": None,
        "EwsAllowList": None,
        "EwsBlockList": None,
        "OneWinNativeOutlookEnabled": None,
        "ShowGalAsDefaultView": True,
        "SmtpClientAuthenticationDisabled": None,
        "PublicFolderClientAccess": False,
        "ResetAutoBlockedDevices": False,
        "IsValid": True,
        "ObjectState": "Unchanged",
        "DistinguishedName": dn,
        "Id": alias,
        "OrganizationId": (
            f"EURPR01A001.prod.outlook.com/Microsoft Exchange Hosted Organizations/{org} - "
            f"EURPR01A001.prod.outlook.com/ConfigurationUnits/{org}/Configuration"
        ),
        "OriginatingServer": f"{server}.EURPR01A001.prod.outlook.com",
        "ExchangeVersion": "0.20 (15.0.0.0)",
        "WhenChanged": changed,
        "WhenCreated": created,
        "WhenChangedUTC": changed,
        "WhenCreatedUTC": created,
    }
    out.update(record)
    return out


def full_mailbox(record: Mapping[str, Any], domain: str) -> dict[str, Any]:
    """A Get-Mailbox object: the directory properties plus the usual quota and feature fields."""
    guid = str(record.get("Guid") or "")
    alias = str(record.get("Alias") or record.get("Name") or guid[:8])
    created, changed = _times("mbx" + guid)
    kind = str(record.get("RecipientTypeDetails") or "UserMailbox")
    out: dict[str, Any] = {
        "Identity": alias,
        "Name": alias,
        "Alias": alias,
        "DisplayName": alias.replace(".", " ").title(),
        "Guid": guid,
        "ExchangeObjectId": exchange_object_id(guid),
        "ExternalDirectoryObjectId": record.get("ExternalDirectoryObjectId"),
        "UserPrincipalName": f"{alias}@{domain}",
        "PrimarySmtpAddress": f"{alias}@{domain}",
        "RecipientType": "UserMailbox",
        "RecipientTypeDetails": kind,
        "EmailAddresses": [f"SMTP:{alias}@{domain}"],
        "IsMailboxEnabled": True,
        "IsShared": kind == "SharedMailbox",
        "IsResource": kind in ("RoomMailbox", "EquipmentMailbox"),
        "HiddenFromAddressListsEnabled": False,
        "ProhibitSendQuota": "99 GB (106,300,440,576 bytes)",
        "ProhibitSendReceiveQuota": "100 GB (107,374,182,400 bytes)",
        "IssueWarningQuota": "98 GB (105,226,698,752 bytes)",
        "LitigationHoldEnabled": False,
        "RetentionPolicy": "Default MRM Policy",
        "AuditEnabled": True,
        "ForwardingSmtpAddress": None,
        "DeliverToMailboxAndForward": False,
        "UsageLocation": "Ireland",
        "WhenChanged": changed,
        "WhenCreated": created,
        "WhenChangedUTC": changed,
        "WhenCreatedUTC": created,
    }
    out.update(record)
    return out


def full_transport_config(org_disabled: bool) -> dict[str, Any]:
    """The organisation's Get-TransportConfig object."""
    return {
        "Identity": "Transport Settings",
        "Name": "Transport Settings",
        "SmtpClientAuthenticationDisabled": org_disabled,
        "AllowLegacyTLSClients": False,
        "AddressBookPolicyRoutingEnabled": False,
        "ConvertDisclaimerWrapperToEml": False,
        "ExternalDelayDsnEnabled": True,
        "ExternalPostmasterAddress": None,
        "HeaderPromotionModeSetting": "NoCreate",
        "InternalDelayDsnEnabled": True,
        "JournalingReportNdrTo": "<>",
        "MaxDumpsterSizePerDatabase": "18 MB (18,874,368 bytes)",
        "MaxReceiveSize": "36 MB (37,748,736 bytes)",
        "MaxRecipientEnvelopeLimit": "Unlimited",
        "MaxSendSize": "35 MB (36,700,160 bytes)",
        "ReplyAllStormProtectionEnabled": True,
        "Rfc2231EncodingEnabled": False,
        "SmtpReceiveMaxMessageSize": "150 MB (157,286,400 bytes)",
        "TLSReceiveDomainSecureList": [],
        "TLSSendDomainSecureList": [],
        "VoicemailJournalingEnabled": True,
        "IsValid": True,
        "ObjectState": "Unchanged",
    }


def project(record: Mapping[str, Any], select: Iterable[str] | None) -> dict[str, Any]:
    """Keep the `$select`ed properties (matched case-insensitively) that the record has."""
    if select is None:
        return dict(record)
    by_lower = {key.lower(): key for key in record}
    out: dict[str, Any] = {}
    for name in select:
        key = by_lower.get(name.lower())
        if key is not None:
            out[key] = record[key]
    return out


def annotate(record: Mapping[str, Any]) -> dict[str, Any]:
    """Add the OData type annotations Exchange puts before typed values."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in _GUID_PROPS and value is not None:
            out[f"{key}@data.type"] = "System.Guid"
            out[f"{key}@odata.type"] = "#Guid"
        elif key in _TIME_PROPS and value is not None:
            out[f"{key}@data.type"] = "System.DateTime"
            out[f"{key}@odata.type"] = "#DateTimeOffset"
        elif isinstance(value, list):
            out[f"{key}@odata.type"] = "#Collection(String)"
        out[key] = value
    return out
