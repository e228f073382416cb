"""auditor/identity."""
