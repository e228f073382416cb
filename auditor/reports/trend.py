"""The trend of a tenant across runs: enabled, fail, exempt and unknown per run, as inline SVG.

Drawn from the runs table (`RunRecord.counts`), so it costs one query and no evidence read.
Only runs that judged evidence count: `complete`, `incomplete` and `suspect` runs (a failed or
abandoned run has no counts, and a zero there would read as "fixed"). An incomplete run's
dot is hollow: its figures are a lower bound, never a pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from auditor.core.records import RunRecord

__all__ = ["SERIES", "Trend", "Series", "trend"]

# (label, key in RunRecord.counts, CSS colour variable of the shared stylesheet)
SERIES = (
    ("enabled", "mailboxes_enabled", "--link"),
    ("fail", "fail", "--fail"),
    ("exempt", "exempt", "--pass"),
    ("unknown", "unknown", "--unknown"),
)
JUDGED = frozenset({"complete", "incomplete", "suspect"})
WIDTH, HEIGHT, PAD = 600, 180, 28  # SVG user units; the image scales to the page width


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    value: int
    complete: bool


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    colour: str
    points: tuple[Point, ...]

    @property
    def path(self) -> str:
        """The `points` attribute of the series' polyline."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def last(self) -> int:
        return self.points[-1].value


@dataclass(frozen=True, slots=True)
class Trend:
    runs: tuple[RunRecord, ...]  # oldest first
    series: tuple[Series, ...]
    top: int  # the value at the top of the y axis
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD

    @property
    def first_label(self) -> str:
        return self.runs[0].started_at.strftime("%Y-%m-%d")

    @property
    def last_label(self) -> str:
        return self.runs[-1].started_at.strftime("%Y-%m-%d")

    @property
    def columns(self) -> tuple[str, ...]:
        return ("Run", "Status", *(label for label, _, _ in SERIES))

    def rows(self) -> list[list[str]]:
        """The same figures as a table (newest first), for readers without the picture."""
        return [
            [
                run.run_id,
                run.status,
                *(str(run.counts.get(key, 0)) for _, key, _ in SERIES),
            ]
            for run in reversed(self.runs)
        ]


def trend(runs: Sequence[RunRecord], *, upto: str | None = None, limit: int = 30) -> Trend | None:
    """The chart of the last `limit` judged runs up to run `upto` (inclusive; default: all),
    oldest on the left. None with fewer than two judged runs: one dot is no trend."""
    ordered = sorted(runs, key=lambda r: (r.started_at, r.run_id))
    if upto is not None:
        ids = [r.run_id for r in ordered]
        if upto in ids:
            ordered = ordered[: ids.index(upto) + 1]
    judged = tuple(r for r in ordered if r.status in JUDGED)[-limit:]
    if len(judged) < 2:
        return None
    top = max(1, *(r.counts.get(key, 0) for r in judged for _, key, _ in SERIES))
    span_x = WIDTH - 2 * PAD
    span_y = HEIGHT - 2 * PAD
    step = span_x / (len(judged) - 1)
    series = tuple(
        Series(
            label=label,
            colour=colour,
            points=tuple(
                Point(
                    x=PAD + index * step,
                    y=HEIGHT - PAD - span_y * run.counts.get(key, 0) / top,
                    value=run.counts.get(key, 0),
                    complete=run.status == "complete",
                )
                for index, run in enumerate(judged)
            ),
        )
        for label, key, colour in SERIES
    )
    return Trend(runs=judged, series=series, top=top)
