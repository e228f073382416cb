#!/bin/sh
# azd postprovision hook: grant Exchange.ManageAsApp to the Function App's managed identity
# (infra/graph/exchange-grant.bicep; needs AppRoleAssignment.ReadWrite.All), then print the
# Exchange admin step that Bicep cannot do.
set -eu
cd "$(dirname "$0")/../.."
if [ "${AUDITOR_GRAPH_GRANTS:-true}" = "false" ]; then
    echo "AUDITOR_GRAPH_GRANTS=false: skipping infra/graph/exchange-grant.bicep"
else
    az deployment sub create \
        --name "auditor-exo-grant-${AZURE_ENV_NAME}" \
        --location "${AZURE_LOCATION}" \
        --template-file infra/graph/exchange-grant.bicep \
        --parameters principalId="${AZURE_FUNCTION_PRINCIPAL_ID}" \
        --output none
    echo "Exchange.ManageAsApp granted to ${AZURE_FUNCTION_PRINCIPAL_ID}"
fi
app_id=$(az ad sp show --id "${AZURE_FUNCTION_PRINCIPAL_ID}" --query appId --output tsv)
cat <<NEXT

Next, as an Exchange Administrator (PowerShell, ExchangeOnlineManagement 3.x):
  Connect-ExchangeOnline
  ./infra/scripts/Grant-ExchangePermissions.ps1 -AppId ${app_id} -ObjectId ${AZURE_FUNCTION_PRINCIPAL_ID} -SenderMailbox <sender@yourdomain> -WhatIf
  (then again without -WhatIf; add -EnableRemediation to allow approved remediations)
NEXT
