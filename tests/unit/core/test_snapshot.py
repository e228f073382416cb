"""Snapshot reading: PowerShell quirks accepted, three states kept apart, garbage refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditor.core.errors import InputError
from auditor.core.snapshot import build_snapshot, parse_snapshot, read_snapshot
from tests.support.builders import MISSING, cas, document, mbx


def parse(doc: Any, prefix: bytes = b"") -> Any:
    return parse_snapshot(prefix + json.dumps(doc).encode(), source="snap.json")


def test_three_states_and_missing_property() -> None:
    snap = parse(document(cas_records=[cas(1, True), cas(2, False), cas(3, None), cas(4, MISSING)]))
    assert snap.mailboxes is not None
    values = [(m.setting, m.setting_present) for m in snap.mailboxes]
    assert values == [(True, True), (False, True), (None, True), (None, False)]


def test_powershell_quirks_bom_single_object_annotations_case() -> None:
    record = cas(1, None)
    record["Guid@odata.type"] = "#Guid"
    record["smtpclientauthenticationdisabled@data.type"] = "System.Boolean"
    record["ActiveSyncEnabled"] = True
    record["primarysmtpaddress"] = record.pop("PrimarySmtpAddress")
    doc = document(cas_records=None)
    doc["cas_mailboxes"] = record  # a single object, not a list
    doc["mailboxes"] = mbx(1)
    snap = parse(doc, prefix=b"\xef\xbb\xbf")
    assert snap.mailboxes is not None and len(snap.mailboxes) == 1
    mailbox = snap.mailboxes[0]
    assert mailbox.primary_smtp_address == "user1@contoso.com"
    assert mailbox.user_principal_name == "u1@contoso.onmicrosoft.com"
    assert mailbox.recipient_type_details == "UserMailbox"
    assert (mailbox.setting, mailbox.setting_present) == (None, True)
    assert "alias1@contoso.net" in mailbox.match_keys
    assert not any(k.startswith("/o=") for k in mailbox.match_keys)


def test_join_on_guid_then_directory_id() -> None:
    by_edoid = mbx(2, "SharedMailbox")
    del by_edoid["Guid"]
    snap = parse(
        document(
            cas_records=[cas(1, True), cas(2, False)], mailboxes=[mbx(1, "RoomMailbox"), by_edoid]
        )
    )
    assert snap.mailboxes is not None
    types = {m.guid: m.recipient_type_details for m in snap.mailboxes}
    assert types == {
        "00000000-0000-4000-8000-000000000001": "RoomMailbox",
        "00000000-0000-4000-8000-000000000002": "SharedMailbox",
    }


def test_transport_config_states() -> None:
    assert parse(document(org=True)).org_disabled is True
    assert parse(document(org=False)).org_disabled is False
    assert parse(document(org=MISSING)).org_disabled is None
    doc = document()
    doc["transport_config"] = [{"SmtpClientAuthenticationDisabled": True}]
    assert parse(doc).org_disabled is True


def test_not_collected_parts_stay_none() -> None:
    snap = parse(document(cas_records=None, mailboxes=None))
    assert snap.mailboxes is None and snap.directory_collected is False


@pytest.mark.parametrize(
    ("mutate", "where", "message"),
    [
        (lambda d: d.update(schema="smtp-auth-snapshot/2"), "snap.json", "schema"),
        (lambda d: d.update(tenant=""), "snap.json", "tenant"),
        (lambda d: d.update(collected_at="yesterday"), "snap.json: collected_at", "ISO 8601"),
        (
            lambda d: d["cas_mailboxes"].append({"SmtpClientAuthenticationDisabled": False}),
            "snap.json: cas_mailboxes[1]",
            "no identifier",
        ),
        (
            lambda d: d["cas_mailboxes"].append(cas(9, "True")),
            "snap.json: cas_mailboxes[1]",
            "must be true, false or null",
        ),
        (
            lambda d: d["cas_mailboxes"].append(42),
            "snap.json: cas_mailboxes[1]",
            "not a JSON object",
        ),
        (lambda d: d["cas_mailboxes"].append(cas(0)), "snap.json: cas_mailboxes[1]", "duplicate"),
        (
            lambda d: d.update(transport_config={"SmtpClientAuthenticationDisabled": "yes"}),
            "snap.json: transport_config.SmtpClientAuthenticationDisabled",
            "true or false",
        ),
    ],
)
def test_garbage_is_refused_naming_file_and_record(mutate: Any, where: str, message: str) -> None:
    doc = document(cas_records=[cas(0, True)])
    mutate(doc)
    with pytest.raises(InputError) as info:
        parse(doc)
    assert info.value.where == where
    assert message in info.value.detail


def test_not_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "schema": "smtp-auth-snapshot/1",\n  oops\n}')
    with pytest.raises(InputError) as info:
        read_snapshot(path)
    assert info.value.where == f"{path}:3"
    with pytest.raises(InputError, match="x:1: not a JSON object"):
        parse_snapshot(b"[1, 2]", source="x")
    with pytest.raises(InputError, match="schema is None"):
        parse_snapshot(b'{"cas_mailboxes": []}', source="x")
    with pytest.raises(InputError, match="extra data"):
        parse_snapshot(json.dumps(document()).encode() + b" {}", source="x")


def test_garbage_inside_a_streamed_record_names_record_and_line() -> None:
    text = json.dumps(document(cas_records=[cas(1, True)]), indent=1)
    text = text.replace('"Name": "user1"', '"Name": user1')
    with pytest.raises(InputError) as info:
        parse_snapshot(text.encode(), source="s.json")
    assert "(cas_mailboxes[0])" in info.value.where
    assert info.value.where.startswith("s.json:")


def test_streaming_across_chunk_boundaries_matches_in_memory_reading(tmp_path: Path) -> None:
    # Several MiB so that records, strings and numbers straddle the 1 MiB read chunks.
    records = [cas(n, [True, False, None][n % 3], Padding="x" * (n % 977)) for n in range(6000)]
    doc = document(org=False, cas_records=records, mailboxes=[mbx(n) for n in range(0, 6000, 2)])
    doc["big_number"] = 12345678901234567890
    path = tmp_path / "big.json"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8-sig")
    assert path.stat().st_size > 3 * 2**20
    streamed = read_snapshot(path)
    in_memory = build_snapshot(doc)
    assert streamed.mailboxes == in_memory.mailboxes
    assert streamed.mailboxes is not None and len(streamed.mailboxes) == 6000
    assert streamed.mailboxes[2].recipient_type_details == "UserMailbox"
    assert streamed.mailboxes[3].recipient_type_details is None


def test_utf16_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "ps.json"
    path.write_text(json.dumps(document(cas_records=[cas(1, None)])), encoding="utf-16")
    snap = read_snapshot(path)
    assert snap.mailboxes is not None and snap.mailboxes[0].setting_present


def test_identity_serialised_as_an_object_is_ignored_not_fatal() -> None:
    # Some PowerShell exports write Identity as an object (ADObjectId); it is not an identity
    # the allowlist can name, but the mailbox must still be read.
    record = cas(1, False, Identity={"Name": "user1", "DistinguishedName": "CN=user1"})
    snap = parse(document(cas_records=[record]))
    assert snap.mailboxes is not None
    mailbox = snap.mailboxes[0]
    assert mailbox.identity is None and mailbox.name == "user1"
    assert (mailbox.setting, mailbox.setting_present) == (False, True)


def test_typed_runs_and_tolerant_path_read_the_same(tmp_path: Path) -> None:
    # Long listings are decoded a run of records at a time (typed); a run holding a record
    # the typed decode cannot take (names in another case, no Guid, a number where a string
    # belongs) is read record by record instead. Both must give the very same mailboxes.
    cas_records = [cas(n, [True, False, None][n % 3]) for n in range(5000)]
    directory = [mbx(n, ["UserMailbox", "SharedMailbox"][n % 2]) for n in range(5000)]
    for n in range(0, 5000, 97):
        cas_records[n]["Identity"] = {"Name": f"user{n}", "DistinguishedName": f"CN=user{n}"}
    directory[3]["userprincipalname"] = directory[3].pop("UserPrincipalName")  # a first run
    for n in range(5, 5000, 733):
        del directory[n]["Guid"]  # joined on the directory id
    directory[7]["EmailAddresses"] = "SMTP:single7@contoso.com"  # one string, not a list
    doc = document(org=False, cas_records=cas_records, mailboxes=directory)
    compact = json.dumps(doc, separators=(",", ":")).encode()
    streamed = parse_snapshot(compact, source="s.json")
    assert streamed.mailboxes == build_snapshot(doc).mailboxes  # record by record, in memory
    assert streamed.mailboxes is not None and len(streamed.mailboxes) == 5000
    by_guid = {m.guid: m for m in streamed.mailboxes}
    third = by_guid["00000000-0000-4000-8000-000000000003"]
    assert third.user_principal_name == "u3@contoso.onmicrosoft.com"
    assert "u3@contoso.onmicrosoft.com" in third.match_keys
    assert by_guid["00000000-0000-4000-8000-000000000097"].identity is None
    assert by_guid["00000000-0000-4000-8000-000000000005"].recipient_type_details == "SharedMailbox"
    assert by_guid["00000000-0000-4000-8000-000000000007"].email_addresses == (
        "single7@contoso.com",
    )
    camel = [{k[0].lower() + k[1:]: v for k, v in record.items()} for record in cas_records]
    camel_doc = document(org=False, cas_records=camel, mailboxes=directory)
    camel_read = parse_snapshot(json.dumps(camel_doc).encode(), source="s.json")
    assert camel_read.mailboxes == streamed.mailboxes
    bad = json.loads(compact)
    bad["mailboxes"][4321]["Alias"] = 12
    with pytest.raises(InputError) as info:
        parse_snapshot(json.dumps(bad, separators=(",", ":")).encode(), source="s.json")
    assert info.value.where.endswith("mailboxes[4321]")
    assert "alias must be a string" in info.value.detail
