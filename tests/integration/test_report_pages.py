"""The HTML reports in headless chromium: the root cause above the fold, dark mode, a 390 px
phone without horizontal scrolling, and the whole report readable with scripts off."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from auditor.core.records import RunRecord
from auditor.reports.findings import render
from auditor.reports.history import render_runs
from auditor.reports.trend import trend
from tests.support.browser import chromium, emulate, scripts, serve_pages
from tests.support.report_fixtures import EVALUATED_AT, demo_evaluation


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[webdriver.Chrome, str]]:
    evaluation = demo_evaluation(inherited=2652, explicit=4)
    run = RunRecord(
        run_id="20261126T020000Z-abc",
        tenant="contoso.onmicrosoft.com",
        status="complete",
        started_at=EVALUATED_AT,
        complete=True,
        counts={"mailboxes": 2662, "mailboxes_enabled": 2656, "fail": 2654, "exempt": 4},
    )
    # Two weeks of nights: the organisation fixed on the eighth (enabled falls to the pins).
    nights = [
        RunRecord(
            run_id=f"202611{12 + day:02d}T020000Z-abc",
            tenant=run.tenant,
            status="incomplete" if day == 3 else "complete",
            started_at=EVALUATED_AT - timedelta(days=14 - day),
            complete=day != 3,
            counts={
                "mailboxes_enabled": 2656 if day < 8 else 6,
                "fail": 2654 if day < 8 else 2,
                "exempt": 4,
                "unknown": 1 if day == 3 else 0,
            },
        )
        for day in range(14)
    ]
    pages = {
        "/findings.html": render(evaluation, "html", trend=trend([*nights, run])),
        "/runs.html": render_runs([run], "html"),
    }
    with (
        serve_pages(pages) as base,
        chromium(tmp_path_factory.mktemp("profile")) as driver,
    ):
        yield driver, base


def _background(driver: webdriver.Chrome) -> tuple[int, ...]:
    colour = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    return tuple(int(x) for x in colour[colour.index("(") + 1 : -1].split(",")[:3])


def test_root_cause_and_its_fix_are_above_the_fold(site: tuple[webdriver.Chrome, str]) -> None:
    driver, base = site
    emulate(driver, width=1280, height=800)
    driver.get(f"{base}/findings.html")
    root = driver.find_element(By.ID, "root-cause")
    fix = driver.find_element(By.ID, "org-fix")
    assert root.text == "1 change fixes 2652 mailboxes"
    assert "Set-TransportConfig -SmtpClientAuthenticationDisabled $true" in fix.text
    for element in (root, fix):
        assert element.is_displayed()
        assert element.location["y"] + element.size["height"] <= 800
    # The 2,652 inherited mailboxes are one collapsed group with counts by type.
    details = driver.find_element(By.ID, "inherited-list")
    assert details.get_attribute("open") is None
    assert "SharedMailbox" in driver.find_element(By.ID, "t-inherited-types").text
    # Severity, rationale and fix of every control are on the page.
    controls = driver.find_element(By.ID, "controls").text
    assert "severity high" in controls and "cannot enforce MFA" in controls


def test_trend_chart_sits_below_the_root_cause(site: tuple[webdriver.Chrome, str]) -> None:
    driver, base = site
    emulate(driver, width=390, height=844)
    driver.get(f"{base}/findings.html")
    chart = driver.find_element(By.CSS_SELECTOR, "#trend svg")
    assert chart.is_displayed() and chart.size["width"] <= 390
    assert chart.location["y"] > driver.find_element(By.ID, "root-cause").location["y"]
    assert len(chart.find_elements(By.TAG_NAME, "polyline")) == 4
    # 15 runs, one of them incomplete (a hollow dot); the figures are a table too.
    assert "Trend over 15 runs" in driver.find_element(By.CSS_SELECTOR, "#trend h2").text
    legend = driver.find_element(By.CSS_SELECTOR, "#trend figcaption").text
    assert "enabled 2656" in legend and "fail 2654" in legend
    rows = driver.execute_script("return document.querySelectorAll('#t-trend tbody tr').length")
    assert rows == 15


def test_search_filters_rows_and_opens_the_group(site: tuple[webdriver.Chrome, str]) -> None:
    driver, base = site
    emulate(driver, width=1280)
    driver.get(f"{base}/findings.html")
    box = driver.find_element(By.CSS_SELECTOR, "input[data-filter='#t-inherited']")
    driver.find_element(By.CSS_SELECTOR, "#inherited-list summary").click()
    box.send_keys("user1000@")
    total, visible = driver.execute_script(
        "var rows = document.querySelectorAll('#t-inherited tbody tr');"
        "var shown = Array.prototype.filter.call(rows, function(r){ return !r.hidden; });"
        "return [rows.length, shown.map(function(r){ return r.textContent; })];"
    )
    assert total == 2652 and len(visible) == 1
    assert "user1000@contoso.com" in visible[0]


def test_dark_mode_follows_the_system(site: tuple[webdriver.Chrome, str]) -> None:
    driver, base = site
    emulate(driver, width=1280, dark=False)
    driver.get(f"{base}/findings.html")
    assert min(_background(driver)) > 200
    emulate(driver, width=1280, dark=True)
    driver.get(f"{base}/findings.html")
    assert max(_background(driver)) < 60


@pytest.mark.parametrize("page", ["/findings.html", "/runs.html"])
def test_a_390px_phone_needs_no_horizontal_scroll(
    site: tuple[webdriver.Chrome, str], page: str
) -> None:
    driver, base = site
    emulate(driver, width=390, height=844)
    driver.get(base + page)
    scroll, client = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert client == 390 and scroll <= client


def test_readable_without_scripts(site: tuple[webdriver.Chrome, str]) -> None:
    driver, base = site
    emulate(driver, width=1280)
    scripts(driver, enabled=False)
    try:
        driver.get(f"{base}/findings.html")
        assert "js" not in (driver.find_element(By.TAG_NAME, "html").get_attribute("class") or "")
        # No search box without the script; every row is still in the page, the group opens.
        boxes = driver.find_elements(By.CSS_SELECTOR, "input[data-filter]")
        assert boxes and not any(b.is_displayed() for b in boxes)
        driver.find_element(By.CSS_SELECTOR, "#inherited-list summary").click()
        rows = driver.execute_script(
            "return document.querySelectorAll('#t-inherited tbody tr').length"
        )
        first = driver.find_element(By.CSS_SELECTOR, "#t-inherited tbody tr")
        assert rows == 2652 and first.is_displayed()
        assert driver.find_element(By.ID, "root-cause").is_displayed()
    finally:
        scripts(driver, enabled=True)


def test_tables_have_captions_and_scoped_headers(site: tuple[webdriver.Chrome, str]) -> None:
    driver, base = site
    emulate(driver, width=1280)
    driver.get(f"{base}/findings.html")
    tables = driver.find_elements(By.TAG_NAME, "table")
    assert tables
    for table in tables:
        assert table.find_element(By.TAG_NAME, "caption").get_attribute("textContent").strip()
        heads = table.find_elements(By.CSS_SELECTOR, "thead th")
        assert heads and all(h.get_attribute("scope") == "col" for h in heads)


def test_report_escapes_tenant_values(tmp_path: Path) -> None:
    evaluation = demo_evaluation(inherited=3)
    hostile = evaluation.__class__(
        tenant="<script>alert(1)</script>",
        evaluated_at=evaluation.evaluated_at,
        snapshot_collected_at=evaluation.snapshot_collected_at,
        org_disabled=evaluation.org_disabled,
        findings=evaluation.findings,
        counts=evaluation.counts,
    )
    page = render(hostile, "html")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
