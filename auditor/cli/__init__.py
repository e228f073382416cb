"""auditor/cli."""
