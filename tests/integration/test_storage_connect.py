"""`AUDITOR_STORAGE` through the one connection rule (`auditor.storage.connect`), on Azurite."""

from __future__ import annotations

import pytest
from azure.core.credentials import AzureNamedKeyCredential

from auditor.app.settings import Settings
from auditor.app.wiring import store_from_settings
from auditor.core.errors import ConfigError
from auditor.storage.connect import connect


def test_connection_string_reaches_azurite(azurite: str) -> None:
    table = connect(azurite).create_table_if_not_exists("connectcheck")
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "value": 42})
    assert table.get_entity("p", "r")["value"] == 42


def test_store_from_settings_uses_the_same_rule(azurite: str) -> None:
    store = store_from_settings(Settings.from_env({"AUDITOR_STORAGE": azurite}))
    store.ensure_tables()
    assert store.runs() == []


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "is required"),
        ("not a connection string", "must be a connection string or a table endpoint URL"),
        ("AccountName=x;Nothing=here", "not a valid connection string"),
    ],
)
def test_bad_values_name_the_setting(value: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        connect(value)
    assert caught.value.where == "AUDITOR_STORAGE"
    assert words in str(caught.value)


def test_a_table_endpoint_url_needs_a_credential() -> None:
    with pytest.raises(ConfigError, match="needs a credential"):
        connect("https://account.table.core.windows.net")
    made: list[AzureNamedKeyCredential] = []

    def factory() -> AzureNamedKeyCredential:
        made.append(AzureNamedKeyCredential("account", "a2V5"))
        return made[-1]

    client = connect("https://account.table.core.windows.net/", credential=factory)
    assert len(made) == 1 and client.url.startswith("https://account.table.core.windows.net")
