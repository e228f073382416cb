"""PURE: the public URLs of the Function App and the remediation queue's name, in one place.

The Functions blueprints register these routes; alerts, notices, the CLI and the pages link to
them through the builders below, so a route is spelt once. `base` is the app's public origin
(`REMEDIATION_PUBLIC_URL`, or the origin a request arrived on); None when unknown.
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = [
    "REMEDIATION_QUEUE",
    "HEALTH",
    "REMEDIATION",
    "REMEDIATION_STATUS",
    "REMEDIATION_APPROVE",
    "REMEDIATION_REJECT",
    "remediation_path",
    "remediation_url",
    "report_url",
]

REMEDIATION_QUEUE = "remediations"

# Route templates as the Functions host declares them (below its `/api` prefix).
HEALTH = "health"
REMEDIATION = "remediations/{id}"
REMEDIATION_STATUS = "remediations/{id}/status"
REMEDIATION_APPROVE = "remediations/{id}/approve"
REMEDIATION_REJECT = "remediations/{id}/reject"


def remediation_path(proposal_id: str, action: str = "") -> str:
    """`/api/remediations/<id>[/<action>]` (action: "", "status", "approve" or "reject")."""
    path = f"/api/remediations/{quote(proposal_id, safe='')}"
    return f"{path}/{action}" if action else path


def remediation_url(base: str | None, proposal_id: str, action: str = "") -> str | None:
    """The absolute URL of a proposal's page (or action) under `base`, None without a base."""
    if not base:
        return None
    return base.rstrip("/") + remediation_path(proposal_id, action)


def report_url(base: str | None, run_id: str) -> str | None:
    """`<ALERT_REPORT_BASE_URL>/<run id>`, None without a base."""
    if not base:
        return None
    return f"{base.rstrip('/')}/{quote(run_id, safe='')}"
