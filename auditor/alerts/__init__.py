"""auditor/alerts."""
