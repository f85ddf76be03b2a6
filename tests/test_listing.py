"""Listing jobs (issue 12.1), unit level: the state machine keeps `list_pk` on the status
writes (the sparse `by_status` index), the table is provisioned with the index, and
tasks.results.listing pages through the shards newest first with an opaque cursor.

Most tests here run with the deploy options JOBS_LIST_SHARDS=4 and JOBS_LIST_RUNNING_AFTER=0
(`sharded`: every status write lists the job, four partitions a status), the case where the
merge and the cursor have most to do; the defaults (one shard, STARTED listed by the lease
renewal) are tests/test_listing_index.py's.

moto (in process) answers the index's Queries; what moto cannot show (a Query page cut
short by Limit before a filter, LastEvaluatedKey mid-partition) is scripted with botocore's
Stubber."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from datetime import UTC, datetime

import pytest
from botocore.stub import Stubber
from celery import states

from tasks.ops.provision import LIST_INDEX, ensure_table
from tasks.ops.settings import Settings
from tasks.results.index_key import IndexKeys
from tasks.results.keys import list_pk, list_shard
from tasks.results.listing import (
    JobPage,
    decode_cursor,
    encode_cursor,
    list_jobs,
    partitions,
    since_key,
)
from tests.records_fixture import item

ERROR = {"type": "ValueError", "message": "boom"}
SHARDS = 4
FOUR = dataclasses.replace(Settings(), list_shards=SHARDS)  # what list_jobs reads


@pytest.fixture
def sharded(records):
    """The records written with four shards a status, every status listed at its write."""
    records.index_keys = IndexKeys(shards=SHARDS, running_after=0)
    return records


def job_id(shard: int) -> str:
    """A UUID in the given listing shard (its last hex digit modulo 4)."""
    base = str(uuid.uuid4())
    return base[:-1] + "0123456789abcdef"[shard + 4 * (hash(base) % 4)]


# --- the index key on every transition -----------------------------------------------
@pytest.mark.parametrize(("last", "shard"), [("0", 0), ("5", 1), ("a", 2), ("F", 3), ("x", 0)])
def test_the_shard_is_the_last_hex_digit_modulo_4(last, shard):
    assert list_shard("3fa85f64-5717-4562-b3fc-2c963f66afa" + last, SHARDS) == shard
    assert list_shard("3fa85f64-5717-4562-b3fc-2c963f66afa" + last) == 0  # one by default
    assert list_shard("", SHARDS) == 0


def test_every_status_write_moves_the_job_in_the_index(sharded):
    records = sharded
    jid = job_id(3)
    for state in (states.STARTED, "PROGRESS", states.RETRY, states.SUCCESS):
        records.transition(jid, state, facts={"task": "tasks.debug.add"})
        assert item(records, jid)["list_pk"] == {"S": f"{state}#3"}
    failed = job_id(1)
    records.transition(failed, states.FAILURE, error=ERROR)
    assert item(records, failed)["list_pk"] == {"S": "FAILURE#1"}


def test_a_refused_write_leaves_the_index_key(sharded):
    records = sharded
    jid = job_id(2)
    records.transition(jid, states.SUCCESS)
    assert not records.transition(jid, states.STARTED)
    assert item(records, jid)["list_pk"] == {"S": "SUCCESS#2"}


def test_the_gates_rejection_and_the_revoke_set_it(sharded):
    records = sharded
    rejected, final, revoked = job_id(0), job_id(1), job_id(2)
    records.reject_message(rejected, "bad", final=False)
    records.reject_message(final, "bad", final=True)
    records.transition(revoked, states.STARTED)
    records.revoke(revoked)
    assert item(records, rejected)["list_pk"] == {"S": "RETRY#0"}
    assert item(records, final)["list_pk"] == {"S": "FAILURE#1"}
    assert item(records, revoked)["list_pk"] == {"S": "REVOKED#2"}
    never_ran = job_id(3)
    records.revoke(never_ran)  # no record yet: REVOKED, listed too
    assert item(records, never_ran)["list_pk"] == {"S": "REVOKED#3"}


def test_groups_chords_and_leases_stay_out_of_the_index(records):
    records.save_group("g1", "[]")
    records.create_chord("c1", 2)
    records.claim_lease("k1", 60, "t1")
    for key in ("group:g1", "chord:c1", "lease:k1"):
        assert "list_pk" not in item(records, key)


def test_submitted_at_comes_from_the_header_and_is_kept(records):
    jid = job_id(0)
    millis = 1_796_115_629_123
    records.transition(jid, states.STARTED, facts={"submitted_at": millis})
    records.transition(jid, states.SUCCESS, facts={"submitted_at": millis + 5000})
    when = datetime.fromtimestamp(millis / 1000, UTC)
    assert item(records, jid)["submitted_at"] == {
        "S": when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    }
    other = job_id(1)
    records.transition(other, states.STARTED, facts={"submitted_at": True})  # not a number
    assert "submitted_at" not in item(records, other)


def test_the_publish_step_stamps_submitted_at():
    from tasks.submit.publish import stamp_submitted_at

    headers: dict = {}
    stamp_submitted_at(None, headers, {})
    assert isinstance(headers["submitted_at"], int) and headers["submitted_at"] > 1.7e12
    kept = {"submitted_at": 5}
    stamp_submitted_at(None, kept, {})
    assert kept == {"submitted_at": 5}


def test_the_gate_accepts_submitted_at_as_epoch_milliseconds():
    from tasks.worker.gate import _HEADERS
    from tasks.worker.gate import first_error as _first_error

    base = {"id": str(uuid.uuid4()), "task": "tasks.debug.add"}
    assert _first_error(_HEADERS, {**base, "submitted_at": 1_796_115_629_123}, "headers") is None
    for bad in (-1, "1", 1.5, True):
        assert _first_error(_HEADERS, {**base, "submitted_at": bad}, "headers"), bad


# --- provisioning ---------------------------------------------------------------------
def test_the_table_has_the_index_and_an_old_table_gains_it(in_process_aws):
    from tasks.ops.clients import dynamodb_client
    from tasks.ops.settings import Settings

    ddb = dynamodb_client(Settings.from_env())
    ensure_table(ddb, "fresh")
    index = ddb.describe_table(TableName="fresh")["Table"]["GlobalSecondaryIndexes"][0]
    assert index["IndexName"] == LIST_INDEX
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["list_pk", "created_at"]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    ddb.create_table(
        TableName="old",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
    )
    assert ensure_table(ddb, "old").outcome == "updated"
    names = [
        i["IndexName"]
        for i in ddb.describe_table(TableName="old")["Table"]["GlobalSecondaryIndexes"]
    ]
    assert names == [LIST_INDEX]
    assert ensure_table(ddb, "old").outcome == "unchanged"


# --- list_jobs over moto ---------------------------------------------------------------
def _make_jobs(records, count: int, state: str, task: str = "tasks.debug.add") -> list[str]:
    ids = [job_id(i % SHARDS) for i in range(count)]
    for jid in ids:  # one after the other: created_at grows (milliseconds; ties are fine)
        records.transition(
            jid, state, error=ERROR if state == states.FAILURE else None, facts={"task": task}
        )
    return ids


def _newest_first(records, ids: list[str]) -> list[str]:
    return [
        j for _, j in sorted(((item(records, j)["created_at"]["S"], j) for j in ids), reverse=True)
    ]


def test_list_jobs_merges_the_shards_newest_first_over_pages(sharded):
    records = sharded
    done = _make_jobs(records, 13, states.SUCCESS)
    _make_jobs(records, 3, states.FAILURE)
    seen: list[dict] = []
    page = list_jobs(states.SUCCESS, limit=5, client=records.client, table="jobs", settings=FOUR)
    pages = 1
    while True:
        assert len(page.jobs) <= 5
        seen.extend(page.jobs)
        if page.next is None:
            break
        page = list_jobs(
            states.SUCCESS,
            limit=5,
            cursor=page.next,
            client=records.client,
            table="jobs",
            settings=FOUR,
        )
        pages += 1
    assert [j["job_id"] for j in seen] == _newest_first(records, done)
    assert pages == 3
    first = seen[0]
    assert first["status"] == "SUCCESS" and first["task"] == "tasks.debug.add"
    assert {"created_at", "updated_at", "finished_at"} <= set(first) and "list_pk" not in first


def test_list_jobs_filters_by_task_and_since_and_lists_all_statuses(sharded):
    records = sharded
    _make_jobs(records, 4, states.FAILURE, task="tasks.debug.fail")
    mine = _make_jobs(records, 3, states.FAILURE, task="tasks.text.analyze")
    page = list_jobs(
        states.FAILURE,
        task="tasks.text.analyze",
        client=records.client,
        table="jobs",
        settings=FOUR,
    )
    assert [j["job_id"] for j in page.jobs] == _newest_first(records, mine)
    assert page.next is None
    assert (
        list_jobs(
            states.FAILURE, since="2999-01-01", client=records.client, table="jobs", settings=FOUR
        ).jobs
        == []
    )
    assert (
        len(
            list_jobs(
                states.FAILURE,
                since="2000-01-01T00:00:00Z",
                client=records.client,
                table="jobs",
                settings=FOUR,
            ).jobs
        )
        == 7
    )
    started = _make_jobs(records, 2, states.STARTED)
    everything = list_jobs(None, client=records.client, table="jobs", settings=FOUR, limit=100).jobs
    assert len(everything) == 9 and {j["status"] for j in everything} == {"FAILURE", "STARTED"}
    times = [j["created_at"] for j in everything]
    assert times == sorted(times, reverse=True)
    assert set(started) <= {j["job_id"] for j in everything}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": "PENDING"},
        {"status": "nope"},
        {"status": "FAILURE", "limit": 0},
        {"status": "FAILURE", "limit": 101},
        {"status": "FAILURE", "since": "yesterday"},
        {"status": "FAILURE", "since": "2026-12-01T00:00:00"},
        {"status": "FAILURE", "task": "a b"},
    ],
)
def test_list_jobs_refuses_bad_arguments(records, kwargs):
    status = kwargs.pop("status")
    with pytest.raises(ValueError):
        list_jobs(status, client=records.client, table="jobs", **kwargs)


def test_since_drops_the_z_so_milliseconds_sort_after_it():
    assert since_key("2026-12-01T00:00:00Z") < "2026-12-01T00:00:00.000Z"
    assert since_key("2026-12-01") < "2026-12-01T00:00:00.000Z"


def test_a_forged_cursor_is_a_value_error(records):
    good = encode_cursor("FAILURE", [None] * 4)
    assert decode_cursor(good, "FAILURE", 4) == [None] * 4
    raw = json.loads(base64.urlsafe_b64decode(good + "=="))
    forged = [
        "",
        "!!!!",
        good + "x",
        encode_cursor("SUCCESS", [None] * 4),
        encode_cursor("FAILURE", [None] * 3),
        base64.urlsafe_b64encode(json.dumps({**raw, "v": 2}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({**raw, "p": [["x", "y"]] * 4}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({**raw, "p": [True] * 4}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({**raw, "x": 1}).encode()).decode(),
    ]
    for cursor in forged:
        with pytest.raises(ValueError):
            list_jobs(
                "FAILURE",
                cursor=cursor.rstrip("="),
                client=records.client,
                table="jobs",
                settings=FOUR,
            )


# --- pagination moto cannot show: short Query pages (Limit before the filter) ------------
def _summary(jid: str, created: str) -> dict:
    return {
        "job_id": {"S": jid},
        "list_pk": {"S": f"FAILURE#{list_shard(jid, SHARDS)}"},
        "created_at": {"S": created},
        "status": {"S": "FAILURE"},
        "task": {"S": "t.x"},
    }


def test_list_jobs_follows_last_evaluated_key_through_short_pages(in_process_aws):
    import boto3

    client = boto3.client("dynamodb", region_name="us-east-1")
    a = "3fa85f64-5717-4562-b3fc-2c963f66afa0"  # shard 0
    b = "3fa85f64-5717-4562-b3fc-2c963f66afa4"  # shard 0
    c = "3fa85f64-5717-4562-b3fc-2c963f66afa1"  # shard 1
    ta, tb, tc = (
        "2026-12-01T10:00:03.000Z",
        "2026-12-01T10:00:01.000Z",
        "2026-12-01T10:00:02.000Z",
    )
    base = {
        "TableName": "jobs",
        "IndexName": LIST_INDEX,
        "KeyConditionExpression": "list_pk = :pk",
        "ScanIndexForward": False,
        "FilterExpression": "#task = :task",
        "ExpressionAttributeNames": {"#task": "task"},
        "Limit": 2,
    }

    def values(pk: str) -> dict:
        return {":task": {"S": "t.x"}, ":pk": {"S": pk}}

    lek = {"job_id": {"S": a}, "list_pk": {"S": "FAILURE#0"}, "created_at": {"S": ta}}
    with Stubber(client) as stub:
        # shard 0: a first page holding only `a`, cut by Limit (LastEvaluatedKey), then b.
        stub.add_response(
            "query",
            {"Items": [_summary(a, ta)], "LastEvaluatedKey": lek},
            {**base, "ExpressionAttributeValues": values("FAILURE#0")},
        )
        stub.add_response(
            "query",
            {"Items": [_summary(b, tb)]},
            {**base, "ExpressionAttributeValues": values("FAILURE#0"), "ExclusiveStartKey": lek},
        )
        stub.add_response(
            "query",
            {"Items": [_summary(c, tc)]},
            {**base, "ExpressionAttributeValues": values("FAILURE#1")},
        )
        for shard in (2, 3):
            stub.add_response(
                "query",
                {"Items": []},
                {**base, "ExpressionAttributeValues": values(f"FAILURE#{shard}")},
            )
        page = list_jobs("FAILURE", task="t.x", limit=2, client=client, table="jobs", settings=FOUR)
        stub.assert_no_pending_responses()
    assert [j["job_id"] for j in page.jobs] == [a, c]
    # The next page starts after `a` in shard 0 (b is still to come) and shard 1 is done.
    assert decode_cursor(page.next, "FAILURE", 4) == [(ta, a), 0, 0, 0]
    with Stubber(client) as stub:
        stub.add_response(
            "query",
            {"Items": [_summary(b, tb)]},
            {**base, "ExpressionAttributeValues": values("FAILURE#0"), "ExclusiveStartKey": lek},
        )
        last = list_jobs(
            "FAILURE",
            task="t.x",
            limit=2,
            cursor=page.next,
            client=client,
            table="jobs",
            settings=FOUR,
        )
        stub.assert_no_pending_responses()
    assert last == JobPage(
        [{"job_id": b, "status": "FAILURE", "task": "t.x", "created_at": tb}], None
    )


def test_partitions_are_status_and_shard():
    from tasks.results.listing import LISTED_STATES

    assert partitions("FAILURE") == ["FAILURE#0"]  # one a status by default
    assert partitions("FAILURE", IndexKeys(SHARDS)) == [f"FAILURE#{i}" for i in range(4)]
    assert len(partitions(None, IndexKeys(SHARDS))) == 4 * len(LISTED_STATES)
    assert list_pk("SUCCESS", "x") == "SUCCESS#0"


@pytest.mark.parametrize("shards", [1, 3, 4, 16])
@pytest.mark.parametrize("last", list("0123456789abcdefABCDEF"))
def test_the_delete_template_writes_the_same_listing_key(last, shards):
    """DELETE /jobs/{id} (revoke_job.request.vtl) computes the shard as records.py does."""
    from tasks.http_contract.mapping_templates import fill_template
    from tasks.http_contract.vtl import Params, render
    from tasks.ops.provision import list_shard_by_digit
    from tasks.results.records import JobRecords

    job = "3fa85f64-5717-4562-b3fc-2c963f66afa" + last
    text = fill_template(
        "revoke_job.request",
        table_name="jobs-t",
        result_expires="60",
        shard_by_digit=list_shard_by_digit(shards),
    )
    sent = json.loads(
        render(
            text,
            body="",
            params=Params(path={"job_id": job}),
            context={
                "requestTimeEpoch": 1796115629123,
                "requestTime": "01/Dec/2026:09:00:29 +0000",
            },
        ).text
    )
    keys = IndexKeys(shards)
    expected = JobRecords(lambda: None, "jobs-t", 60, index_keys=keys).revoke_request(job)
    assert (
        sent["ExpressionAttributeValues"][":list_pk"]
        == expected["ExpressionAttributeValues"][":list_pk"]
        == {"S": list_pk("REVOKED", job, shards)}
        == {"S": f"REVOKED#{int(last, 16) % shards:x}"}
    )


def test_ecs_plans_the_index_for_a_table_from_before_it(in_process_aws):
    """`python -m ecs plan/deploy`: a table without the index is an update that adds it."""
    from types import SimpleNamespace

    from ecs.data import plan_table
    from ecs.executor import Executor
    from ecs.plan import Context
    from ecs.stack import Stack
    from tasks.ops.clients import dynamodb_client
    from tasks.ops.settings import Settings

    ddb = dynamodb_client(Settings.from_env())
    stack = Stack("t1", "us-east-1", "123456789012")
    ddb.create_table(
        TableName=stack.table_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
    )
    ddb.update_time_to_live(
        TableName=stack.table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    ctx = Context(SimpleNamespace(dynamodb=ddb), stack, echo=lambda _: None)
    step = plan_table(ctx)
    assert (step.action, step.detail) == ("update", f"index {LIST_INDEX} (GET /jobs)")
    Executor(ctx).run(step)
    assert plan_table(ctx).action == "unchanged"
