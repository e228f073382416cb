"""Usage evidence in the nightly audit, end to end: the Exchange emulator, the Graph sign-in
stand-in and Azurite over real HTTP. Stale and unapproved findings, the incremental watermark,
the stored `signins` blob that `show`/`replay` judge again, and unknown evidence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditor.app.audit import run_audit
from auditor.app.queries import run_evaluation
from auditor.app.usage import SIGNINS_BLOB, UsageCollector, incremental_usage, stored_usage
from auditor.core.model import Status
from auditor.core.usage import UsageEvidence, UsageState
from auditor.graph.signins import SignInReader
from auditor.identity.tokens import StaticToken
from auditor.reports.findings import findings_document, render_text
from devkit.graph_emulator import GraphEmulator
from tests.support.builders import EMULATOR_TOKEN, emulator_collector
from tests.support.store_helpers import new_store

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
GRAPH_TOKEN = "graph-token"


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    with GraphEmulator(token=GRAPH_TOKEN) as emulator:
        yield emulator


def usage_from(graph: GraphEmulator, http: httpx.Client, lookback: int = 30) -> UsageCollector:
    reader = SignInReader(
        base_url=graph.url,
        tokens=StaticToken(GRAPH_TOKEN),
        http=http,
        sleep=lambda _: None,
        min_interval=0,
    )

    def collect(now: datetime, previous: UsageEvidence | None) -> UsageEvidence:
        return incremental_usage(
            lambda since, at, days: reader.read(since, now=at, lookback_days=days),
            now,
            previous,
            lookback,
        )

    return collect


def pick(emu: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An explicitly enabled mailbox (allowlisted, unused), an inheriting one (allowlisted, used)
    and an inheriting one nobody approved (used)."""
    explicit = next(
        r for r in emu.state.cas.values() if r["SmtpClientAuthenticationDisabled"] is False
    )
    inheriting = [
        r for r in emu.state.cas.values() if r["SmtpClientAuthenticationDisabled"] is None
    ]
    return explicit, inheriting[0], inheriting[1]


def sign_in(
    graph: GraphEmulator, emu: Any, record: dict[str, Any], at: datetime, **kw: Any
) -> None:
    upn = emu.state.mailboxes[record["Guid"]]["UserPrincipalName"]
    graph.add_signin(upn=upn, user_id=record["ExternalDirectoryObjectId"], at=at, **kw)


def test_stale_unapproved_stored_and_incremental(
    azurite: str, exchange_emulator: Any, graph: GraphEmulator, tmp_path: Path
) -> None:
    emu = exchange_emulator
    store = new_store(azurite)
    stale, used, rogue = pick(emu)
    allowlist = tmp_path / "allow.txt"
    allowlist.write_text(f"{stale['PrimarySmtpAddress']}\n{used['PrimarySmtpAddress']}\n")
    sign_in(graph, emu, used, T0 - timedelta(days=3))
    sign_in(graph, emu, rogue, T0 - timedelta(hours=5), ip="198.51.100.77", app="Old Scanner")
    sign_in(graph, emu, rogue, T0 - timedelta(hours=6), error_code=50126)
    sign_in(graph, emu, stale, T0 - timedelta(days=1), error_code=50126)  # failures are not use
    with httpx.Client(timeout=30) as http:
        collect = emulator_collector(emu, http, EMULATOR_TOKEN)
        first = run_audit(
            store=store,
            collect=collect,
            tenant=emu.domain,
            allowlist_path=allowlist,
            clock=lambda: T0,
            usage=usage_from(graph, http),
        )
        evaluation = first.evaluation
        assert evaluation is not None
        by_control: dict[str, list[Any]] = {}
        for f in evaluation.findings:
            by_control.setdefault(f.control, []).append(f)
        (stale_finding,) = by_control["SMTPAUTH-EXCEPTION-STALE"]
        assert stale_finding.subject == stale["PrimarySmtpAddress"]
        assert "1 failed attempt(s)" in stale_finding.reason
        (unapproved,) = by_control["SMTPAUTH-USAGE-UNAPPROVED"]
        assert unapproved.subject == rogue["PrimarySmtpAddress"]
        assert unapproved.status is Status.FAIL
        assert "from 198.51.100.77 (Old Scanner)" in unapproved.reason
        readiness = findings_document(evaluation)["readiness"]
        assert (readiness["used"], readiness["used_allowlisted"]) == (2, 1)
        assert readiness["break_at_org_switch"] == 1
        assert "1 will break at the organisation switch" in render_text(evaluation)
        assert "usage" in first.durations
        # kept with the run: `show` judges the same evidence again
        kept = stored_usage(store, first.run_id)
        assert kept is not None and kept.state is UsageState.COLLECTED and len(kept.signins) == 4
        _, shown = run_evaluation(store, first.run_id)
        assert {f.id for f in shown.findings} == {f.id for f in evaluation.findings}

        # the next night reads only from the watermark (less the overlap) and merges
        sign_in(graph, emu, stale, T0 + timedelta(hours=12), ip="203.0.113.9")
        graph.requests.clear()
        second = run_audit(
            store=store,
            collect=collect,
            tenant=emu.domain,
            allowlist_path=allowlist,
            clock=lambda: T0 + timedelta(days=1),
            usage=usage_from(graph, http),
        )
    (request,) = graph.requests
    assert request.query["$filter"][0].endswith("createdDateTime ge 2026-11-20T00:00:00Z")
    assert second.evaluation is not None
    controls = {f.control for f in second.evaluation.findings}
    assert "SMTPAUTH-EXCEPTION-STALE" not in controls  # it was used after all
    kept = stored_usage(store, second.run_id)
    assert kept is not None and len(kept.signins) == 5


@pytest.mark.parametrize("mode", ["licence", "permission"])
def test_unreadable_sign_ins_are_unknown_never_stale(
    azurite: str, exchange_emulator: Any, graph: GraphEmulator, tmp_path: Path, mode: str
) -> None:
    emu = exchange_emulator
    store = new_store(azurite)
    stale, _, _ = pick(emu)
    allowlist = tmp_path / "allow.txt"
    allowlist.write_text(f"{stale['PrimarySmtpAddress']}\n")
    graph.mode = mode
    with httpx.Client(timeout=30) as http:
        summary = run_audit(
            store=store,
            collect=emulator_collector(emu, http, EMULATOR_TOKEN),
            tenant=emu.domain,
            allowlist_path=allowlist,
            clock=lambda: T0,
            usage=usage_from(graph, http),
        )
    assert summary.evaluation is not None
    findings = summary.evaluation.findings
    unknown = [f for f in findings if f.control == "SMTPAUTH-USAGE-EVIDENCE"]
    assert len(unknown) == 1 and unknown[0].status is Status.UNKNOWN
    assert unknown[0].reason.count(mode) == 1
    assert not [f for f in findings if f.control == "SMTPAUTH-EXCEPTION-STALE"]
    assert not [f for f in findings if f.control == "SMTPAUTH-USAGE-UNAPPROVED"]
    kept = stored_usage(store, summary.run_id)
    assert kept is not None and kept.state is UsageState.UNKNOWN
    assert store.read_blob(summary.run_id, SIGNINS_BLOB) is not None
