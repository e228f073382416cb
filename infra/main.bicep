// SMTP AUTH auditor: Azure resources for one deployment (resource-group scope).
//
// Flex Consumption (FC1) Linux Python 3.11 Function App with a system-assigned managed identity.
// Everything the app touches is reached by that identity: no storage keys, no connection strings,
// no App Insights instrumentation key. Secrets (the Teams webhook URL, a certificate) live in a
// Key Vault in RBAC mode and reach the app as Key Vault references.
//
// Entra ID (Microsoft Graph) objects are in infra/graph/*.bicep and the Exchange role groups in
// infra/scripts/Grant-ExchangePermissions.ps1: they need directory/Exchange admin rights that a
// subscription deployer usually does not have. See README "Deployment".
//
// Keep to plain resources (no registry modules) so the file parses offline (tests/test_infra.py).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@description('Short environment name (azd: AZURE_ENV_NAME); makes resource names unique.')
@minLength(1)
@maxLength(20)
param environmentName string

@description('Azure region. Must offer Flex Consumption.')
param location string = resourceGroup().location

@description('EXO_TENANT: tenant to audit, a tenant GUID or *.onmicrosoft.com domain. The managed identity only gets tokens for its home tenant.')
param exoTenant string

@description('EXO_BASE_URL: Exchange admin endpoint (sovereign clouds differ).')
@allowed([
  'https://outlook.office365.com'
  'https://outlook.office365.us'
  'https://outlook-dod.office365.us'
  'https://outlook.office365.cn'
])
param exoBaseUrl string = 'https://outlook.office365.com'

@description('AUDIT_SCHEDULE: NCRONTAB, six fields, UTC (Flex has no WEBSITE_TIME_ZONE).')
param auditSchedule string = '0 0 2 * * *'

@description('AUDITOR_ALLOWLIST: path of the allowlist file inside the deployed package.')
param allowlistPath string = '/home/site/wwwroot/allowlist.csv'

@description('AUDITOR_EXPIRING_DAYS: warn this many days before an allowlist exception expires.')
@minValue(0)
@maxValue(365)
param expiringDays int = 14

@description('AUDIT_LEASE_SECONDS: seconds a run lease lasts without renewal; a stale run is taken over.')
@minValue(5)
@maxValue(3600)
param leaseSeconds int = 60

@description('AUDIT_MAX_REMOVED_PERCENT: a complete read losing more of the known mailboxes is recorded suspect.')
@minValue(0)
@maxValue(100)
param maxRemovedPercent int = 20

@description('ALERT_EMAIL_FROM: sender mailbox of alert emails (scoped by Grant-ExchangePermissions.ps1). Empty: no email alerts.')
param alertEmailFrom string = ''

@description('ALERT_EMAIL_TO: comma-separated recipients of alert emails.')
param alertEmailTo string = ''

@description('USAGE_LOOKBACK_DAYS: days of SMTP AUTH sign-ins judged (Entra keeps 30).')
@minValue(1)
@maxValue(30)
param usageLookbackDays int = 30

@description('ALERT_DIGEST: true sends a daily summary even when nothing changed.')
param alertDigest bool = true

@description('ALERT_REPORT_BASE_URL: base URL of run reports linked from alerts. Empty: no link.')
param alertReportBaseUrl string = ''

@description('true: ALERT_TEAMS_WEBHOOK_URL is a Key Vault reference to the secret "teams-webhook-url" (which must exist; a missing secret makes /api/health report the setting as misconfigured).')
param teamsAlerts bool = false

@description('Teams Workflows webhook URL. When given, it is written to Key Vault as "teams-webhook-url". Prefer setting the secret with az keyvault secret set.')
@secure()
param teamsWebhookUrl string = ''

@description('GRAPH_BASE_URL: Microsoft Graph endpoint (sovereign clouds differ).')
param graphBaseUrl string = 'https://graph.microsoft.com'

@description('Client (application) id of the approver app registration (infra/graph/approver-app.bicep): the audience of approval tokens.')
param approverClientId string = ''

@description('APPROVER_ROLE: value of the app role that may approve remediations (same as in infra/graph/approver-app.bicep).')
param approverRole string = 'Remediation.Approve'

@description('APPROVER_TENANT_ID: Entra tenant whose tokens may approve. Default: the subscription\'s tenant.')
param approverTenantId string = subscription().tenantId

@description('Anti-forgery secret of the confirmation page (32+ characters). When given, written to Key Vault as "auditor-form-secret"; the azd preprovision hook generates one once.')
@secure()
param formSecret string = ''

@description('APPROVAL_SIGNING_KEY: signs approval records (32+ bytes); the executor runs nothing whose approval does not verify. When given, written to Key Vault as "auditor-approval-signing-key"; the azd preprovision hook generates one once.')
@secure()
param approvalSigningKey string = ''

@description('REMEDIATION_FORCE_TRUE: revoke explicit enables with true even when the organisation blocks.')
param remediationForceTrue bool = false

@description('REMEDIATION_EXPIRY_DAYS: days a remediation proposal can be approved.')
@minValue(1)
@maxValue(90)
param remediationExpiryDays int = 7

@description('REMEDIATION_INLINE_LIMIT: plans with at most this many targets run inline; larger ones go to the queue.')
@minValue(0)
@maxValue(1000)
param remediationInlineLimit int = 10

@description('REMEDIATION_VERIFY_SECONDS: how long a change is read back until Exchange shows it (reads can lag writes).')
@minValue(0)
@maxValue(3600)
param remediationVerifySeconds int = 120

@description('Object id of a user or group that may manage Key Vault secrets (Key Vault Secrets Officer). Empty: none granted here.')
param secretsOfficerPrincipalId string = ''

@description('Maximum Flex instances (40 is the platform minimum for the cap; Exchange calls are throttled in code).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Instance memory in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 90

param tags object = {}

// ---------------------------------------------------------------------------------------------
// Names and built-in role definition ids (Azure built-in roles; GUIDs are the same in every tenant)
// ---------------------------------------------------------------------------------------------

var suffix = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var allTags = union(tags, { 'azd-env-name': environmentName, app: 'smtp-auth-auditor' })
var storageName = 'stauditor${take(suffix, 13)}'
var vaultName = 'kv-auditor-${take(suffix, 13)}'
var appName = 'func-auditor-${suffix}'
var deploymentContainerName = 'app-package-${take(suffix, 13)}'
var remediationQueueName = 'remediations'
var teamsSecretName = 'teams-webhook-url'
var formSecretName = 'auditor-form-secret'
var approvalKeyName = 'auditor-approval-signing-key'

var roleStorageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var roleStorageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var roleStorageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var roleMonitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var roleKeyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var roleKeyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

// ---------------------------------------------------------------------------------------------
// Monitoring: Log Analytics + Application Insights with local (key) auth disabled
// ---------------------------------------------------------------------------------------------

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-auditor-${suffix}'
  location: location
  tags: allTags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-auditor-${suffix}'
  location: location
  tags: allTags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------------
// Storage: host storage, deployment package container, history tables, remediation queue
// ---------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  tags: allTags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GRS'
  }
  properties: {
    //checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches its host storage over the public endpoint; every request needs an Entra token (shared keys disabled, no anonymous blob access).
    //checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35.
    //checkov:skip=CKV_AZURE_43:The name is computed ('stauditor' + 13 characters of uniqueString): lower-case letters and digits, at most 22 characters; checkov cannot evaluate the expression.
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource remediationQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: remediationQueueName
}

// History tables are created by the store adapter on first use (Storage Table Data Contributor
// includes table creation), so their names live in one place: the code.
resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource storageDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: logs.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logs.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logs.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------
// Key Vault (RBAC mode) for the Teams webhook URL and any certificate
// ---------------------------------------------------------------------------------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  tags: allTags
  properties: {
    //checkov:skip=CKV_AZURE_109:Key Vault references from a Flex app without VNet integration resolve over the public endpoint; access is by Entra RBAC only.
    //checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109.
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource teamsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(teamsWebhookUrl)) {
  parent: vault
  name: teamsSecretName
  properties: {
    //checkov:skip=CKV_AZURE_114:contentType is set just below; checkov does not read the properties of a conditional (if) resource.
    //checkov:skip=CKV_AZURE_41:A Teams Workflows webhook URL has no expiry of its own; rotation is manual (README "Rotate"), and an expired secret would silently stop alerts.
    value: teamsWebhookUrl
    contentType: 'text/uri-list'
  }
}

resource formSecretValue 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(formSecret)) {
  parent: vault
  name: formSecretName
  properties: {
    //checkov:skip=CKV_AZURE_114:contentType is set just below; checkov does not read the properties of a conditional (if) resource.
    //checkov:skip=CKV_AZURE_41:Rotated by azd provision with a new AUDITOR_FORM_SECRET (README "Rotate"); an expiry would break approvals silently.
    value: formSecret
    contentType: 'text/plain'
  }
}

resource approvalKeyValue 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(approvalSigningKey)) {
  parent: vault
  name: approvalKeyName
  properties: {
    //checkov:skip=CKV_AZURE_114:contentType is set just below; checkov does not read the properties of a conditional (if) resource.
    //checkov:skip=CKV_AZURE_41:Rotated by azd provision with a new APPROVAL_SIGNING_KEY (README "Rotate"); approvals signed with the old key are then refused.
    value: approvalSigningKey
    contentType: 'text/plain'
  }
}

resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logs.id
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------
// Flex Consumption plan and Function App
// ---------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-auditor-${suffix}'
  location: location
  tags: allTags
  kind: 'functionapp'
  //checkov:skip=CKV_AZURE_225:A nightly batch job tolerates a zone outage (the timer catches up as past_due); zone-redundant Flex is offered only in some regions.
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(allTags, { 'azd-service-name': 'auditor' })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    //checkov:skip=CKV_AZURE_17:Client certificates do not apply: approvers authenticate with Entra access tokens carrying the approver app role, validated in code.
    //checkov:skip=CKV_AZURE_222:Approvers reach the HTTP endpoints from their browsers; every state-changing request is authenticated in code (Entra token + approver app role).
    //checkov:skip=CKV_AZURE_212:Flex Consumption scales to zero by design; a nightly timer job needs no always-ready instance (a missed run is caught up as past_due).
    //checkov:skip=CKV_AZURE_213:The App Service health-check instance replacement does not apply to scale-to-zero Flex; /api/health exists for external probes.
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Publishing with user/password (FTP, SCM basic auth) is off: azd deploys with Entra tokens.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// ---------------------------------------------------------------------------------------------
// Role assignments for the Function App's identity, each scoped to the one resource it needs
// ---------------------------------------------------------------------------------------------

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, roleStorageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleStorageBlobDataOwner)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, roleStorageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleStorageQueueDataContributor)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, roleStorageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleStorageTableDataContributor)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, functionApp.id, roleMonitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleMonitoringMetricsPublisher)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionApp.id, roleKeyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleKeyVaultSecretsUser)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(secretsOfficerPrincipalId)) {
  name: guid(vault.id, secretsOfficerPrincipalId, roleKeyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleKeyVaultSecretsOfficer)
    principalId: secretsOfficerPrincipalId
  }
}

// ---------------------------------------------------------------------------------------------
// App settings. Written after the role assignments so Key Vault references and identity-based
// storage resolve on the first start. Every setting in auditor/config.py SETTINGS appears here
// (tests/test_infra.py checks it), plus the platform's identity-based connection settings. None
// of Flex Consumption's removed settings (FUNCTIONS_WORKER_RUNTIME, WEBSITE_RUN_FROM_PACKAGE, ...)
// appear: runtime and deployment are in functionAppConfig above.
// ---------------------------------------------------------------------------------------------

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  dependsOn: [
    blobOwner
    queueContributor
    tableContributor
    metricsPublisher
    secretsUser
    teamsSecret
    formSecretValue
    approvalKeyValue
  ]
  properties: {
    //checkov:skip=CKV_AZURE_13:checkov reads every Microsoft.Web/sites/config as the 'web' config; this one is 'appsettings', a name/value map (the site itself is checked above).
    //checkov:skip=CKV_AZURE_63:checkov reads every Microsoft.Web/sites/config as the 'web' config; this one is 'appsettings', a name/value map (the site itself is checked above).
    //checkov:skip=CKV_AZURE_65:checkov reads every Microsoft.Web/sites/config as the 'web' config; this one is 'appsettings', a name/value map (the site itself is checked above).
    //checkov:skip=CKV_AZURE_66:checkov reads every Microsoft.Web/sites/config as the 'web' config; this one is 'appsettings', a name/value map (the site itself is checked above).
    //checkov:skip=CKV_AZURE_80:checkov reads every Microsoft.Web/sites/config as the 'web' config; this one is 'appsettings', a name/value map (the site itself is checked above).
    //checkov:skip=CKV_AZURE_88:checkov reads every Microsoft.Web/sites/config as the 'web' config; this one is 'appsettings', a name/value map (the site itself is checked above).
    //checkov:skip=CKV_AZURE_222:checkov reads every Microsoft.Web/sites/config as the 'web' config; this one is 'appsettings', a name/value map (the site itself is checked above).
    // Host storage by identity (no AzureWebJobsStorage connection string).
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
    // Telemetry with Entra auth (local auth is disabled on the component).
    APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
    // The auditor's own settings (auditor/config.py).
    EXO_TENANT: exoTenant
    EXO_BASE_URL: exoBaseUrl
    EXO_ACCESS_TOKEN: '' // break-glass only; production uses the managed identity
    EXO_CLIENT_ID: '' // only to audit another tenant through an app registration (msal)
    EXO_CERTIFICATE_PATH: ''
    EXO_CERTIFICATE_PASSWORD: ''
    EXO_CLIENT_SECRET: ''
    EXO_AUTHORITY_HOST: environment().authentication.loginEndpoint
    EXO_SHARDS: '1' // one paging chain per listing; docs/exchange-protocol.md "Sharded reads"
    EXO_MAX_PARALLEL: '3'
    AZURE_CLIENT_ID: '' // system-assigned identity
    AUDITOR_STORAGE: 'https://${storage.name}.table.${environment().suffixes.storage}'
    AUDITOR_TABLE_PREFIX: 'smtpauth'
    AUDITOR_ALLOWLIST: allowlistPath
    AUDITOR_EXPIRING_DAYS: string(expiringDays)
    AUDIT_LEASE_SECONDS: string(leaseSeconds)
    AUDIT_MAX_REMOVED_PERCENT: string(maxRemovedPercent)
    AUDIT_SCHEDULE: auditSchedule
    ALERT_TEAMS_WEBHOOK_URL: teamsAlerts ? '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${teamsSecretName})' : ''
    ALERT_EMAIL_FROM: alertEmailFrom
    ALERT_EMAIL_TO: alertEmailTo
    ALERT_DIGEST: alertDigest ? 'true' : 'false'
    ALERT_REPORT_BASE_URL: alertReportBaseUrl
    GRAPH_BASE_URL: graphBaseUrl
    GRAPH_ACCESS_TOKEN: '' // break-glass only; production uses the managed identity
    // Usage evidence (sign-ins, AuditLog.Read.All in graph/exchange-grant.bicep) and change
    // attribution (Search-UnifiedAuditLog, View-Only Audit Logs in Grant-ExchangePermissions.ps1).
    USAGE_EVIDENCE: 'true'
    USAGE_LOOKBACK_DAYS: string(usageLookbackDays)
    // Approvals (infra/graph/approver-app.bicep): v2 tokens carry the client id as audience.
    APPROVER_TENANT_ID: approverTenantId
    APPROVER_AUDIENCE: approverClientId
    APPROVER_ROLE: approverRole
    APPROVER_JWKS_URL: '' // derived from APPROVER_TENANT_ID
    EASY_AUTH_ENABLED: 'false' // App Service Authentication is not configured by this template
    // Only referenced when this deployment wrote the secret: an unresolved reference would leave the
    // literal (public) reference text as the secret. Empty turns approvals off (fail closed).
    AUDITOR_FORM_SECRET: empty(formSecret) ? '' : '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${formSecretName})'
    APPROVAL_SIGNING_KEY: empty(approvalSigningKey) ? '' : '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${approvalKeyName})'
    REMEDIATION_PUBLIC_URL: 'https://${functionApp.properties.defaultHostName}'
    REMEDIATION_FORCE_TRUE: remediationForceTrue ? 'true' : 'false'
    REMEDIATION_EXPIRY_DAYS: string(remediationExpiryDays)
    REMEDIATION_INLINE_LIMIT: string(remediationInlineLimit)
    REMEDIATION_VERIFY_SECONDS: string(remediationVerifySeconds)
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment; hooks and the README use them)
// ---------------------------------------------------------------------------------------------

output AZURE_FUNCTION_APP_NAME string = functionApp.name
output AZURE_FUNCTION_PRINCIPAL_ID string = functionApp.identity.principalId
output AZURE_FUNCTION_URL string = 'https://${functionApp.properties.defaultHostName}'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.name
output AZURE_KEY_VAULT_NAME string = vault.name
output AZURE_KEY_VAULT_URI string = vault.properties.vaultUri
output REMEDIATION_QUEUE_NAME string = remediationQueue.name
output APPROVER_CLIENT_ID string = approverClientId
output APPROVER_ROLE string = approverRole
