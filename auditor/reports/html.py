"""The HTML pages' one Jinja2 environment: templates in `auditor/reports/templates`, autoescaped.

Every HTML page (findings report, runs, history, inventory, and the web layer's confirmation,
status and message pages) extends `base.html.j2`, which carries the one small inline
stylesheet (light and dark via `prefers-color-scheme`, readable at 390 px) and the small
offline script for sorting, filtering and searching tables. Pages are fully readable without
the script: it only adds the search box and sortable headers.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

__all__ = ["environment", "render_page"]


@cache
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("auditor.reports", "templates"),
        autoescape=select_autoescape(("html", "html.j2", "j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(template: str, **context: Any) -> str:
    """Render `templates/<template>` with `context` (every value is escaped)."""
    return environment().get_template(template).render(**context)
