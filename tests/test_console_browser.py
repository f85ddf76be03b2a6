"""The operator's console in headless Chromium against a running stack (the shim of `make run`,
a worker, moto's server): the chart of real jobs, a failure in red with its timeline, a cancel
that says what it did. Screenshots go to test-output/ as the page's do."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.conftest import OUTPUT, wait_until
from tests.http_shim import Shim, http, running_shim
from tests.test_page import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def shim(stack) -> Iterator[Shim]:
    with running_shim(stack.env, "console") as server:
        yield server


@pytest.fixture
def page(shim):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # A Content-Security-Policy refusal is a console error, not a page error (the
        # console's own only: the submission page is tests/test_page.py's).
        page.on(
            "console",
            lambda m: (
                errors.append(m.text) if m.type == "error" and "/console/" in page.url else None
            ),
        )
        yield page
        browser.close()
        assert not errors, errors


def test_console_charts_real_jobs_shows_a_failure_and_cancels(shim, module_worker, page):
    OUTPUT.mkdir(exist_ok=True)
    done = shim.submit("tasks.debug.add", {"x": 1, "y": 2})
    failed = shim.submit("tasks.debug.fail", {"message": "not for the console's eyes"})
    running = shim.submit("tasks.debug.sleep", {"seconds": 30, "steps": 30})
    assert shim.wait(done)["status"] == "SUCCESS"
    assert shim.wait(failed)["status"] == "FAILURE"

    # Now: the page links to it; the chart draws the finished jobs; failures are red.
    page.goto(shim.url + "/")
    page.click("#console-link")
    # Polled from Python: the console's CSP refuses Playwright's eval of a predicate.
    wait_until(
        lambda: int(page.get_attribute("#finished-chart", "data-total") or 0) >= 2,
        20,
        message="the chart drawn with the finished jobs",
    )
    chart = http("GET", f"{shim.url}/console/api/chart").body
    assert sum(chart["series"]["SUCCESS"]) >= 1 and sum(chart["series"]["FAILURE"]) >= 1
    assert page.locator("#finished-chart").bounding_box()["height"] > 100
    # Durations per task and outcome, from the records (add SUCCESS, fail FAILURE at least).
    wait_until(
        lambda: int(page.get_attribute("#durations-chart", "data-tasks") or 0) >= 2,
        20,
        message="the durations chart drawn",
    )
    assert "bad" in page.get_attribute("#box-failures", "class")
    assert "failed job(s) in the last hour" in page.text_content("#attention")
    assert re.fullmatch(r"updated \d+ s ago", page.text_content("#updated"))
    page.screenshot(path=str(OUTPUT / "console-now.png"), full_page=True)
    page.click(".ranges a[data-range='day']")
    wait_until(
        lambda: "in the last day" in (page.text_content("#chart-note") or ""),
        20,
        message="the day's charts",
    )

    # Jobs: the failure is red in the listing; its page is its timeline, its error's type.
    page.click("nav a:text('Jobs')")
    row = page.locator(f"#jobs tr[data-id='{failed}']")
    assert "bad" in row.get_attribute("class")
    row.locator("a").click()
    page.wait_for_selector("#job-status.bad")
    timeline = page.text_content("#timeline")
    assert "started" in timeline and "finished FAILURE" in timeline
    assert "RuntimeError" in page.text_content("#job-error")
    assert "not for the console's eyes" not in page.content()
    page.screenshot(path=str(OUTPUT / "console-failed-job.png"), full_page=True)

    # Cancel, confirmed: the page says what was done, and the job stops.
    wait_until(
        lambda: shim.job(running)["status"] in ("STARTED", "PROGRESS"), 30, message="running"
    )
    page.goto(f"{shim.url}/console/jobs/{running}")
    page.click("#cancel")
    page.click("#confirm")
    said = page.text_content("#said")
    assert said.startswith(f"job {running} revoked (was ") and "PENDING" not in said
    page.screenshot(path=str(OUTPUT / "console-cancelled.png"), full_page=True)
    assert shim.wait(running, timeout=30)["status"] == "REVOKED"
