"""auditor/reports."""
