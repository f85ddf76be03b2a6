"""The page in headless Chromium (Debian's), driven by Playwright: submit, watch, read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import OUTPUT
from tests.http_shim import Shim, launch_shim, running_shim, stop_shim

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shim(stack) -> Iterator[Shim]:
    with running_shim(stack.env, "page") as server:
        yield server


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


def test_submit_watch_progress_and_result(shim, module_worker, page):
    OUTPUT.mkdir(exist_ok=True)
    page.goto(f"{shim.url}/#tasks.debug.sleep")
    page.wait_for_function("document.querySelectorAll('#task-select option').length >= 6")
    assert page.input_value("#task-select") == "tasks.debug.sleep"
    page.fill("input[name=seconds]", "3")
    page.fill("input[name=steps]", "6")
    page.click("#submit-button")

    page.wait_for_selector("#job-status.PROGRESS", timeout=30_000)
    fill = page.locator("#progress-fill")
    mid = int(fill.get_attribute("aria-valuenow"))
    assert 0 < mid < 100
    assert re.match(r"step \d of 6", page.text_content("#progress-text"))
    page.screenshot(path=str(OUTPUT / "page-progress.png"), full_page=True)

    page.wait_for_selector("#job-status.SUCCESS", timeout=60_000)
    assert fill.get_attribute("aria-valuenow") == "100"
    assert '"slept": 3' in page.text_content("#result-json")
    job_id = page.text_content("#job-id")
    row = page.locator(f"#history tr[data-id='{job_id}']")
    assert row.count() == 1 and "SUCCESS" in row.text_content()
    page.screenshot(path=str(OUTPUT / "page-success.png"), full_page=True)


def test_failure_and_validation_errors_are_shown(shim, module_worker, page):
    page.goto(f"{shim.url}/#tasks.debug.fail")
    page.wait_for_function("document.querySelectorAll('#task-select option').length >= 6")
    page.fill("textarea[name=message], input[name=message]", "shown on the page")
    page.click("#submit-button")
    page.wait_for_selector("#job-status.FAILURE", timeout=60_000)
    # The job's own message may quote its arguments: over HTTP only its type is shown.
    assert "RuntimeError" in page.text_content("#job-error")
    assert "shown on the page" not in page.text_content("#job-error")

    # A body the schema refuses: the API's 400 and its reasons are shown, nothing submitted.
    page.select_option("#task-select", "tasks.debug.add")
    page.click("#json-details summary")
    page.fill("#json-preview", '{"x": "one", "y": 2}')
    page.click("#submit-button")
    page.wait_for_selector("#form-error:not([hidden])")
    error = page.text_content("#form-error")
    assert "400" in error and "x: is not of type 'number'" in error
    page.screenshot(path=str(OUTPUT / "page-errors.png"), full_page=True)


def test_cross_origin_api_with_key(stack, shim, module_worker, page):
    """The page against another origin's API (as with a deployed API Gateway): CORS and a key."""
    keyed = launch_shim({**stack.env, "JOBS_API_KEYS": "page-key"}, "page-keyed")
    try:
        page.goto(shim.url + "/")
        page.wait_for_function("document.querySelectorAll('#task-select option').length >= 6")
        page.click("#connection summary")
        page.fill("#base-url", keyed.url)
        page.fill("#api-key", "wrong-key")
        page.click("#connection-form button")
        page.wait_for_selector("#form-error:not([hidden])")
        assert "403" in page.text_content("#form-error")

        page.click("#connection summary")
        page.fill("#api-key", "page-key")
        page.click("#connection-form button")
        page.wait_for_function("document.getElementById('form-error').hidden")
        page.select_option("#task-select", "tasks.debug.add")
        page.fill("input[name=x]", "40")
        page.fill("input[name=y]", "2")
        page.click("#submit-button")
        page.wait_for_selector("#job-status.SUCCESS", timeout=60_000)
        assert page.text_content("#result-json").strip() == "42"
    finally:
        stop_shim(keyed)


def test_recent_jobs_lists_everyones_jobs_by_status(shim, module_worker, page):
    """GET /jobs from the page: the status's first page, newest first (one shard a status by
    default; with more, the page follows `next` from shard to shard and merges them)."""
    failed = [shim.submit("tasks.debug.fail", {"message": f"recent {i}"}) for i in range(4)]
    done = shim.submit("tasks.debug.add", {"x": 1, "y": 2})
    for job_id in [*failed, done]:
        shim.wait(job_id)
    page.goto(shim.url + "/")
    for job_id in failed:  # FAILURE is the default filter
        page.wait_for_selector(f"#recent tr[data-id='{job_id}']", timeout=30_000)
    ids = page.eval_on_selector_all("#recent tr", "rows => rows.map(r => r.dataset.id)")
    assert not page.locator(f"#recent tr[data-id='{done}']").count()
    assert len(ids) >= 4
    assert page.locator("#recent-error").is_hidden()  # no request for a shard that is not
    page.select_option("#recent-status", "SUCCESS")
    page.wait_for_selector(f"#recent tr[data-id='{done}']", timeout=30_000)
    page.click(f"#recent tr[data-id='{done}']")
    page.wait_for_selector("#job-status.SUCCESS", timeout=30_000)
    page.screenshot(path=str(OUTPUT / "page-recent.png"), full_page=True)


def test_a_result_kept_in_s3_is_a_download_link(shim, module_worker, page):
    """Over the record's limit: the page links GET /jobs/{id}/result instead of showing it."""
    import json

    from tests.jobs import big_result

    result = big_result.delay(size=500_000)
    result.get(timeout=60)
    page.goto(shim.url)
    page.evaluate("(id) => showJob(id)", result.id)
    link = page.locator("#result-download")
    link.wait_for(state="visible", timeout=30_000)
    assert link.text_content() == "download result (500002 bytes)"
    assert page.locator("#result-json").is_hidden()
    with page.expect_download() as download:
        link.click()
    assert json.loads(Path(download.value.path()).read_text()) == "x" * 500_000
