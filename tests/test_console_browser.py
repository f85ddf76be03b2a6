"""The operator's console in headless Chromium against a running stack (the shim of `make run`,
a worker, moto's server): the chart of real jobs, a failure in red with its timeline, cancels
(of a running job, of a job deferred to a one-time schedule) and redrives (one dead letter,
then all) that say what they did. Screenshots go to test-output/ as the page's do.

The console's stack has its own queue, DLQ and table (Settings from the environment given to
its shim and worker, never this process's): the redrive moves every dead letter, and the
session's DLQ is other tests' (tests/test_dlq.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from botocore.exceptions import ClientError
from celery import states

from tasks.ops.clients import scheduler_client
from tasks.ops.one_time_schedules import schedule_name
from tasks.ops.settings import Settings
from tests.conftest import OUTPUT, Worker, launch_worker, wait_until
from tests.http_shim import Shim, http, running_shim
from tests.test_page import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.browser]
# Why the dead letters' jobs failed, in their records (a worker lost on each delivery).
LOST = {"type": "WorkerLostError", "module": "billiard.exceptions", "message": "", "args": "[]"}


@dataclass
class ConsoleStack:
    env: dict[str, str]
    queue: str
    dlq: str
    queue_url: str
    dlq_url: str


@pytest.fixture(scope="module")
def console_stack(stack) -> ConsoleStack:
    """Queue, DLQ and table of the console's own, provisioned as `make run` does."""
    from tasks.ops.provision import provision
    from tasks.ops.settings import Settings

    name = f"console-{uuid.uuid4().hex[:8]}"
    env = {**stack.env, "JOBS_QUEUE_NAME": name, "JOBS_DLQ_NAME": f"{name}-dlq"}
    env["JOBS_TABLE_NAME"] = name
    env.pop("JOBS_QUEUE_URL", None)
    queues, _ = provision(Settings.from_env(env))
    env["JOBS_QUEUE_URL"] = queues.queue_url
    return ConsoleStack(env, name, f"{name}-dlq", queues.queue_url, queues.dlq_url)


@pytest.fixture(scope="module")
def shim(console_stack) -> Iterator[Shim]:
    with running_shim(console_stack.env, "console") as server:
        yield server


@pytest.fixture(scope="module")
def dead_letters(console_stack, shim) -> list[str]:
    """Two jobs submitted over HTTP whose messages are in the DLQ (moved there before any
    worker ran, as SQS does after maxReceiveCount receives), their records FAILURE."""
    from console.sources import local_source
    from tasks.ops.settings import Settings

    source = local_source(Settings.from_env(console_stack.env))
    sqs = source.sqs()
    jobs = [shim.submit("tasks.debug.add", {"x": n, "y": 10}) for n in range(2)]
    moved = 0
    while moved < len(jobs):
        for message in sqs.receive_message(
            QueueUrl=console_stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            sqs.send_message(QueueUrl=console_stack.dlq_url, MessageBody=message["Body"])
            sqs.delete_message(
                QueueUrl=console_stack.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            moved += 1
    for job_id in jobs:
        assert source.records().transition(
            job_id, states.FAILURE, error=LOST, facts={"task": "tasks.debug.add"}
        )
    return jobs


@pytest.fixture(scope="module")
def worker(stack, console_stack, dead_letters) -> Iterator[Worker]:
    """A worker of the console's queue, started once the dead letters are in place."""
    started = launch_worker(stack, "console", 2, env=console_stack.env)
    yield started
    started.close()


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


def test_console_charts_real_jobs_shows_a_failure_cancels_and_redrives(
    shim, console_stack, dead_letters, worker, page
):
    OUTPUT.mkdir(exist_ok=True)
    done = shim.submit("tasks.debug.add", {"x": 1, "y": 2})
    failed = shim.submit("tasks.debug.fail", {"message": "not for the console's eyes"})
    running = shim.submit("tasks.debug.sleep", {"seconds": 30, "steps": 30})
    deferred = shim.submit("tasks.debug.add", {"x": 2, "y": 3}, headers={"X-Countdown": "7200"})
    settings = Settings.from_env(console_stack.env)
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

    # A job two hours off, deferred by the worker to a one-time schedule: listed SCHEDULED
    # with its eta, shown waiting for it; its cancel deletes the schedule and says so.
    wait_until(lambda: shim.job(deferred)["status"] == "SCHEDULED", 20, message="deferred")
    eta = shim.job(deferred)["eta"]
    page.goto(f"{shim.url}/console/jobs?status=SCHEDULED")
    row = page.locator(f"#jobs tr[data-id='{deferred}']")
    assert row.locator("td.eta").text_content() == eta
    row.locator("a").click()
    assert f"scheduled for {eta}" in re.sub(r"\s+", " ", page.text_content("#timeline"))
    page.click("#cancel")
    assert "the schedule is deleted too" in page.text_content("#schedule-note")
    page.click("#confirm")
    name = schedule_name(deferred)
    said = page.text_content("#said").strip()
    assert said == f"job {deferred} revoked (was SCHEDULED); its schedule {name} deleted", said
    page.screenshot(path=str(OUTPUT / "console-cancelled-scheduled.png"), full_page=True)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        scheduler_client(settings).get_schedule(GroupName=settings.schedule_group, Name=name)

    # Dead letters: one looked into and redriven alone, then the rest; each confirmed, each
    # page says what it did, and the worker runs the jobs (the records were reset).
    one, other = dead_letters
    page.goto(f"{shim.url}/console/")
    assert "bad" in page.get_attribute("#box-dlq", "class")
    page.click("nav a:text('Dead letters')")
    assert page.locator("#letters tr.bad").count() == 2
    page.locator(f"#letters tr:has(a:text('{one}')) td a").first.click()
    assert page.text_content("#letter-reason").strip() == "WorkerLostError"
    assert "tasks.debug.add" in page.text_content("#headers")
    page.screenshot(path=str(OUTPUT / "console-dead-letter.png"), full_page=True)
    page.click("#redrive-one")
    assert one in page.text_content("main")  # the confirm step names the job
    page.click("#confirm")
    said = page.text_content("#said")
    assert re.fullmatch(
        rf"moved message \S+ \(job {one}\) from {console_stack.dlq} back to "
        rf"{console_stack.queue}; its FAILURE record was reset",
        said.strip(),
    ), said
    page.screenshot(path=str(OUTPUT / "console-redriven-one.png"), full_page=True)
    finished = shim.wait(one, timeout=30)
    assert finished["status"] == "SUCCESS" and finished["result"] == 10

    page.goto(f"{shim.url}/console/dlq")
    page.click("#redrive")
    assert "1 message(s) are in it" in page.text_content("main")
    page.click("#confirm")
    said = page.text_content("#said").strip()
    assert said == f"moved 1 message(s) from {console_stack.dlq} back to {console_stack.queue}"
    page.screenshot(path=str(OUTPUT / "console-redriven.png"), full_page=True)
    assert shim.wait(other, timeout=30)["status"] == "SUCCESS"
    page.goto(f"{shim.url}/console/dlq")
    assert "the dead-letter queue is empty" in page.text_content("#letters")
