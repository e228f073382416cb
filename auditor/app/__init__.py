"""auditor/app."""
