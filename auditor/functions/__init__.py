"""auditor/functions."""
