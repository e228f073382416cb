// App registration that guards the approval endpoints (Microsoft Graph Bicep extension). It
// defines one app role, the approver role; only users, groups or apps assigned that role get it
// in the `roles` claim of their access token for this app, and the Function checks the token's
// signature, issuer, audience (this app's client id), tenant, expiry and that role in code.
// appRoleAssignmentRequired makes Entra refuse tokens to anyone not assigned.
//
// Deploy (needs Application.ReadWrite.All or Cloud Application Administrator, plus
// AppRoleAssignment.ReadWrite.All for approverPrincipalIds): the azd preprovision hook does it, or
//   az deployment sub create -l <region> -f infra/graph/approver-app.bicep -p environmentName=<env>
// then give its output approverClientId to main.bicep (azd env set APPROVER_CLIENT_ID <id>).

targetScope = 'subscription'

extension microsoftGraphV1

@description('azd environment name; makes the app registration unique per environment.')
param environmentName string

@description('Value of the approver app role (the `roles` claim the Function requires).')
param approverRole string = 'Remediation.Approve'

@description('Stable id of the approver app role. Changing it orphans existing assignments.')
param approverRoleId string = '93baa5c5-7b06-49bc-bda1-86938acc13c3'

@description('Object ids of users, groups or service principals to assign the approver role (a group is easiest to govern).')
param approverPrincipalIds array = []

resource approverApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: 'smtp-auth-auditor-${environmentName}'
  displayName: 'SMTP AUTH auditor approvals (${environmentName})'
  signInAudience: 'AzureADMyOrg'
  api: {
    requestedAccessTokenVersion: 2
  }
  appRoles: [
    {
      id: approverRoleId
      value: approverRole
      displayName: 'SMTP AUTH remediation approver'
      description: 'May approve proposed SMTP AUTH remediations (revocations and grants) of the auditor.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
  ]
}

resource approverSp 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: approverApp.appId
  appRoleAssignmentRequired: true
}

resource approverAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for approver in approverPrincipalIds: {
  principalId: approver
  resourceId: approverSp.id
  appRoleId: approverRoleId
}]

output approverClientId string = approverApp.appId
output approverServicePrincipalId string = approverSp.id
output approverRole string = approverRole
