"""The confirmation page in a real headless browser (Debian's chromium, installed by `make test`):
open the GET page, approve through its form, see the status change.

The page is served by `python -m devkit.devserver`'s server, which hands each request to
function_app's functions unchanged; the approver's bearer token stands in for the sign-in a
deployment puts in front of the page.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from auditor.core.proposals import State
from devkit.devserver import DevServer
from tests.support.browser import chromium
from tests.support.remediation_app import approval_app


@pytest.fixture
def browser(tmp_path: Any) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path / "profile") as driver:
        yield driver


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


EVIL_PAGE = """<!DOCTYPE html><html><head><title>evil</title></head><body>
<form id='f' method='post' action='{approve}'>
<input type='hidden' name='plan_hash' value='{plan_hash}'></form>
<script>
const body = JSON.stringify({{plan_hash: '{plan_hash}'}});
Promise.allSettled([
  // No content type at all (a Blob without a type), and text/plain: neither is preflighted.
  fetch('{approve}', {{method: 'POST', mode: 'no-cors', body: new Blob([body])}}),
  fetch('{approve}', {{method: 'POST', mode: 'no-cors', body: body}}),
  fetch('{approve}', {{method: 'POST', mode: 'no-cors',
    headers: {{'Content-Type': 'application/x-www-form-urlencoded'}},
    body: 'plan_hash={plan_hash}'}}),
]).then(() => {{ document.title = 'sent'; }});
</script></body></html>"""


@contextmanager
def evil_site(page: str) -> Iterator[str]:
    """Another origin (another loopback port) serving an attacker's page."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_cross_site_no_cors_approval_is_refused(
    azurite: str, app_functions: dict[str, Any], browser: webdriver.Chrome
) -> None:
    boxes = {"erp": False, "ok": True}
    with approval_app(azurite, app_functions, True, boxes) as app:
        proposal = app.env.proposals()["mailboxes"]
        with DevServer(app_functions.values(), port=0, inject_token=app.issuer.token()) as server:
            approve = f"{server.url}/api/remediations/{proposal.id}/approve"
            page = EVIL_PAGE.format(approve=approve, plan_hash=proposal.plan_hash)
            with evil_site(page) as evil:
                browser.get(evil)
                WebDriverWait(browser, 30).until(expected_conditions.title_is("sent"))
                browser.execute_script("document.getElementById('f').submit()")
                WebDriverWait(browser, 30).until(
                    lambda b: "refused" in b.page_source or "403" in b.page_source
                )
            server.wait_for_queue()
            # Every attempt reached the dev server and was refused there (3 fetches, 1 form).
            assert len(server.refused) >= 4, server.refused
        record = app.env.store.get(proposal.id)
        assert record.state is State.PROPOSED
        assert [e.event for e in app.env.store.trail(proposal.id)] == ["proposed"]
        assert not [r for r in app.env.emulator.requests if r.cmdlet.startswith("Set-")]
        assert app.env.setting("erp") is False


def test_dev_server_checks_host_and_wants_the_form_token(
    azurite: str, app_functions: dict[str, Any]
) -> None:
    with approval_app(azurite, app_functions, True, {"erp": False}) as app:
        proposal = app.env.proposals()["mailboxes"]
        with (
            DevServer(app_functions.values(), port=0, inject_token=app.issuer.token()) as server,
            httpx.Client() as http,
        ):
            url = f"{server.url}/api/remediations/{proposal.id}/approve"
            body = json.dumps({"plan_hash": proposal.plan_hash})
            json_type = {"Content-Type": "application/json"}
            # DNS rebinding: a foreign name that resolves to loopback.
            rebound = http.post(url, content=body, headers={**json_type, "Host": "evil.test"})
            assert rebound.status_code == 403
            # No bearer token of its own: signed in by the dev server, so the form token is due.
            forged = http.post(url, content=body, headers=json_type)
            assert forged.status_code == 403, forged.text
            assert "anti-forgery" in forged.json()["message"]
            # A client that brings its own bearer token is not a browser session.
            own = http.post(
                url,
                content=body,
                headers={**json_type, "Authorization": f"Bearer {app.issuer.token()}"},
            )
            assert own.status_code == 200, own.text
        assert app.env.setting("erp") is None
