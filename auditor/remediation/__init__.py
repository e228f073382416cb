"""auditor/remediation."""
