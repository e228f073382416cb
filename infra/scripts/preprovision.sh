#!/bin/sh
# azd preprovision hook: create (or update) the approver app registration, so its client id can be
# given to main.bicep. Needs Application.ReadWrite.All (e.g. Cloud Application Administrator).
# AUDITOR_GRAPH_GRANTS=false skips it: a directory admin then runs the same `az deployment` and
# you `azd env set APPROVER_CLIENT_ID <id>`.
set -eu
# The confirmation page's anti-forgery secret: generated once, kept in the azd environment, written
# to Key Vault by main.bicep. Rotate: azd env set AUDITOR_FORM_SECRET "$(openssl rand -hex 32)"; azd provision
if [ -z "${AUDITOR_FORM_SECRET:-}" ]; then
    azd env set AUDITOR_FORM_SECRET "$(openssl rand -hex 32)"
    echo "generated AUDITOR_FORM_SECRET (stored in the azd environment and, on provision, Key Vault)"
fi
# The key that signs approval records: generated once, like the form secret.
if [ -z "${APPROVAL_SIGNING_KEY:-}" ]; then
    azd env set APPROVAL_SIGNING_KEY "$(openssl rand -hex 32)"
    echo "generated APPROVAL_SIGNING_KEY (stored in the azd environment and, on provision, Key Vault)"
fi
if [ "${AUDITOR_GRAPH_GRANTS:-true}" = "false" ]; then
    echo "AUDITOR_GRAPH_GRANTS=false: skipping infra/graph/approver-app.bicep"
    exit 0
fi
cd "$(dirname "$0")/../.."
client_id=$(az deployment sub create \
    --name "auditor-approver-${AZURE_ENV_NAME}" \
    --location "${AZURE_LOCATION}" \
    --template-file infra/graph/approver-app.bicep \
    --parameters environmentName="${AZURE_ENV_NAME}" approverRole="${APPROVER_ROLE:-Remediation.Approve}" \
    --query properties.outputs.approverClientId.value --output tsv)
azd env set APPROVER_CLIENT_ID "$client_id"
echo "approver app registration: client id $client_id (assign the approver role: README, Deployment)"
