"""SMTP AUTH auditor for Exchange Online: effective per-mailbox state against an allowlist."""

__version__ = "0.1.0"
