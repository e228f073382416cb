// Entra ID grant of Exchange.ManageAsApp to the Function App's managed identity (Microsoft Graph
// Bicep extension). This makes the identity able to get an Exchange Online app-only token; what it
// may then DO in Exchange is decided by the Exchange role groups that
// infra/scripts/Grant-ExchangePermissions.ps1 creates (View-Only for auditing, Mail Recipients for
// remediation). No Entra directory role and no Entra Mail.Send permission is granted: Mail.Send is
// scoped to one sender mailbox through Exchange RBAC for Applications instead (grants add up; an
// Entra Mail.Send would let the app send as anyone).
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

output assignmentId string = manageAsApp.id
