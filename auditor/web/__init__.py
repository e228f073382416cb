"""auditor/web."""
