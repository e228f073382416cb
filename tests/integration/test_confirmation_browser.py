"""The confirmation page in a real headless browser (Debian's chromium, installed by `make test`):
open the GET page, approve through its form, see the status change.

The page is served by `python -m devkit.devserver`'s server, which hands each request to
function_app's functions unchanged; the approver's bearer token stands in for the sign-in a
deployment puts in front of the page.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from auditor.core.proposals import State
from devkit.devserver import DevServer
from tests.support.remediation_app import approval_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Any) -> Iterator[webdriver.Chrome]:
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium/chromedriver missing: run the README's test command (make test)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_open_approve_and_see_the_status(
    azurite: str, app_functions: dict[str, Any], browser: webdriver.Chrome
) -> None:
    boxes = {"keep": None, "lose": None, "off": True}
    with approval_app(azurite, app_functions, False, boxes, "keep@contoso.com\n") as app:
        proposal = app.env.proposals()["organisation"]
        token = app.issuer.token()
        with DevServer(app_functions.values(), port=0, inject_token=token) as server:
            browser.get(f"{server.url}/api/remediations/{proposal.id}")
            assert browser.find_element(By.ID, "plan-hash").text == proposal.plan_hash
            assert browser.find_element(By.ID, "state").text == "proposed"
            assert "lose@contoso.com" in browser.find_element(By.ID, "loses").text
            assert app.env.store.get(proposal.id).state is State.PROPOSED  # GET changed nothing

            browser.find_element(By.ID, "approve").click()
            link = WebDriverWait(browser, 60).until(
                expected_conditions.presence_of_element_located((By.ID, "status-link"))
            )
            assert "Approved" in browser.title or "Approved" in browser.page_source
            link.click()
            WebDriverWait(browser, 60).until(
                expected_conditions.text_to_be_present_in_element((By.ID, "state"), "applied")
            )
            assert "Ada Approver" in browser.find_element(By.ID, "approver").text
            assert "approved" in browser.find_element(By.ID, "trail").text

            # The page now says it can no longer be approved.
            browser.get(f"{server.url}/api/remediations/{proposal.id}")
            assert browser.find_element(By.ID, "state").text == "applied"
            assert not browser.find_elements(By.ID, "approve")
        assert app.env.emulator.state.org_disabled is True
        assert app.env.setting("keep") is False
