"""The trend chart across runs: which runs count, the order, the scale, the table fallback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auditor.core.records import RunRecord
from auditor.reports.findings import render_html
from auditor.reports.trend import HEIGHT, PAD, WIDTH, trend
from tests.support.report_fixtures import demo_evaluation

START = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def _run(day: int, status: str = "complete", **counts: int) -> RunRecord:
    return RunRecord(
        run_id=f"run-{day:02d}",
        tenant="contoso.onmicrosoft.com",
        status=status,
        started_at=START + timedelta(days=day),
        complete=status == "complete",
        counts=counts,
    )


def test_fewer_than_two_judged_runs_draw_nothing() -> None:
    assert trend([]) is None
    assert trend([_run(0, fail=3)]) is None
    # A failed or abandoned run judged nothing: its missing counts are not zeros.
    assert trend([_run(0, fail=3), _run(1, "failed"), _run(2, "abandoned")]) is None


def test_runs_are_oldest_first_and_failed_runs_are_left_out() -> None:
    runs = [
        _run(2, fail=1, mailboxes_enabled=5),
        _run(0, fail=4, mailboxes_enabled=8),
        _run(1, "failed"),
        _run(3, "incomplete", fail=2, unknown=7),
    ]
    chart = trend(runs)  # newest first, as the store lists them, or any order
    assert chart is not None
    assert [r.run_id for r in chart.runs] == ["run-00", "run-02", "run-03"]
    fail = next(s for s in chart.series if s.label == "fail")
    assert [p.value for p in fail.points] == [4, 1, 2]
    assert [p.complete for p in fail.points] == [True, True, False]
    assert chart.rows()[0] == ["run-03", "incomplete", "0", "2", "0", "7"]


def test_points_span_the_plot_and_scale_to_the_largest_value() -> None:
    chart = trend([_run(0, mailboxes_enabled=100, fail=50), _run(1, mailboxes_enabled=0)])
    assert chart is not None and chart.top == 100
    enabled = next(s for s in chart.series if s.label == "enabled")
    first, last = enabled.points
    assert (first.x, first.y) == (PAD, PAD)  # the largest value touches the top
    assert (last.x, last.y) == (WIDTH - PAD, HEIGHT - PAD)  # zero sits on the axis
    fail = next(s for s in chart.series if s.label == "fail")
    assert fail.points[0].y == HEIGHT - PAD - (HEIGHT - 2 * PAD) / 2
    assert enabled.path == f"{PAD:.1f},{PAD:.1f} {WIDTH - PAD:.1f},{HEIGHT - PAD:.1f}"


def test_upto_ends_the_chart_at_the_run_shown_and_limit_keeps_the_latest() -> None:
    runs = [_run(day, fail=day) for day in range(40)]
    chart = trend(runs, upto="run-10")
    assert chart is not None and chart.runs[-1].run_id == "run-10" and len(chart.runs) == 11
    latest = trend(runs)
    assert latest is not None and len(latest.runs) == 30 and latest.runs[0].run_id == "run-10"


def test_the_report_carries_the_chart_only_when_given() -> None:
    evaluation = demo_evaluation(inherited=3)
    assert 'id="trend"' not in render_html(evaluation)
    page = render_html(evaluation, trend=trend([_run(0, fail=9), _run(1, fail=3)]))
    assert page.count("<polyline") == 4 and "Trend over 2 runs" in page
    assert "fail 3" in page  # the legend names the latest figures
