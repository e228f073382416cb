"""The confirmation page of the demo's organisation fix (6 pins, the switch, 2,652 mailboxes that
lose SMTP AUTH) in headless chromium: Approve above the fold and again at the bottom, the long
list collapsed and sorted with a CSV download, a 390 px phone without horizontal scrolling, dark
mode; the dry run as a table and error pages with a way back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import unquote

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from auditor.core.proposals import (
    ORG_TARGET,
    Kind,
    Record,
    Result,
    Role,
    State,
    Target,
    TargetRecord,
)
from auditor.web.pages import confirmation_page, dry_run_page, message_page, status_page
from tests.support.browser import chromium, emulate, serve_pages

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def org_fix(losers: int = 2652) -> Record:
    targets: list[TargetRecord] = []
    for i in range(6):
        target = Target(f"pin-{i}", Role.PIN, f"app{i}@contoso.com", None, False, 1, "allowlisted")
        targets.append(TargetRecord(f"t{i}", target, True, Result.PENDING))
    org = Target(ORG_TARGET, Role.ORG, "organisation", False, True, 2, "org allows SMTP AUTH")
    targets.append(TargetRecord("org", org, True, Result.PENDING))
    for i in reversed(range(losers)):  # stored unsorted: the page sorts
        target = Target(
            f"l-{i}", Role.REVOKE, f"user{i:05d}@contoso.com", None, None, 3, "inherits"
        )
        targets.append(TargetRecord(f"l{i}", target, True, Result.PENDING))
    return Record(
        id="rev-org-9f9f",
        kind=Kind.REVOCATION,
        scope="organisation",
        tenant="contoso.onmicrosoft.com",
        run_id="20261126T020000Z-abc",
        created_at=NOW,
        expires_at=NOW,
        title="Disable SMTP AUTH for the organisation",
        plan_hash="ab" * 32,
        state=State.PROPOSED,
        etag="*",
        targets=tuple(targets),
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[webdriver.Chrome, str]]:
    record = org_fix()
    pages = {
        "/confirm": confirmation_page(
            record,
            approve_url="/api/remediations/rev-org-9f9f/approve",
            reject_url="/api/remediations/rev-org-9f9f/reject",
            status_url="/api/remediations/rev-org-9f9f/status",
            form_token="tok'en",
            approver="Ada Approver",
        ),
        "/dry-run": dry_run_page(
            record,
            [
                {"key": "pin-0", "display": "app0@contoso.com", "action": "apply", "detail": "x"},
                {"key": "org", "display": None, "action": "apply", "detail": "flip"},
            ],
            back="/confirm",
        ),
        "/error": message_page("409: plan_changed", "The plan changed.", back="/confirm"),
        "/status": status_page(record, []),
    }
    with serve_pages(pages) as base, chromium(tmp_path_factory.mktemp("p")) as driver:
        yield driver, base


def test_approve_is_above_the_fold_and_at_the_bottom(site: tuple[webdriver.Chrome, str]) -> None:
    driver, base = site
    emulate(driver, width=1280, height=800)
    driver.get(f"{base}/confirm")
    top = driver.find_element(By.ID, "approve")
    assert top.is_displayed() and top.location["y"] + top.size["height"] <= 800
    assert top.text == "Approve the organisation fix"
    assert driver.find_element(By.ID, "approve-bottom").get_attribute("type") == "submit"
    summary = driver.find_element(By.ID, "summary").text
    assert "1 change fixes 2652 mailbox(es)" in summary
    assert "2652 lose SMTP AUTH" in summary and "6 pinned to false" in summary
    # The long list is collapsed, sorted, and offered as CSV; the page is not 48,000 px tall.
    group = driver.find_element(By.ID, "loses-group")
    assert group.get_attribute("open") is None
    height = driver.execute_script("return document.documentElement.scrollHeight")
    assert height < 4000
    href = driver.find_element(By.ID, "loses-csv").get_attribute("href")
    assert href.startswith("data:text/csv")
    rows = unquote(href.split(",", 1)[1]).splitlines()
    assert rows[0] == "mailbox" and len(rows) == 2653
    assert rows[1:] == sorted(rows[1:]) and rows[1] == "user00000@contoso.com"
    names = driver.execute_script(
        "return Array.prototype.map.call(document.querySelectorAll('#loses td'),"
        " function(td){ return td.textContent; })"
    )
    assert names == sorted(names) and len(names) == 2652
    # The token is escaped into its attribute intact.
    assert driver.find_element(By.NAME, "csrf").get_attribute("value") == "tok'en"


@pytest.mark.parametrize("page", ["/confirm", "/dry-run", "/error", "/status"])
def test_phone_width_and_dark_mode(site: tuple[webdriver.Chrome, str], page: str) -> None:
    driver, base = site
    emulate(driver, width=390, height=844, dark=True)
    driver.get(base + page)
    scroll, client = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert client == 390 and scroll <= client
    colour = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert max(int(x) for x in colour[colour.index("(") + 1 : -1].split(",")[:3]) < 60


def test_dry_run_is_a_table_and_errors_lead_back(site: tuple[webdriver.Chrome, str]) -> None:
    driver, base = site
    emulate(driver, width=1280)
    driver.get(f"{base}/dry-run")
    cells = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#result tbody tr > *")]
    assert cells[:3] == ["app0@contoso.com", "apply", "x"]
    assert cells[3] == "org"  # no display name: the key, never "None"
    assert driver.find_element(By.ID, "back-link").get_attribute("href").endswith("/confirm")
    driver.get(f"{base}/error")
    driver.find_element(By.ID, "back-link").click()
    assert driver.current_url.endswith("/confirm")
