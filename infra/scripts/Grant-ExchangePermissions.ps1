<#
.SYNOPSIS
    Grants the SMTP AUTH auditor's managed identity least-privilege Exchange Online permissions.

.DESCRIPTION
    The steps Bicep cannot do (README, "Exchange permissions"). Idempotent: it compares what exists with what
    should exist, changes only the difference, and prints every change (or, with -WhatIf, every
    change it would make). Run it again at any time; a second run prints "unchanged" lines only.

    1. Registers the identity in Exchange: New-ServicePrincipal -AppId -ObjectId.
    2. Auditing: a custom role group "<Prefix> - Audit" with View-Only Configuration
       (Get-TransportConfig) + View-Only Recipients (Get-Mailbox, Get-CASMailbox) + View-Only
       Audit Logs (Search-UnifiedAuditLog: who changed SmtpClientAuthenticationDisabled, for
       USAGE_EVIDENCE), the identity as its member. View-Only Audit Logs reads the audit log and
       changes nothing; without it change attribution stays "unknown" and nothing else breaks.
    3. Remediation, only with -EnableRemediation: a separate role group "<Prefix> - Remediate"
       with Mail Recipients (Set-CASMailbox), plus Organization Transport Settings
       (Set-TransportConfig) only with -AllowOrganizationRemediation. Without these switches the
       identity is taken out of that group and the extra role is removed, so the grants converge on
       what the switches say.
    4. Alert email, only with -SenderMailbox: "Application Mail.Send" through RBAC for
       Applications, scoped by a management scope to that one mailbox. Do NOT also grant Mail.Send
       in Entra ID: grants add up, and an Entra grant lets the app send as anyone.

    Prerequisites: ExchangeOnlineManagement 3.x, connected as an Exchange Administrator
    (Connect-ExchangeOnline). The Entra side (Exchange.ManageAsApp) is infra/graph/exchange-grant.bicep.

.PARAMETER AppId
    Application (client) id of the Function App's managed identity:
    az ad sp show --id <AZURE_FUNCTION_PRINCIPAL_ID> --query appId -o tsv

.PARAMETER ObjectId
    Object id of the managed identity's service principal (azd output AZURE_FUNCTION_PRINCIPAL_ID).

.EXAMPLE
    ./Grant-ExchangePermissions.ps1 -AppId $appId -ObjectId $objectId -SenderMailbox auditor@contoso.com -WhatIf

.EXAMPLE
    ./Grant-ExchangePermissions.ps1 -AppId $appId -ObjectId $objectId -SenderMailbox auditor@contoso.com -EnableRemediation
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[0-9a-fA-F-]{36}$')]
    [string] $AppId,

    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[0-9a-fA-F-]{36}$')]
    [string] $ObjectId,

    [string] $DisplayName = 'SMTP AUTH auditor',

    [string] $Prefix = 'SMTP AUTH Auditor',

    [ValidatePattern('^[^@\s]+@[^@\s]+$')]
    [string] $SenderMailbox,

    [switch] $EnableRemediation,

    [switch] $AllowOrganizationRemediation
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if ($AllowOrganizationRemediation -and -not $EnableRemediation) {
    throw '-AllowOrganizationRemediation needs -EnableRemediation.'
}
if (-not (Get-Command Get-ServicePrincipal -ErrorAction SilentlyContinue)) {
    throw 'Not connected to Exchange Online: run Connect-ExchangeOnline (ExchangeOnlineManagement 3.x) as an Exchange Administrator first.'
}

$script:Changes = [System.Collections.Generic.List[string]]::new()

function Write-Step([string] $Status, [string] $What) {
    # One line per desired-state item: 'added', 'removed', 'updated', 'would ...' or 'unchanged'.
    Write-Host ('{0,-16} {1}' -f $Status, $What)
    if ($Status -ne 'unchanged') { $script:Changes.Add("$Status $What") }
}

function Invoke-Change([string] $What, [string] $Verb, [scriptblock] $Action) {
    if ($PSCmdlet.ShouldProcess($What, $Verb)) {
        & $Action
        Write-Step $Verb $What
    } else {
        Write-Step "would $Verb" $What
    }
}

# --- 1. The service principal in Exchange --------------------------------------------------------
$sp = Get-ServicePrincipal -Identity $ObjectId -ErrorAction SilentlyContinue
if ($null -eq $sp) {
    Invoke-Change "service principal '$DisplayName' (AppId $AppId, ObjectId $ObjectId)" 'added' {
        $script:sp = New-ServicePrincipal -AppId $AppId -ObjectId $ObjectId -DisplayName $DisplayName
    }
    $sp = Get-ServicePrincipal -Identity $ObjectId -ErrorAction SilentlyContinue
} else {
    Write-Step 'unchanged' "service principal '$($sp.DisplayName)' ($ObjectId)"
}
# Under -WhatIf the principal may not exist yet; later steps refer to it by object id.
$member = if ($null -ne $sp) { $sp.Identity } else { $ObjectId }

function Get-RoleNames([string] $Group) {
    @(Get-ManagementRoleAssignment -RoleAssignee $Group -Delegating $false -ErrorAction SilentlyContinue |
        ForEach-Object { [string] $_.Role })
}

function Test-Member([string] $Group) {
    $members = @(Get-RoleGroupMember -Identity $Group -ResultSize Unlimited -ErrorAction SilentlyContinue)
    foreach ($m in $members) {
        foreach ($p in 'ExternalDirectoryObjectId', 'Identity', 'Name') {
            if ($m.PSObject.Properties[$p] -and [string] $m.$p -eq $ObjectId) { return $true }
        }
    }
    return $false
}

function Set-RoleGroupState {
    <# Makes role group $Name exist with exactly $Roles and the identity as a member (or not). #>
    param([string] $Name, [string[]] $Roles, [string] $Description, [bool] $IsMember)

    $group = Get-RoleGroup -Identity $Name -ErrorAction SilentlyContinue
    if ($null -eq $group) {
        if (-not $IsMember) { Write-Step 'unchanged' "role group '$Name' (not wanted, absent)"; return }
        Invoke-Change "role group '$Name' with roles $($Roles -join ', ')" 'added' {
            New-RoleGroup -Name $Name -Roles $Roles -Description $Description | Out-Null
        }
    } else {
        $current = Get-RoleNames $Name
        foreach ($role in $Roles) {
            if ($current -contains $role) {
                Write-Step 'unchanged' "role '$role' in '$Name'"
            } else {
                Invoke-Change "role '$role' in '$Name'" 'added' {
                    New-ManagementRoleAssignment -SecurityGroup $Name -Role $role | Out-Null
                }
            }
        }
        foreach ($role in $current) {
            if ($Roles -notcontains $role) {
                Invoke-Change "role '$role' in '$Name'" 'removed' {
                    Get-ManagementRoleAssignment -RoleAssignee $Name -Role $role -Delegating $false |
                        Remove-ManagementRoleAssignment -Confirm:$false
                }
            }
        }
    }

    $isMemberNow = (Get-RoleGroup -Identity $Name -ErrorAction SilentlyContinue) -and (Test-Member $Name)
    if ($IsMember -and -not $isMemberNow) {
        Invoke-Change "member '$DisplayName' of '$Name'" 'added' {
            Add-RoleGroupMember -Identity $Name -Member $member -BypassSecurityGroupManagerCheck
        }
    } elseif (-not $IsMember -and $isMemberNow) {
        Invoke-Change "member '$DisplayName' of '$Name'" 'removed' {
            Remove-RoleGroupMember -Identity $Name -Member $member -BypassSecurityGroupManagerCheck -Confirm:$false
        }
    } else {
        Write-Step 'unchanged' ("member '$DisplayName' of '$Name': " + $(if ($IsMember) { 'present' } else { 'absent' }))
    }
}

# --- 2. Auditing: read-only ----------------------------------------------------------------------
Set-RoleGroupState -Name "$Prefix - Audit" -IsMember $true `
    -Roles @('View-Only Configuration', 'View-Only Recipients', 'View-Only Audit Logs') `
    -Description 'SMTP AUTH auditor: reads Get-TransportConfig, Get-Mailbox, Get-CASMailbox, Search-UnifiedAuditLog.'

# --- 3. Remediation: separate, opt-in ------------------------------------------------------------
$remediationRoles = @('Mail Recipients')
if ($AllowOrganizationRemediation) { $remediationRoles += 'Organization Transport Settings' }
Set-RoleGroupState -Name "$Prefix - Remediate" -IsMember ([bool] $EnableRemediation) `
    -Roles $remediationRoles `
    -Description 'SMTP AUTH auditor: approved remediations (Set-CASMailbox; Set-TransportConfig if allowed).'

# --- 4. Alert email: Application Mail.Send scoped to the sender mailbox -------------------------
if ($SenderMailbox) {
    $scopeName = "$Prefix sender mailbox"
    $filter = "PrimarySmtpAddress -eq '$SenderMailbox'"
    $scope = Get-ManagementScope -Identity $scopeName -ErrorAction SilentlyContinue
    if ($null -eq $scope) {
        Invoke-Change "management scope '$scopeName' ($filter)" 'added' {
            New-ManagementScope -Name $scopeName -RecipientRestrictionFilter $filter | Out-Null
        }
    } elseif ([string] $scope.RecipientFilter -ne $filter) {
        Invoke-Change "management scope '$scopeName' ($($scope.RecipientFilter) -> $filter)" 'updated' {
            Set-ManagementScope -Identity $scopeName -RecipientRestrictionFilter $filter
        }
    } else {
        Write-Step 'unchanged' "management scope '$scopeName' ($filter)"
    }

    $assignmentName = "$Prefix Application Mail.Send"
    $assignment = Get-ManagementRoleAssignment -Identity $assignmentName -ErrorAction SilentlyContinue
    if ($null -eq $assignment) {
        Invoke-Change "role assignment '$assignmentName' (Application Mail.Send, scope '$scopeName')" 'added' {
            New-ManagementRoleAssignment -Name $assignmentName -App $ObjectId -Role 'Application Mail.Send' `
                -CustomResourceScope $scopeName | Out-Null
        }
    } elseif ([string] $assignment.CustomResourceScope -ne $scopeName) {
        Invoke-Change "role assignment '$assignmentName' scope -> '$scopeName'" 'updated' {
            Set-ManagementRoleAssignment -Identity $assignmentName -CustomResourceScope $scopeName
        }
    } else {
        Write-Step 'unchanged' "role assignment '$assignmentName' (scope '$scopeName')"
    }
} else {
    Write-Step 'unchanged' 'Application Mail.Send: no -SenderMailbox given, email alerts stay off'
}

# --- Summary ---------------------------------------------------------------------------------------
Write-Host ''
if ($script:Changes.Count -eq 0) {
    Write-Host 'Nothing to change: Exchange permissions are as requested.'
} else {
    Write-Host ("{0} change(s):" -f $script:Changes.Count)
    $script:Changes | ForEach-Object { Write-Host "  $_" }
}
Write-Host ''
Write-Host 'Verify (role changes can take up to an hour to apply to app-only tokens):'
Write-Host "  Test-ServicePrincipalAuthorization -Identity $ObjectId | Format-Table RoleName,GrantedPermissions,AllowedResourceScope,ScopeType,InScope"
if ($SenderMailbox) {
    Write-Host "  Test-ServicePrincipalAuthorization -Identity $ObjectId -Resource $SenderMailbox | Format-Table RoleName,InScope"
}
