"""auditor/storage."""
