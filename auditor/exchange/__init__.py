"""auditor/exchange."""
