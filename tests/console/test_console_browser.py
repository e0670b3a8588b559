"""The console in a real browser: Debian's Chromium and chromedriver, driven by Selenium.

The scenario of issue 23: log in; find a lead by email; open its event; see the HubSpot
attempt's error text; press replay; see a new attempt appear; disable the connector and
see a new delivery wait; log out. The delivery worker is stepped by the test
(`run_once`), so each page shows a known state. A screenshot of every page visited is
written under the test's temporary directory (kept by pytest), listed when a step fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from leadrelay.core.app.server import Runtime
from leadrelay.core.delivery.worker import Worker
from tests.conftest import gitleads_body, signed_headers
from tests.console.helpers import PASSWORD, console_config
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.server import serve

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
HUBSPOT_TOKEN = "pat-browser-test-token"
WAIT_S = 15


def _browser_missing() -> str | None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        return (
            "Chromium and chromedriver are not installed (apt-get install -y chromium "
            "chromium-driver; .ci/run does it)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


class Browser:
    """A headless Chromium that screenshots every page it is asked to look at."""

    def __init__(self, base_url: str, shots: Path, profile: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        self.driver.set_page_load_timeout(WAIT_S)
        self.base_url = base_url
        self.shots = shots
        self.taken: list[Path] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        """Click `css` once it is on the page. The previous click may still be loading, so
        an element replaced between finding and clicking it is found again (bounded)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions

        def clicked(driver: Any) -> bool:
            element = expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, css))(driver)
            if not element:
                return False
            element.click()
            return True

        self._wait().until(clicked, message=f"{css} clicked")

    def section_text(self, css: str) -> str:
        return str(self.find(css).text)

    def row_texts(self, css: str, rows: str) -> list[str]:
        return [str(row.text) for row in self.find(css).find_elements("css selector", rows)]

    def until(self, condition: Callable[[], object], what: str) -> None:
        """Poll (bounded) until `condition()` is truthy; a page replaced while it was being
        read (a form submitted a moment ago) counts as not yet."""
        self._wait().until(lambda _driver: condition(), message=what)

    def _wait(self) -> Any:
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(
            self.driver,
            WAIT_S,
            poll_frequency=0.1,
            ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
        )

    def text(self) -> str:
        return str(self.find("body").text)

    def shot(self, name: str) -> None:
        path = self.shots / f"{len(self.taken) + 1:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        self.taken.append(path)

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture
def browser_setup(
    tmp_path: Path, sqlite_url: str
) -> Iterator[tuple[Browser, Runtime, FakeHubSpot]]:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    hubspot = FakeHubSpot(tokens={HUBSPOT_TOKEN: {"crm.objects.contacts.write"}})
    with serve(hubspot.app) as destination:
        config = console_config(
            sqlite_url,
            connectors={
                "crm": {
                    "type": "hubspot",
                    "access_token": HUBSPOT_TOKEN,
                    "base_url": destination.base_url,
                }
            },
        )
        runtime = Runtime.build(config)
        runtime.store.migrate()
        with serve(runtime.app) as leadrelay:
            shots = tmp_path / "screenshots"
            shots.mkdir()
            browser = Browser(leadrelay.base_url, shots, tmp_path / "chromium-profile")
            try:
                yield browser, runtime, hubspot
            except BaseException:
                raise
            finally:
                browser.quit()
        runtime.stop()
    hubspot.close()


def _post_lead(runtime: Runtime, base_url: str, n: int) -> None:
    body = gitleads_body(n)
    answer = requests.post(
        f"{base_url}/webhooks/gitleads",
        data=body,
        headers=signed_headers("gitleads", body),
        timeout=10,
    )
    assert answer.json()["status"] == "accepted"


def _deliver(runtime: Runtime) -> int:
    # A fresh worker reads the connector's enabled state now, not from a few seconds ago.
    return Worker(runtime.config, runtime.store).run_once("crm")


def test_an_operator_finds_a_failed_lead_replays_it_and_pauses_the_connector(
    browser_setup: tuple[Browser, Runtime, FakeHubSpot], request: pytest.FixtureRequest
) -> None:
    browser, runtime, hubspot = browser_setup
    try:
        _scenario(browser, runtime, hubspot)
    except BaseException:
        with_shot = [str(p) for p in browser.taken]
        try:
            browser.shot("at-failure")
            with_shot.append(str(browser.taken[-1]))
        except Exception:  # the browser itself may be what failed
            pass
        request.node.add_report_section("call", "screenshots", "\n".join(with_shot))
        raise


def _scenario(browser: Browser, runtime: Runtime, hubspot: FakeHubSpot) -> None:
    base_url = browser.base_url
    _post_lead(runtime, base_url, 41)
    hubspot.fail_next(
        status=400,
        body={
            "status": "error",
            "message": "Property values were not valid: phone is not a valid phone number",
            "category": "VALIDATION_ERROR",
        },
    )
    assert _deliver(runtime) == 1  # HubSpot refused it: dead at once (a 400 is permanent)

    # Log in (every console URL leads to the login first).
    browser.open("/console/events")
    browser.until(
        lambda: browser.driver.current_url.startswith(base_url + "/console/login"), "login"
    )
    browser.shot("login")
    browser.find("#username").send_keys("admin")
    browser.find("#password").send_keys(PASSWORD)
    browser.click("#login")
    browser.until(lambda: "Older events" in browser.text() or "dev41" in browser.text(), "events")

    # Find the lead by email and open its event.
    browser.find("#search").send_keys("DEV41@example.com")
    browser.click("#search-button")
    browser.until(
        lambda: len(browser.driver.find_elements("css selector", "a.event-link")) == 1, "hit"
    )
    browser.shot("search")
    browser.click("a.event-link")
    browser.until(lambda: "Event evt_" in browser.text(), "event page")
    browser.shot("event-dead")

    # HubSpot's own words are on the page (read through `until`: a page still settling
    # after the click is read again, never half).
    browser.until(
        lambda: (
            "dead" in browser.section_text("#delivery-crm")
            and "phone is not a valid phone number" in browser.section_text("#delivery-crm")
            and len(browser.row_texts("#delivery-crm", "tr.attempt")) == 1
        ),
        "the dead delivery with HubSpot's error and one attempt",
    )

    # Replay to this connector; the next worker pass delivers; a second attempt appears.
    browser.click("#replay-crm")
    browser.until(lambda: "1 deliveries queued again." in browser.text(), "replayed")
    assert _deliver(runtime) == 1
    browser.driver.refresh()
    browser.until(
        lambda: (
            [("delivered" in row) for row in browser.row_texts("#delivery-crm", "tr.attempt")]
            == [False, True]
        ),
        "a second, delivered attempt",
    )
    browser.shot("event-replayed")
    assert hubspot.contacts  # the contact reached HubSpot

    # Disable the connector: a new lead's delivery waits instead of going out.
    browser.click("a[href='/console/connectors']")
    browser.click("#toggle-crm")
    browser.until(lambda: "disabled in the console by admin" in browser.text(), "disabled")
    browser.shot("connectors-disabled")
    _post_lead(runtime, base_url, 42)
    assert _deliver(runtime) == 0
    browser.open("/console/events?q=dev42%40example.com")
    browser.click("a.event-link")
    browser.until(
        lambda: (
            "Event evt_" in browser.text()
            and "waiting: connector disabled: disabled in the console by admin" in browser.text()
        ),
        "the second event, waiting",
    )
    browser.shot("event-waiting")

    # The overview and the dead letters render too.
    browser.open("/console/")
    browser.until(lambda: "Events per hour" in browser.text(), "overview")
    browser.shot("overview")
    browser.open("/console/deliveries?status=dead")
    browser.until(lambda: "Dead letters" in browser.text(), "dead letters")
    browser.shot("dead-letters")

    # Log out: the console is closed again.
    browser.click("#logout")
    browser.until(lambda: "Logged out." in browser.text(), "logged out")
    browser.open("/console/")
    browser.until(
        lambda: browser.driver.current_url.startswith(base_url + "/console/login"), "closed"
    )
