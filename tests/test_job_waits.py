"""The worker's wait trace (tasks.worker.job_waits) and the bench's reading of it
(bench.waits): off by default, one consumer line and one pool-process line per sampled
job, joined into the gaps between a job's stages. No worker: the hooks are called as
tasks.worker.request and tasks.worker.celery_hooks call them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bench import waits
from tasks.ops.settings import Settings
from tasks.worker import default_middleware
from tasks.worker.job_waits import JobWaits, sampled


def _request(job_id: str, pid: int = 4242, time_start: float | None = None):
    return SimpleNamespace(id=job_id, worker_pid=pid, time_start=time_start)


def _one_job(mw: JobWaits, job_id: str) -> None:
    """The hooks in the order a job's run calls them."""
    mw.screen_message(None, SimpleNamespace(headers={"id": job_id, "task": "t"}))
    mw.job_received(_request(job_id))
    mw.job_started(_request(job_id, time_start=1.0e9))
    mw.run_ended(SimpleNamespace(request=SimpleNamespace(id=job_id)), "SUCCESS")
    mw.job_finished(_request(job_id), "ack")


def test_the_trace_is_off_by_default_and_in_the_default_list(tmp_path):
    settings = Settings.from_env({})
    assert settings.wait_trace is None
    mw = JobWaits(settings)
    _one_job(mw, "job-1")
    assert mw.times == {}  # nothing kept, nothing written
    names = [type(m).__name__ for m in default_middleware.default_middleware(settings)]
    assert "JobWaits" in names


def test_each_job_gives_a_consumer_line_and_a_pool_line_that_join(tmp_path):
    trace = tmp_path / "waits.jsonl"
    mw = JobWaits(Settings.from_env({"JOBS_WAIT_TRACE": str(trace)}))
    _one_job(mw, "job-1")
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    pool_line, consumer_line = lines  # the pool process writes at task_postrun, before the ack
    assert set(pool_line) == {"id", "pid", "thread", "ended"}
    assert consumer_line["accepted"] == 1.0e9  # Celery's time_start, the child's clock
    assert consumer_line["outcome"] == "ack" and consumer_line["pid"] == 4242
    for stage in ("screened", "received", "noticed", "finished"):
        assert isinstance(consumer_line[stage], float)
    (job,) = waits.read(trace)
    assert job["ended"] == pool_line["ended"] and job["runner"][0] == pool_line["pid"]
    assert mw.times == {}  # forgotten once acknowledged


def test_sampling_picks_the_same_jobs_in_every_process(tmp_path):
    ids = [f"job-{n}" for n in range(400)]
    picked = [i for i in ids if sampled(i, 8)]
    assert 0 < len(picked) < len(ids) / 4  # about one in eight
    assert picked == [i for i in ids if sampled(i, 8)]  # a hash, not a counter
    trace = tmp_path / "waits.jsonl"
    mw = JobWaits(Settings.from_env({"JOBS_WAIT_TRACE": str(trace), "JOBS_WAIT_TRACE_EVERY": "8"}))
    for job_id in ids:
        _one_job(mw, job_id)
    assert {j["id"] for j in waits.read(trace)} == set(picked)


def test_the_gaps_are_the_differences_between_stages():
    jobs = [
        {
            "id": f"j{n}",
            "screened": 10.0 + n,
            "received": 10.001 + n,
            "accepted": 10.011 + n,
            "noticed": 10.012 + n,
            "ended": 10.015 + n,
            "finished": 10.016 + n,
            "runner": (7, 1),
        }
        for n in range(5)
    ]
    gaps = waits.gaps(jobs, skip=0)
    assert round(gaps[waits.PARTS[1][0]]["p50_ms"], 3) == 10.0  # request -> started
    assert round(gaps[waits.PARTS[2][0]]["p50_ms"], 3) == 4.0  # in the pool
    # One process: from one job's end (n + 10.015) to the next one's start (n + 11.011).
    assert round(gaps[waits.IDLE]["p50_ms"], 3) == 996.0
    assert gaps[waits.IDLE]["n"] == 4


def test_a_pool_variant_is_read_from_its_spec():
    from bench.pools import Variant

    assert Variant.parse("prefork:4:1:0") == Variant("prefork", 4, 1, 0)
    assert Variant.parse("threads:8:2") == Variant("threads", 8, 2, None)
    # No prefetch: the worker's defaults (scenario 4's worker).
    assert Variant.parse("prefork:4") == Variant("prefork", 4, None, None)
    for bad in ("gevent:4:1", "prefork", "prefork:x:1", "prefork:4:1:0:9", "prefork:4/x"):
        with pytest.raises(ValueError):
            Variant.parse(bad)
