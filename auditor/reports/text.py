"""Plain-text tables that fit the terminal: cells cut with "…" (full values in json/csv)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DEFAULT_WIDTH", "fit", "table"]

DEFAULT_WIDTH = 100
_GAP = 2
_MIN = 6


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, the last one "…" when something was cut."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…" if width > 0 else ""


def _widths(
    columns: Sequence[str], rows: Sequence[Sequence[str]], width: int, keep: Sequence[int]
) -> list[int]:
    natural = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    widths = list(natural)
    budget = max(width, 20) - _GAP * (len(columns) - 1)
    # Shrink the widest column one step at a time until the row fits (never below _MIN); the
    # columns in `keep` (identifiers) only once the others cannot give any more.
    for pool in ([i for i in range(len(widths)) if i not in keep], list(range(len(widths)))):
        while pool and sum(widths) > budget:
            widest = max(pool, key=lambda i: widths[i])
            if widths[widest] <= _MIN:
                break
            widths[widest] -= 1
    return widths


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int = DEFAULT_WIDTH,
    *,
    keep: Sequence[int] = (0,),
) -> list[str]:
    """The header and rows as lines of at most `width` characters (when that is possible);
    the columns in `keep` (by default the first, an identifier) are cut last."""
    widths = _widths(columns, rows, width, keep)
    gap = " " * _GAP

    def line(cells: Sequence[str]) -> str:
        return gap.join(fit(v, w).ljust(w) for v, w in zip(cells, widths, strict=True)).rstrip()

    return [line(columns), *(line(r) for r in rows)]
