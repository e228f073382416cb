"""The nightly audit timer: collect, evaluate, record, alert, propose."""

from __future__ import annotations

import logging

import azure.functions as func

__all__ = ["blueprint"]

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]


@blueprint.function_name("nightly_audit")
@blueprint.timer_trigger(
    schedule="%AUDIT_SCHEDULE%",
    arg_name="timer",
    run_on_startup=False,
    use_monitor=True,
)
def nightly_audit(timer: func.TimerRequest) -> None:
    """The schedule comes from the AUDIT_SCHEDULE app setting (NCRONTAB, UTC; infra sets it,
    local runs read it from local.settings.json). A failed or partial collection raises after
    it is recorded, so the host marks the invocation failed. Logs carry the run id, counts and
    durations only, never mailbox lists or tokens.
    """
    from auditor.app.audit import audit_from_settings
    from auditor.app.settings import Settings

    if timer.past_due:
        logging.getLogger("auditor.timer").warning(
            "audit timer past_due=true: a scheduled run was missed (host down or overrunning)"
        )
    _sweep_remediations()
    audit_from_settings(Settings.from_env())


def _sweep_remediations() -> None:
    """Resume stuck remediations (lease passed, queue message lost) before the audit. Never
    stops the audit: remediation may not be configured, or storage may be down."""
    from auditor.core.errors import AuditorError
    from auditor.web.runtime import service

    log = logging.getLogger("auditor.remediation")
    try:
        resumed = service().sweep()
    except AuditorError as exc:
        log.warning("remediation sweep skipped: %s", exc)
        return
    for record in resumed:
        log.info("remediation %s resumed by the sweep: %s", record.id, record.state.value)
