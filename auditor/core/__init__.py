"""auditor/core."""
