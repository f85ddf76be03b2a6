"""The listing index's key rule (tasks.results.index_key, issues 19 and 21): what a job costs
the index, measured from DynamoDB's billing rule on the real writes, when a running job is
listed (by its lease renewal, past JOBS_LIST_RUNNING_AFTER), and that with one shard a
status (the default) the first page of GET /jobs is the newest jobs, globally ordered."""

from __future__ import annotations

import dataclasses
import time
import uuid
from types import SimpleNamespace

import pytest
from celery import states

from bench import prices
from bench.index_units import index_write_units, measure
from tasks.results.index_key import IndexKeys
from tests.records_fixture import item

S = lambda v: {"S": v}  # noqa: E731


# --- DynamoDB's rule (AWS: "Provisioned throughput considerations for GSIs") ----------------
def test_the_billing_rule_as_documented():
    out = {"job_id": S("j"), "status": S("STARTED"), "created_at": S("t")}
    listed = {**out, "list_pk": S("STARTED#0"), "updated_at": S("u1")}
    assert index_write_units(None, out) == 0  # never in the index: nothing
    assert index_write_units(out, {**out, "list_pk": S("SUCCESS#0")}) == 1  # a new entry
    assert index_write_units(listed, out) == 1  # a removal
    assert index_write_units(listed, {**listed, "list_pk": S("SUCCESS#0")}) == 2  # key moved
    assert index_write_units(listed, {**listed, "updated_at": S("u2")}) == 1  # projected
    assert index_write_units(listed, {**listed, "run_lease": {"N": "9"}}) == 0  # not projected
    assert index_write_units(listed, None) == 1  # deleted


def run_job(records, job_id: str, *, renewals: int = 0, list_running: bool = False) -> list[int]:
    """A job's writes as its worker sends them (tasks.results.backend: STARTED with the run
    token, the lease renewals of a long run, the terminal write), each one's index units."""
    token = f"{uuid.uuid4()}:1"
    facts = {"task": "tasks.debug.add", "run_token": token, "submitted_at": 1_796_115_629_123}
    with measure(records.client, records.table) as units:
        records.transition(job_id, states.STARTED, facts=facts)
        for _ in range(renewals):
            assert records.renew_run_lease(job_id, token, list_running=list_running)
        records.transition(job_id, states.SUCCESS, result_text="2", facts=facts)
    return units


def test_a_no_op_job_costs_1_index_unit_by_default_3_when_listed_at_start(records):
    """docs/job-record.md: a short job 1 unit (it enters the index finished); 3 with
    JOBS_LIST_RUNNING_AFTER=0 (a put under STARTED, then a delete and a put under SUCCESS);
    a long job listed by its renewal 3 (renewals that follow cost nothing)."""
    assert sum(run_job(records, str(uuid.uuid4()))) == 1
    records.index_keys = IndexKeys(running_after=0)
    assert run_job(records, str(uuid.uuid4())) == [1, 2]
    records.index_keys = IndexKeys()
    assert run_job(records, str(uuid.uuid4()), renewals=3, list_running=True) == [0, 1, 0, 0, 2]
    assert run_job(records, str(uuid.uuid4()), renewals=2) == [0, 0, 0, 1]
    # The bench's cost row counts what a no-op job is billed with the default.
    assert prices.INDEX_WRU_PER_JOB["ours"] == 1


def test_a_retried_job_is_taken_out_of_the_index_when_it_starts_again(records):
    jid = str(uuid.uuid4())
    token = f"{uuid.uuid4()}:1"
    records.transition(jid, states.RETRY, facts={"task": "t"})
    assert item(records, jid)["list_pk"] == S("RETRY#0")
    records.transition(jid, states.STARTED, facts={"task": "t", "run_token": token, "retries": 1})
    assert "list_pk" not in item(records, jid)  # never under an old status
    records.transition(jid, "PROGRESS", progress_text="{}", facts={"run_token": token})
    assert item(records, jid)["list_pk"] == S("PROGRESS#0")  # a job reporting progress is long
    assert records.renew_run_lease(jid, token, list_running=True)
    assert item(records, jid)["list_pk"] == S("PROGRESS#0")  # the renewal keeps its status


def test_shards_spread_a_status_by_the_ids_last_hex_digit():
    four = IndexKeys(shards=4)
    ids = {d: "3fa85f64-5717-4562-b3fc-2c963f66afa" + d for d in "05aFx"}
    assert [four.pk("SUCCESS", ids[d]) for d in "05aFx"] == [
        "SUCCESS#0",
        "SUCCESS#1",
        "SUCCESS#2",
        "SUCCESS#3",
        "SUCCESS#0",
    ]
    assert {IndexKeys().pk("SUCCESS", i) for i in ids.values()} == {"SUCCESS#0"}
    assert four.partitions("FAILURE") == [f"FAILURE#{n}" for n in range(4)]
    with pytest.raises(ValueError):
        IndexKeys(shards=17)


# --- the heartbeat lists a long job once it has run the threshold -----------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settle(heartbeat) -> None:
    deadline = time.monotonic() + 10
    while heartbeat.renewing:
        assert time.monotonic() < deadline, "the renewal thread never finished"
        time.sleep(0.005)


def test_a_long_job_is_listed_under_started_past_the_threshold_and_once(records):
    from tasks.ops.settings import Settings
    from tasks.results.listing import list_jobs
    from tasks.worker.lease_heartbeat import RunLeaseHeartbeat

    clock = Clock()
    settings = dataclasses.replace(Settings(), visibility_timeout=300, list_running_after=10.0)
    heartbeat = RunLeaseHeartbeat(settings, clock=clock)
    assert heartbeat.interval == 2.5  # a quarter of the threshold: listed within 12.5 s
    heartbeat.consumer = SimpleNamespace(
        app=SimpleNamespace(backend=SimpleNamespace(records=records))
    )
    jid, token = str(uuid.uuid4()), f"{uuid.uuid4()}:1"
    heartbeat.leases = lambda: [(jid, token)]
    records.transition(jid, states.STARTED, facts={"task": "t", "run_token": token})

    def started() -> list[str]:
        page = list_jobs(states.STARTED, client=records.client, table="jobs", settings=settings)
        return [job["job_id"] for job in page.jobs]

    calls = []
    for step in range(12):  # 0 .. 27.5 s of running, a beat every 2.5 s
        heartbeat.beat()
        settle(heartbeat)
        calls.append(heartbeat.renewals)
        assert started() == ([jid] if step >= 4 else []), step  # listed at 10 s, never twice
        clock.now += heartbeat.interval
    assert calls == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]  # one listing write, no other
    clock.now += 300  # the renewal period: every running job's lease, listed or not
    heartbeat.beat()
    settle(heartbeat)
    assert heartbeat.renewals == 2 and started() == [jid]
    records.transition(jid, states.SUCCESS, result_text="1", facts={"run_token": token})
    assert started() == []


def test_without_a_threshold_the_beat_is_the_renewal_period():
    from tasks.ops.settings import Settings
    from tasks.worker.lease_heartbeat import RunLeaseHeartbeat

    settings = dataclasses.replace(Settings(), visibility_timeout=30, list_running_after=0.0)
    assert RunLeaseHeartbeat(settings).interval == 10.0


# --- issue 21's reproduction, over HTTP: the shim renders the deployed templates ----------
@pytest.mark.integration
def test_the_first_page_of_get_jobs_is_the_newest_jobs(stack):
    """One job finished, then a few: `GET /jobs?status=SUCCESS&limit=5` answers the newest
    five first, globally ordered (it answered `{"jobs": [], "next": ...}` with four shards
    a status); `next` goes on where the page stopped, and a running job shows under STARTED
    once its renewal listed it."""
    from api_shim.app import create_app
    from tasks.ops.clients import dynamodb_client
    from tasks.ops.provision import ensure_table
    from tasks.ops.settings import Settings
    from tasks.results.records import JobRecords

    settings = dataclasses.replace(
        Settings.from_env(), table_name=f"first-page-{uuid.uuid4().hex[:8]}", api_keys=()
    )
    ddb = dynamodb_client(settings)
    ensure_table(ddb, settings.table_name)
    records = JobRecords(lambda: ddb, settings.table_name, 3600)
    http = create_app(settings).test_client()

    def get(**query: str) -> dict:
        answer = http.get("/jobs", query_string=query)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()

    first = str(uuid.uuid4())
    run_job(records, first)
    assert [j["job_id"] for j in get(status="SUCCESS", limit="5")["jobs"]] == [first]
    for _ in range(7):
        run_job(records, str(uuid.uuid4()))
    page = get(status="SUCCESS", limit="5")
    times = sorted(
        (records.read(j)["created_at"]["S"] for j in all_ids(ddb, settings)), reverse=True
    )
    assert [j["created_at"] for j in page["jobs"]] == times[:5]  # the newest five, in order
    rest = get(status="SUCCESS", limit="5", cursor=page["next"])
    assert [j["created_at"] for j in rest["jobs"]] == times[5:] and rest["next"] is None
    assert {j["job_id"] for j in page["jobs"] + rest["jobs"]} >= {first}
    long_job, token = str(uuid.uuid4()), f"{uuid.uuid4()}:1"
    records.transition(long_job, states.STARTED, facts={"task": "t", "run_token": token})
    assert get(status="STARTED")["jobs"] == []  # not yet: a short job never enters it
    assert records.renew_run_lease(long_job, token, list_running=True)
    assert [j["job_id"] for j in get(status="STARTED")["jobs"]] == [long_job]


def all_ids(ddb, settings) -> list[str]:
    items = ddb.scan(TableName=settings.table_name, ProjectionExpression="job_id")["Items"]
    return [i["job_id"]["S"] for i in items]


def test_a_deployment_gives_the_workers_and_the_api_the_same_shards():
    """`ecs deploy --list-shards 4`: the task definition's JOBS_LIST_SHARDS and the API's
    templates (their shard digits) agree; the default is one shard a status."""
    from ecs.api import build_definition
    from ecs.stack import Options, Stack

    for shards, digits in ((1, "[0]"), (4, "[0123]")):
        stack = Stack("s", "us-east-1", "123456789012", Options(list_shards=shards))
        assert stack.worker_environment()["JOBS_LIST_SHARDS"] == str(shards)
        route = build_definition(stack)["paths"]["/jobs"]["get"]
        template = route["x-amazon-apigateway-integration"]["requestTemplates"]["application/json"]
        assert f"v1\\|{digits}\\|" in template


@pytest.mark.integration
def test_a_real_worker_lists_a_long_job_under_started_once(stack, start_worker, tmp_path):
    """A worker with JOBS_LIST_RUNNING_AFTER=1: a job held running (until a file appears)
    shows under STARTED once, a second or so after it started; finished, under SUCCESS only."""
    from tasks.results.listing import list_jobs
    from tests.conftest import wait_until
    from tests.jobs import wait_for_file

    start_worker(env={"JOBS_LIST_RUNNING_AFTER": "1"})
    release = tmp_path / "release"
    result = wait_for_file.delay(value=7, path=str(release))
    started = time.monotonic()

    def listed(status: str) -> list[str]:
        jobs = list_jobs(status, limit=100, client=stack.dynamodb, table=stack.table).jobs
        return [job["job_id"] for job in jobs if job["job_id"] == result.id]

    wait_until(lambda: listed(states.STARTED), 30, message="the job listed under STARTED")
    assert time.monotonic() - started >= 1  # not before the threshold
    assert listed(states.STARTED) == [result.id]  # once
    release.touch()
    assert result.get(timeout=30) == 7
    assert listed(states.STARTED) == [] and listed(states.SUCCESS) == [result.id]
