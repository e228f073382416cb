"""Settings: defaults, validation naming the setting, secrets kept out of repr."""

from __future__ import annotations

import pytest

from auditor.app.settings import SETTINGS, Settings
from auditor.core.errors import ConfigError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.exo_base_url == "https://outlook.office365.com"
    assert settings.graph_base_url == "https://graph.microsoft.com"
    assert settings.audit_schedule == "0 0 2 * * *"
    assert settings.expiring_days == 14
    assert settings.email_to == ()
    assert settings.remediation_verify_seconds == 120


@pytest.mark.parametrize(
    "tenant",
    [
        "contoso.onmicrosoft.com",
        "Contoso-EU.onmicrosoft.com",
        "fabrikam.onmicrosoft.us",
        "11111111-2222-3333-4444-555555555555",
    ],
)
def test_exo_tenant_accepts_a_guid_or_native_domain(tenant: str) -> None:
    assert Settings.from_env({"EXO_TENANT": tenant}).exo_tenant == tenant


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("EXO_BASE_URL", "outlook.office365.com", "http(s) URL"),
        ("AUDITOR_EXPIRING_DAYS", "two weeks", "whole number"),
        ("AUDITOR_EXPIRING_DAYS", "400", "between 0 and 365"),
        ("AUDIT_SCHEDULE", "0 2 * * *", "six fields"),
        ("ALERT_EMAIL_TO", "secops@contoso.com, nobody", "not an email address"),
        ("EXO_TENANT", "contoso.onmicrosoft.com/extra", "tenant GUID or domain"),
        ("EXO_TENANT", "contoso.com", "*.onmicrosoft.com"),
        ("EXO_TENANT", "https://outlook.office365.com", "tenant GUID or domain"),
        ("EXO_TENANT", "1111-2222", "tenant GUID or domain"),
        ("REMEDIATION_VERIFY_SECONDS", "soon", "whole number"),
        (
            "ALERT_TEAMS_WEBHOOK_URL",
            "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/teams/)",
            "unresolved Key Vault reference",
        ),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert info.value.where == name
    assert message in info.value.detail


def test_secrets_never_in_repr() -> None:
    secrets = {s.name: f"secret-{s.name.lower()}" for s in SETTINGS if s.secret}
    secrets["ALERT_TEAMS_WEBHOOK_URL"] = "https://prod.example/workflows/sig=abc123"
    secrets["AUDITOR_STORAGE"] = "DefaultEndpointsProtocol=https;AccountKey=topsecret;"
    env = {
        k: v
        for k, v in secrets.items()
        if k
        in {"EXO_ACCESS_TOKEN", "GRAPH_ACCESS_TOKEN", "ALERT_TEAMS_WEBHOOK_URL", "AUDITOR_STORAGE"}
    }
    text = repr(Settings.from_env(env))
    for value in env.values():
        assert value not in text


def test_shard_settings_default_to_one_chain_three_at_a_time() -> None:
    settings = Settings.from_env({})
    assert (settings.exo_shards, settings.exo_max_parallel) == (1, 3)
    settings = Settings.from_env({"EXO_SHARDS": "4", "EXO_MAX_PARALLEL": "2"})
    assert (settings.exo_shards, settings.exo_max_parallel) == (4, 2)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("EXO_SHARDS", "0", "between 1 and 16, got 0"),
        ("EXO_SHARDS", "17", "between 1 and 16, got 17"),
        ("EXO_SHARDS", "three", "whole number, got 'three'"),
        ("EXO_MAX_PARALLEL", "0", "between 1 and 16, got 0"),
        ("EXO_MAX_PARALLEL", "2.5", "whole number"),
    ],
)
def test_shard_settings_are_validated(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)
