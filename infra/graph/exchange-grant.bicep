// Entra ID grant of Exchange.ManageAsApp to the Function App's managed identity (Microsoft Graph
// Bicep extension). This makes the identity able to get an Exchange Online app-only token; what it
// may then DO in Exchange is decided by the Exchange role groups that
// infra/scripts/Grant-ExchangePermissions.ps1 creates (View-Only for auditing, Mail Recipients for
// remediation). No Entra directory role and no Entra Mail.Send permission is granted: Mail.Send is
// scoped to one sender mailbox through Exchange RBAC for Applications instead (grants add up; an
// Entra Mail.Send would let the app send as anyone).
//
//
// Usage evidence (USAGE_EVIDENCE, README "Usage evidence and change attribution"): the Microsoft
// Graph application role AuditLog.Read.All, so the identity can read the SMTP AUTH sign-ins
// (`GET /v1.0/auditLogs/signIns`). It reads sign-in and directory audit logs only, nothing else.
// Directory.Read.All is listed by Graph for the same call "to avoid intermittent licence-check
// errors"; it reads the whole directory, so it is granted only with grantDirectoryRead=true.
//
// Deploy (needs AppRoleAssignment.ReadWrite.All + Application.Read.All, e.g. Privileged Role
// Administrator): the azd postprovision hook does it, or
//   az deployment sub create -l <region> -f infra/graph/exchange-grant.bicep -p principalId=<id>

targetScope = 'subscription'

extension microsoftGraphV1

@description('Object id of the Function App system-assigned identity (main.bicep output AZURE_FUNCTION_PRINCIPAL_ID).')
param principalId string

// "Office 365 Exchange Online" first-party application and its Exchange.ManageAsApp app role.
var exchangeOnlineAppId = '00000002-0000-0ff1-ce00-000000000000'
var exchangeManageAsAppRoleId = 'dc50a0fb-09a3-484d-be87-e023b12c6440'

resource exchangeOnline 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: exchangeOnlineAppId
}

resource manageAsApp 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: exchangeOnline.id
  appRoleId: exchangeManageAsAppRoleId
}

@description('Also grant Graph Directory.Read.All (only if sign-in reads fail intermittently with licence-check errors).')
param grantDirectoryRead bool = false

// Microsoft Graph and its AuditLog.Read.All / Directory.Read.All application roles.
var graphAppId = '00000003-0000-0000-c000-000000000000'
var auditLogReadAllRoleId = 'b0afded3-3588-46d8-8b3d-9842eff778da'
var directoryReadAllRoleId = '7ab1d382-f21e-4acd-a863-ba3e13f7da61'

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

resource auditLogRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: graph.id
  appRoleId: auditLogReadAllRoleId
}

resource directoryRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantDirectoryRead) {
  principalId: principalId
  resourceId: graph.id
  appRoleId: directoryReadAllRoleId
}

output assignmentId string = manageAsApp.id
output auditLogAssignmentId string = auditLogRead.id
