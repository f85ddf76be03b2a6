"""Listing jobs end to end (issue 12.1): gunicorn serving the shim, moto's server, a real
worker. Jobs submitted over HTTP and from Python are found with GET /jobs (following `next`;
one shard a status by default, so the pages together are newest first) and with
tasks.client.list_jobs (merged newest first)."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator

import pytest

from tasks.results.encoding import utc_now
from tests.http_shim import Shim, http, running_shim

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shim(stack) -> Iterator[Shim]:
    with running_shim(stack.env, "listing") as server:
        yield server


@pytest.fixture(scope="module")
def submitted(stack, shim, module_worker) -> dict:
    """Ten adds and three failures over HTTP, two adds from Python; all finished."""
    from tasks.debug import add

    since = utc_now()
    adds = [shim.submit("tasks.debug.add", {"x": i, "y": 1}) for i in range(10)]
    fails = [shim.submit("tasks.debug.fail", {"message": f"no {i}"}) for i in range(3)]
    python = [add.delay(x=100 + i, y=1).id for i in range(2)]
    for job_id in adds + fails + python:
        shim.wait(job_id)
    return {"since": since, "adds": adds, "fails": fails, "python": python}


def walk(shim: Shim, **query: str) -> list[list[dict]]:
    """Every page of a listing, following next (one Query of one shard each)."""
    pages: list[list[dict]] = []
    cursor = None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        answer = http("GET", f"{shim.url}/jobs?{urllib.parse.urlencode(params)}")
        assert answer.status == 200, answer.body
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        pages.append(answer.body["jobs"])
        cursor = answer.body["next"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "next never ended"


def newest_first(jobs: list[dict]) -> bool:
    times = [j["created_at"] for j in jobs]
    return times == sorted(times, reverse=True)


def test_get_jobs_follows_next_newest_first(shim, submitted):
    pages = walk(
        shim, status="SUCCESS", task="tasks.debug.add", since=submitted["since"], limit="3"
    )
    assert len(pages) >= 4  # 12 jobs, 3 a page
    assert all(len(page) <= 3 for page in pages)
    assert len(pages[0]) == 3  # the first page is the newest jobs, not one shard's
    assert newest_first([job for page in pages for job in page])  # globally ordered
    seen = [job["job_id"] for page in pages for job in page]
    assert sorted(seen) == sorted(submitted["adds"] + submitted["python"])  # each once
    job = pages[[bool(p) for p in pages].index(True)][0]
    assert job["status"] == "SUCCESS" and job["task"] == "tasks.debug.add"
    assert {"created_at", "updated_at", "started_at", "finished_at"} <= set(job)
    assert job["created_at"] >= submitted["since"]
    # Every job says when it was sent: the POST template's request time, delay()'s header.
    assert all(j["submitted_at"] <= j["created_at"] for page in pages for j in page)


def test_get_jobs_shows_the_failures_and_limit_and_since_work(shim, submitted):
    failures = [j for page in walk(shim, status="FAILURE", since=submitted["since"]) for j in page]
    assert sorted(j["job_id"] for j in failures) == sorted(submitted["fails"])
    assert {j["task"] for j in failures} == {"tasks.debug.fail"}
    one = walk(shim, status="SUCCESS", since=submitted["since"], limit="1")
    assert all(len(page) <= 1 for page in one)
    assert sum(len(page) for page in one) == 12
    later = walk(shim, status="SUCCESS", since="2999-01-01")
    assert later == [[]]  # one partition a status: one empty page, next null


@pytest.mark.parametrize(
    "query",
    [
        {"status": "FAILURE", "cursor": "bm90IGEgY3Vyc29y"},
        {"status": "FAILURE", "cursor": base64.urlsafe_b64encode(b"v1|9||").decode()},
        {"status": "NOPE"},
        {},
        {"status": "FAILURE", "limit": "500"},
        {"status": "FAILURE", "since": "last week"},
    ],
)
def test_bad_parameters_and_forged_cursors_are_400(shim, query):
    answer = http("GET", f"{shim.url}/jobs?{urllib.parse.urlencode(query)}")
    assert answer.status == 400, answer.body
    assert answer.body["message"]
    if query.get("status") != "FAILURE":
        assert "FAILURE or REVOKED" in answer.body["message"]


def test_python_list_jobs_merges_the_shards_newest_first(stack, shim, submitted):
    from tasks.client import list_jobs

    page = list_jobs("SUCCESS", task="tasks.debug.add", since=submitted["since"], limit=5)
    jobs = list(page.jobs)
    while page.next:
        page = list_jobs(
            "SUCCESS", task="tasks.debug.add", since=submitted["since"], limit=5, cursor=page.next
        )
        jobs.extend(page.jobs)
    assert newest_first(jobs)
    assert sorted(j["job_id"] for j in jobs) == sorted(submitted["adds"] + submitted["python"])
    # Jobs sent from Python carry submitted_at (tasks.submit.publish), before created_at.
    by_id = {j["job_id"]: j for j in jobs}
    for job_id in submitted["python"]:
        assert by_id[job_id]["submitted_at"] <= by_id[job_id]["created_at"]
        assert shim.job(job_id)["submitted_at"] == by_id[job_id]["submitted_at"]
    everything = list_jobs(None, since=submitted["since"], limit=100)
    assert {j["job_id"] for j in everything.jobs} == set(
        submitted["adds"] + submitted["python"] + submitted["fails"]
    )
