"""The deployment in infra/ has the security-relevant shape it claims, checked offline.

Every .bicep file is parsed with pycep-parser (no Azure, no bicep CLI). The tests read the parsed
documents: identity type, role definition GUIDs and their scopes, storage hardening, Key Vault
mode, no deprecated Flex Consumption app settings, and that the settings documented in the README,
declared in `auditor.config.SETTINGS` and set in infra/main.bicep are one and the same set.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from auditor.app.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Azure built-in role definition ids (identical in every tenant).
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"

EXCHANGE_ONLINE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
EXCHANGE_MANAGE_AS_APP = "dc50a0fb-09a3-484d-be87-e023b12c6440"
MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
AUDIT_LOG_READ_ALL = "b0afded3-3588-46d8-8b3d-9842eff778da"
DIRECTORY_READ_ALL = "7ab1d382-f21e-4acd-a863-ba3e13f7da61"

# App settings that Flex Consumption removed or replaced (runtime, deployment and scale moved to
# functionAppConfig; Azure Files content share does not exist). From the Flex Consumption
# "deprecated properties and settings" list and the azure-cli flex-migration exclusion list.
FLEX_DEPRECATED_SETTINGS = frozenset(
    {
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "FUNCTIONS_MAX_HTTP_CONCURRENCY",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTOVERVNET",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_DNS_SERVER",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
        "WEBSITE_VNET_ROUTE_ALL",
        "WEBSITE_TIME_ZONE",
        "AzureWebJobsDashboard",
        "APPINSIGHTS_INSTRUMENTATIONKEY",
    }
)

# Platform settings main.bicep sets besides the auditor's own: identity-based host storage and
# Entra-authenticated telemetry. Anything else in the app settings must be in config.SETTINGS.
PLATFORM_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__tableServiceUri",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    }
)


# --- reading parsed Bicep -----------------------------------------------------------------------


@cache
def parsed(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = BicepParser().parse(file_path=path)
    return doc


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's own properties, unwrapping `= if (...) {...}` and `[for ...: {...}]`."""
    config: dict[str, Any] = resource["config"]
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def render(expr: Any) -> str:
    """Bicep-like text of a parsed expression (property chains, calls), for assertions."""
    if isinstance(expr, dict) and "operator" in expr:
        op = expr["operator"]
        operands = op["operands"]
        if op["type"] == "property_accessor":
            return f"{render(operands['operand_1'])}.{render(operands['operand_2'])}"
        return f"{op['type']}(" + ", ".join(render(v) for v in operands.values()) + ")"
    if isinstance(expr, dict) and "function" in expr:
        fn = expr["function"]
        args = ", ".join(render(v) for v in fn["parameters"].values() if v is not None)
        return f"{fn['type']}({args})"
    return str(expr)


def resources(doc: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {
        name: body(res)
        for name, res in doc.get("resources", {}).items()
        if res["type"] == type_ and not res.get("existing")
    }


def variable(doc: dict[str, Any], name: str) -> Any:
    return doc.get("variables", {}).get(name, {}).get("value", name)


def one(doc: dict[str, Any], type_: str) -> tuple[str, dict[str, Any]]:
    found = resources(doc, type_)
    assert len(found) == 1, f"expected one {type_} in main.bicep, found {sorted(found)}"
    return next(iter(found.items()))


def app_settings() -> dict[str, Any]:
    doc = parsed(MAIN)
    configs = {
        name: res
        for name, res in resources(doc, "Microsoft.Web/sites/config").items()
        if res.get("name") == "appsettings"
    }
    assert len(configs) == 1, "main.bicep needs exactly one sites/config 'appsettings' resource"
    settings: dict[str, Any] = next(iter(configs.values()))["properties"]
    return settings


def readme_settings() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Settings\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has no '## Settings' section"
    return re.findall(r"^\| `([A-Za-z0-9_]+)` \|", match.group(1), flags=re.M)


# --- every file parses ----------------------------------------------------------------------------


def test_infra_has_bicep_files() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in BICEP_FILES}
    assert {"main.bicep", "graph/exchange-grant.bicep", "graph/approver-app.bicep"} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_file_parses(path: Path) -> None:
    doc = parsed(path)
    assert doc.get("resources"), f"{path.name} parsed to no resources"


def test_parser_rejects_broken_bicep() -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - lark raises several error types
        BicepParser().parse(text="resource x 'A/b@2020-01-01' = {\n  name: \n")


# --- Function App on Flex Consumption -------------------------------------------------------------


def test_flex_consumption_plan() -> None:
    _, plan = one(parsed(MAIN), "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True


def test_function_app_is_linux_python_311_with_system_identity() -> None:
    _, site = one(parsed(MAIN), "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert site["identity"] == {"type": "SystemAssigned"}
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["siteConfig"]["ftpsState"] == "Disabled"
    assert "appSettings" not in props["siteConfig"], "app settings belong in sites/config"
    assert "linuxFxVersion" not in props["siteConfig"], "Flex sets the runtime in functionAppConfig"
    flex = props["functionAppConfig"]
    assert flex["runtime"] == {"name": "python", "version": "3.11"}
    storage = flex["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {"type": "SystemAssignedIdentity"}


def test_basic_publishing_credentials_are_off() -> None:
    policies = resources(parsed(MAIN), "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {p["name"]: p["properties"]["allow"] for p in policies.values()} == {
        "ftp": False,
        "scm": False,
    }


# --- storage, monitoring, Key Vault ---------------------------------------------------------------


def test_storage_account_is_identity_only_and_tls12() -> None:
    _, storage = one(parsed(MAIN), "Microsoft.Storage/storageAccounts")
    props = storage["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True


def test_storage_holds_deployment_container_and_remediation_queue() -> None:
    doc = parsed(MAIN)
    containers = resources(doc, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert [c["properties"]["publicAccess"] for c in containers.values()] == ["None"]
    assert resources(doc, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert resources(doc, "Microsoft.Storage/storageAccounts/tableServices")


def test_application_insights_local_auth_disabled() -> None:
    _, insights = one(parsed(MAIN), "Microsoft.Insights/components")
    assert insights["properties"]["DisableLocalAuth"] is True
    assert "WorkspaceResourceId" in insights["properties"]
    assert app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"


def test_key_vault_rbac_mode_with_purge_protection() -> None:
    _, vault = one(parsed(MAIN), "Microsoft.KeyVault/vaults")
    props = vault["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enablePurgeProtection"] is True
    assert "accessPolicies" not in props


# --- role assignments -----------------------------------------------------------------------------


def role_assignments(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(role definition GUID, scope resource, principal expression) of every role assignment."""
    found = []
    for name, res in resources(doc, "Microsoft.Authorization/roleAssignments").items():
        role_id = res["properties"]["roleDefinitionId"]
        fn = role_id.get("function", {}) if isinstance(role_id, dict) else {}
        assert fn.get("type") == "subscription_resource_id", f"{name}: use a built-in role id"
        assert fn["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        guid = variable(doc, fn["parameters"]["resource_name_1"])
        assert "scope" in res, f"{name} has no scope: it would apply to the whole resource group"
        found.append((guid, res["scope"], render(res["properties"]["principalId"])))
    return found


def test_function_identity_roles_are_exact_and_scoped() -> None:
    doc = parsed(MAIN)
    granted = {
        (guid, scope)
        for guid, scope, principal in role_assignments(doc)
        if principal == "functionApp.identity.principalId"
    }
    assert granted == {
        (STORAGE_BLOB_DATA_OWNER, "storage"),
        (STORAGE_QUEUE_DATA_CONTRIBUTOR, "storage"),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, "storage"),
        (MONITORING_METRICS_PUBLISHER, "insights"),
        (KEY_VAULT_SECRETS_USER, "vault"),
    }
    _, site = one(doc, "Microsoft.Web/sites")
    assert site["name"] == "appName"
    assert {"storage", "insights", "vault"} <= set(doc["resources"])


def test_no_other_principal_gets_more_than_secrets_officer() -> None:
    others = {
        (guid, scope)
        for guid, scope, principal in role_assignments(parsed(MAIN))
        if principal != "functionApp.identity.principalId"
    }
    assert others <= {(KEY_VAULT_SECRETS_OFFICER, "vault")}


def test_role_assignment_names_are_deterministic() -> None:
    for name, res in resources(parsed(MAIN), "Microsoft.Authorization/roleAssignments").items():
        assert render(res["name"]).startswith("guid("), f"{name}: name must be guid(...)"


# --- app settings ---------------------------------------------------------------------------------


def test_host_storage_is_reached_by_identity() -> None:
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    for service in ("blob", "queue", "table"):
        value = render(settings[f"AzureWebJobsStorage__{service}ServiceUri"])
        assert value == f"storage.properties.primaryEndpoints.{service}"
    assert "AzureWebJobsStorage" not in settings, "no connection string: identity only"


def test_no_deprecated_flex_settings() -> None:
    settings = set(app_settings())
    used = settings & FLEX_DEPRECATED_SETTINGS
    assert not used, f"Flex Consumption does not support these app settings: {sorted(used)}"
    for path in BICEP_FILES:
        text = path.read_text(encoding="utf-8")
        for name in FLEX_DEPRECATED_SETTINGS:
            assert not re.search(rf"\b{name}\s*:", text), f"{path.name} sets {name}"


def test_no_storage_keys_anywhere() -> None:
    for path in BICEP_FILES:
        text = path.read_text(encoding="utf-8")
        assert "listKeys(" not in text, f"{path.name} reads storage keys"
        assert "AccountKey=" not in text, f"{path.name} builds a key connection string"
        assert "InstrumentationKey" not in text, f"{path.name} uses an App Insights key"


def test_secret_settings_come_from_key_vault_or_are_empty() -> None:
    settings = app_settings()
    for setting in SETTINGS:
        if not setting.secret or setting.name not in settings:
            continue
        value = render(settings[setting.name])
        if setting.name == "AUDITOR_STORAGE":
            assert value.startswith("https://"), "AUDITOR_STORAGE: an endpoint URL, not a key"
            continue
        assert value == "" or "@Microsoft.KeyVault(" in value, (
            f"secret setting {setting.name} must be empty or a Key Vault reference, got {value!r}"
        )


def test_settings_agree_between_config_readme_and_bicep() -> None:
    """One set of names in auditor.config.SETTINGS, the README settings table and main.bicep."""
    in_config = [s.name for s in SETTINGS]
    in_readme = readme_settings()
    in_bicep = set(app_settings()) - PLATFORM_SETTINGS
    problems = []
    for name in in_config:
        if name not in in_readme:
            problems.append(f"{name}: in auditor.config.SETTINGS but not in the README table")
        if name not in in_bicep:
            problems.append(f"{name}: in auditor.config.SETTINGS but not in infra/main.bicep")
    for name in sorted(set(in_readme) - set(in_config)):
        problems.append(f"{name}: in the README table but not in auditor.config.SETTINGS")
    for name in sorted(in_bicep - set(in_config)):
        problems.append(f"{name}: in infra/main.bicep app settings but not in auditor.config")
    duplicates = sorted({n for n in in_readme if in_readme.count(n) > 1})
    problems += [f"{name}: listed twice in the README table" for name in duplicates]
    assert not problems, "settings disagree:\n" + "\n".join(problems)


def test_parameters_file_matches_main_bicep() -> None:
    params = parsed(MAIN)["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    unknown = set(given) - set(params)
    assert not unknown, f"main.parameters.json sets unknown parameters {sorted(unknown)}"
    required = {name for name, p in params.items() if "default" not in p}
    assert required <= set(given), f"azd cannot fill {sorted(required - set(given))}"


def test_azure_yaml_deploys_the_tagged_function_app() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^\s+provider: bicep$", text, flags=re.M)
    assert re.search(r"^\s+module: main$", text, flags=re.M)
    service = re.search(r"^services:\n  (\w+):\n((?:    .*\n)+)", text, flags=re.M)
    assert service, "azure.yaml has no service"
    assert "host: function" in service.group(2) and "language: python" in service.group(2)
    _, site = one(parsed(MAIN), "Microsoft.Web/sites")
    tags = site["tags"]["function"]["parameters"]["arg_2"]  # union(allTags, {...})
    assert {k.strip("'"): v for k, v in tags.items()} == {"azd-service-name": service.group(1)}


# --- Microsoft Graph (Entra ID) -------------------------------------------------------------------


def test_exchange_manage_as_app_granted_to_the_function_identity() -> None:
    doc = parsed(INFRA / "graph" / "exchange-grant.bicep")
    sps = {
        name: res["config"]
        for name, res in doc["resources"].items()
        if res["type"] == "Microsoft.Graph/servicePrincipals" and res["existing"]
    }
    apps = {variable(doc, sp["appId"]): name for name, sp in sps.items()}
    assert set(apps) == {EXCHANGE_ONLINE_APP_ID, MICROSOFT_GRAPH_APP_ID}
    grants = resources(doc, "Microsoft.Graph/appRoleAssignedTo")
    roles = {variable(doc, g["appRoleId"]): g for g in grants.values()}
    # Exchange.ManageAsApp, and for usage evidence Graph AuditLog.Read.All (Directory.Read.All
    # only on request): nothing else.
    assert set(roles) == {EXCHANGE_MANAGE_AS_APP, AUDIT_LOG_READ_ALL, DIRECTORY_READ_ALL}
    grant = roles[EXCHANGE_MANAGE_AS_APP]
    assert render(grant["resourceId"]) == f"{apps[EXCHANGE_ONLINE_APP_ID]}.id"
    for role in (AUDIT_LOG_READ_ALL, DIRECTORY_READ_ALL):
        assert render(roles[role]["resourceId"]) == f"{apps[MICROSOFT_GRAPH_APP_ID]}.id"
    assert all(g["principalId"] == "principalId" for g in grants.values())
    assert doc["parameters"]["grantDirectoryRead"]["default"] is False


def test_no_entra_mail_send_or_other_graph_permissions() -> None:
    for path in INFRA.rglob("*.bicep"):
        text = re.sub(r"//.*", "", path.read_text(encoding="utf-8"))
        if path.name != "exchange-grant.bicep":  # the sign-in log read only (test above)
            assert MICROSOFT_GRAPH_APP_ID not in text, f"{path.name} grants Microsoft Graph roles"
        assert "Mail.Send" not in text, f"{path.name}: Mail.Send belongs in Exchange RBAC"


def test_approver_app_role() -> None:
    doc = parsed(INFRA / "graph" / "approver-app.bicep")
    _, app = next(iter(resources(doc, "Microsoft.Graph/applications").items()))
    (role,) = app["appRoles"]
    assert role["value"] == "approverRole"
    assert "User" in role["allowedMemberTypes"] and role["isEnabled"] is True
    assert doc["parameters"]["approverRole"]["default"] == "Remediation.Approve"
    assert parsed(MAIN)["parameters"]["approverRole"]["default"] == "Remediation.Approve"
    (sp,) = resources(doc, "Microsoft.Graph/servicePrincipals").values()
    assert sp["appRoleAssignmentRequired"] is True
    for assignment in resources(doc, "Microsoft.Graph/appRoleAssignedTo").values():
        assert assignment["appRoleId"] == "approverRoleId"


# --- checkov wiring -------------------------------------------------------------------------------


def test_every_checkov_skip_has_a_reason() -> None:
    skips = []
    for path in INFRA.rglob("*.bicep"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = re.search(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?", line)
            if match:
                skips.append(match.group(1))
                reason = (match.group(2) or "").strip()
                where = f"{path.name}:{number}"
                assert len(reason) >= 20, f"{where}: skip {match.group(1)} without a reason"
                assert "," not in match.group(1), f"{where}: one check id per skip comment"
    assert skips, "no checkov skips found: the pattern above no longer matches"


def test_make_test_runs_checkov() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    test_target = re.search(r"^test:(.*)$", makefile, flags=re.M)
    assert test_target and "checkov" in test_target.group(1).split()
    assert ".venv-checkov/" in (ROOT / ".gitignore").read_text(encoding="utf-8")
