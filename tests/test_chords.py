"""Chords as Celery documents them, and none that can hold a worker process.

Expected results come from Celery's canvas guide (docs.celeryq.dev/en/stable/userguide/
canvas.html, "Chords" and "Error handling") and, for the header shapes the guide does not
spell out, from Celery's own integration tests (t/integration/test_canvas.py), cited per test.

The first half runs the backend against moto in process (no worker): counting, sizes,
duplicates, failures, and a 10,000-part chord. The second half runs real worker processes
against moto's server.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import chain, chord, group, signals, states
from celery.exceptions import ChordError

from tasks import app
from tasks.ops.provision import ensure_table
from tasks.results.backend import DynamoDBJobBackend
from tasks.results.groups import GROUP_PAGE_CHARS
from tests.conftest import Stack, wait_until

ITEM_LIMIT = 400 * 1024  # DynamoDB's item size limit


# --- moto in process ---------------------------------------------------------------
@pytest.fixture
def backend(in_process_aws, monkeypatch) -> DynamoDBJobBackend:
    backend = DynamoDBJobBackend(app)
    ensure_table(backend.client, backend.table)
    monkeypatch.setattr(backend, "sent", [], raising=False)
    # The body would go to SQS; here the test sees what would have been sent.
    monkeypatch.setattr(
        backend,
        "send_chord_body",
        lambda callback, values: backend.sent.append((callback.id, values)),
    )
    return backend


def body_signature() -> dict:
    """A frozen body whose task is not registered here, so its error is stored by the
    backend under test (Celery uses the body task's own backend when it knows the task)."""
    body = app.signature("tests.chords.body")
    body.freeze()
    return dict(body)


def part(part_id: str, group_id: str, body: dict) -> SimpleNamespace:
    return SimpleNamespace(id=part_id, group=group_id, chord=body, task="tests.jobs.increment")


def put_records(backend: DynamoDBJobBackend, values: dict[str, object]) -> None:
    """SUCCESS records for many members at once (BatchWriteItem: test setup only)."""
    rows = [
        {
            "PutRequest": {
                "Item": {
                    "job_id": {"S": job_id},
                    "status": {"S": "SUCCESS"},
                    "result": {"S": json.dumps(value)},
                    "finished_at": {"S": "2030-01-01T00:00:00.000Z"},
                }
            }
        }
        for job_id, value in values.items()
    ]
    for start in range(0, len(rows), 25):
        backend.client.batch_write_item(RequestItems={backend.table: rows[start : start + 25]})


def start_chord(
    backend: DynamoDBJobBackend, ids: list[str], size: int | None = None
) -> tuple[str, dict]:
    group_id = f"g-{uuid.uuid4().hex[:8]}"
    header = app.GroupResult(group_id, [app.AsyncResult(i) for i in ids])
    body = body_signature()
    backend.apply_chord((group_id, header.results), app.signature(body))
    backend.set_chord_size(group_id, len(ids) if size is None else size)
    return group_id, body


def item(backend: DynamoDBJobBackend, key: str) -> dict | None:
    return backend.client.get_item(
        TableName=backend.table, Key={"job_id": {"S": key}}, ConsistentRead=True
    ).get("Item")


def item_size(record: dict) -> int:
    """An upper bound of DynamoDB's item size (names plus values; JSON adds type tags)."""
    return sum(
        len(name.encode()) + len(json.dumps(value).encode()) for name, value in record.items()
    )


def all_items(backend: DynamoDBJobBackend) -> list[dict]:
    items, start = [], {}
    while True:
        page = backend.client.scan(TableName=backend.table, **start)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def test_a_chord_fires_when_its_last_part_reports(backend):
    ids = ["a1", "a2", "a3"]
    group_id, body = start_chord(backend, ids)
    put_records(backend, {"a1": 1, "a2": 2, "a3": 3})
    for part_id in ids[:2]:
        backend.on_chord_part_return(part(part_id, group_id, body), states.SUCCESS, None)
    assert backend.sent == []
    backend.on_chord_part_return(part("a3", group_id, body), states.SUCCESS, None)
    # Header order, whatever the order the parts ended in (Celery's canvas guide: "the
    # callback is then applied with the return value of each task in the header").
    assert backend.sent == [(body["options"]["task_id"], [1, 2, 3])]
    backend.on_chord_part_return(part("a2", group_id, body), states.SUCCESS, None)
    assert len(backend.sent) == 1  # fired: a late duplicate sends nothing


def test_a_duplicated_part_does_not_fire_the_chord_early(backend):
    ids = ["d1", "d2", "d3"]
    group_id, body = start_chord(backend, ids)
    put_records(backend, {"d1": 1, "d2": 2})
    for part_id in ("d1", "d1", "d2"):  # d1 reports twice: the counter reaches 3
        backend.on_chord_part_return(part(part_id, group_id, body), states.SUCCESS, None)
    assert backend.sent == []
    assert item(backend, f"chord:{group_id}")["done"] == {"N": "3"}
    put_records(backend, {"d3": 3})
    backend.on_chord_part_return(part("d3", group_id, body), states.SUCCESS, None)
    assert backend.sent == [(body["options"]["task_id"], [1, 2, 3])]


def test_chord_size_comes_from_celery_and_a_chain_tail_group_is_no_chord(backend):
    # chord([chain(a, group(b, c))], body): Celery freezes the header as a group holding the
    # chain's GroupResult; b and c report to the chord, a does not. Celery announces size 2
    # for the chord, then 2 again for the inner group when the chain reaches it.
    group_id, inner_id = "g-chain", "g-inner"
    a, b, c = (app.AsyncResult(i) for i in ("ca", "cb", "cc"))
    header = app.GroupResult(group_id, [app.GroupResult(inner_id, [b, c], parent=a)])
    body = body_signature()
    backend.apply_chord((group_id, header.results), app.signature(body))
    backend.set_chord_size(group_id, 2)
    backend.set_chord_size(inner_id, 2)
    assert item(backend, f"chord:{inner_id}") is None  # no chord: nothing written
    put_records(backend, {"ca": 1, "cb": 11, "cc": 101})
    backend.on_chord_part_return(part("cb", group_id, body), states.SUCCESS, None)
    assert backend.sent == []
    backend.on_chord_part_return(part("cc", group_id, body), states.SUCCESS, None)
    # Celery's test_nested_chord_group_chain_group_tail: [[42, 42]] "since the chain
    # prevents unrolling".
    assert backend.sent == [(body["options"]["task_id"], [[11, 101]])]


def test_a_failed_member_fails_the_body_at_once_naming_it(backend):
    ids = ["f1", "f2", "f3"]
    group_id, body = start_chord(backend, ids)
    put_records(backend, {"f1": 1})
    backend.store_result("f2", RuntimeError("boom"), states.FAILURE)
    backend.on_chord_part_return(part("f1", group_id, body), states.SUCCESS, None)
    backend.on_chord_part_return(part("f2", group_id, body), states.FAILURE, RuntimeError("boom"))
    # Celery's guide: the body's result is a ChordError: "Dependency <id> raised <exc>",
    # naming the task that failed first in time; the other parts still run.
    body_result = app.AsyncResult(body["options"]["task_id"], backend=backend)
    assert body_result.state == states.FAILURE
    assert isinstance(body_result.result, ChordError)
    assert "Dependency f2 raised RuntimeError('boom')" in str(body_result.result)
    put_records(backend, {"f3": 3})
    backend.on_chord_part_return(part("f3", group_id, body), states.SUCCESS, None)
    assert backend.sent == []  # the body never runs


def test_a_member_whose_record_is_gone_fails_the_chord_within_the_bound(backend, monkeypatch):
    monkeypatch.setitem(app.conf, "result_chord_join_timeout", 0.5)
    ids = ["m1", "m2"]
    group_id, body = start_chord(backend, ids)
    put_records(backend, {"m1": 1})  # m2 reports but has no record (ignore_result)
    backend.on_chord_part_return(part("m1", group_id, body), states.SUCCESS, None)
    started = time.monotonic()
    backend.on_chord_part_return(part("m2", group_id, body), states.SUCCESS, None)
    assert time.monotonic() - started < 0.5 + 2
    error = app.AsyncResult(body["options"]["task_id"], backend=backend).result
    assert isinstance(error, ChordError)
    assert "Dependency m2" in str(error) and "missing" in str(error)
    assert backend.sent == []


def test_a_chord_whose_group_was_deleted_fails_once(backend):
    ids = ["x1", "x2"]
    group_id, body = start_chord(backend, ids)
    put_records(backend, {"x1": 1, "x2": 2})
    backend.delete_group(group_id)
    for part_id in ids:
        backend.on_chord_part_return(part(part_id, group_id, body), states.SUCCESS, None)
    error = app.AsyncResult(body["options"]["task_id"], backend=backend).result
    assert isinstance(error, ChordError) and "gone" in str(error)
    assert backend.sent == []


def test_a_large_group_is_saved_over_pages_and_restored(backend):
    members = [app.AsyncResult(str(uuid.uuid4())) for _ in range(10_000)]
    backend.save_group("big", app.GroupResult("big", members))
    saved = item(backend, "group:big")
    assert int(saved["pages"]["N"]) > 1
    assert len(saved["result"]["S"]) <= GROUP_PAGE_CHARS
    restored = backend.restore_group("big", cache=False)
    assert [r.id for r in restored.results] == [r.id for r in members]
    backend.delete_group("big")
    assert all_items(backend) == []


def test_ten_thousand_parts_fire_once_and_no_item_nears_400_kb(backend):
    ids = [str(uuid.uuid4()) for _ in range(10_000)]
    group_id, body = start_chord(backend, ids)
    put_records(backend, {job_id: index for index, job_id in enumerate(ids)})
    for job_id in ids:
        backend.on_chord_part_return(part(job_id, group_id, body), states.SUCCESS, None)
    assert backend.sent == [(body["options"]["task_id"], list(range(10_000)))]
    assert item(backend, f"chord:{group_id}")["done"] == {"N": "10000"}
    largest = max(item_size(record) for record in all_items(backend))
    assert largest < ITEM_LIMIT * 0.9, largest


# --- real workers (each test its own, so that no other worker's processes hide a blocked one)
def body_of(result) -> object:
    return result.get(timeout=60, interval=0.2)


def test_chord_of_a_group(stack: Stack, start_worker):
    from tasks.debug import add
    from tests.jobs import total

    start_worker()

    # Celery's canvas guide: chord(add.s(i, i) for i in range(100))(tsum.s()).get() == 9900
    result = chord(add.s(x=i, y=i) for i in range(100))(total.s())
    assert body_of(result) == 9900


def test_chord_whose_header_is_a_chain_ending_in_a_group(
    stack: Stack, start_worker, tmp_path: Path
):
    from tasks.debug import add
    from tests.jobs import echo, increment

    # The only worker, with one pool process: were it blocked, nothing would run.
    worker = start_worker(concurrency=1)
    runs = tmp_path / "body-runs"
    started = time.monotonic()
    result = chord(
        [chain(increment.s(1), group(increment.s(by=10), increment.s(by=100)))],
        echo.s(path=str(runs)),
    ).apply_async()
    # Celery's test_nested_chord_group_chain_group_tail: the body gets [[42, 42]] for
    # chain(identity(42), group(identity, identity)): the chain's result is its group's.
    assert body_of(result) == [[12, 102]]
    assert time.monotonic() - started < 60
    follow = add.delay(x=1, y=2)  # the same process serves the next job
    assert follow.get(timeout=30, interval=0.2) == 3
    assert worker.alive()
    wait_until(lambda: stack.queue_counts() == (0, 0), 30, message="queue drained")
    assert runs.read_text().splitlines() == ["[[12, 102]]"]  # the body ran once


def test_nested_groups_in_a_header_are_unrolled(stack: Stack, start_worker):
    from tests.jobs import echo, increment

    start_worker()

    # Celery's test_nested_chord_group / test_nested_group_chord_counting_mixed: groups
    # nested in a chord's header are unrolled into it, one value per task. The order is
    # that of the header's GroupResult (the body's parent): Celery's freeze unrolls nested
    # groups last member first, so it is not the order written here.
    header = [group(increment.s(1), group(increment.s(2), increment.s(3))), increment.s(4)]
    result = chord(header, echo.s()).apply_async()
    values = body_of(result)
    assert sorted(values) == [2, 3, 4, 5]
    assert values == [member.get(timeout=10) for member in result.parent.results]


def test_a_failing_member_fails_the_body_and_calls_its_errback(
    stack: Stack, start_worker, tmp_path: Path
):
    from tasks.debug import fail
    from tests.jobs import increment, record_errback, total

    start_worker()

    errbacks = tmp_path / "errbacks"
    failing = fail.s(message="boom").set(task_id=f"failing-{uuid.uuid4().hex[:8]}")
    body = total.s().on_error(record_errback.s(path=str(errbacks)))
    result = chord([increment.s(1), failing, increment.s(2)], body).apply_async()
    # Canvas guide, "Error handling": the body's result is a ChordError naming the failed
    # dependency and its error; an errback on the body is how to act on it, and a bound
    # errback "is dispatched as a task and receives the id of the failed chord callback".
    # (result.get() itself may raise the member's RuntimeError first: it checks the header,
    # its parent, as Celery's test_chord_on_error expects. The body's own result is read.)
    with pytest.raises(ChordError) as raised:
        body_of(app.AsyncResult(result.id))
    assert f"Dependency {failing.id} raised RuntimeError('boom')" in str(raised.value)
    with pytest.raises((ChordError, RuntimeError), match="boom"):
        body_of(result)
    assert wait_until(lambda: errbacks.exists() and errbacks.read_text(), 30, message="errback ran")
    assert [json.loads(line) for line in errbacks.read_text().splitlines()] == [
        {"task_id": result.id}
    ]
    body_record = stack.item(result.id)
    assert body_record["error"]["M"]["type"] == {"S": "ChordError"}
    assert "started_at" not in body_record  # the body never ran


def test_a_part_sent_twice_does_not_fire_the_chord_early(
    stack: Stack, start_worker, tmp_path: Path
):
    from tests.jobs import echo, increment, wait_for_file

    worker = start_worker()  # two pool processes: one held by wait_for_file, one for the rest

    release = tmp_path / "release"
    runs = tmp_path / "body-runs"
    published: list[dict] = []

    def capture(sender=None, body=None, headers=None, **_):
        published.append({"task": sender, "body": body, "headers": headers})

    signals.before_task_publish.connect(capture)
    try:
        result = chord(
            [increment.s(1), increment.s(2), wait_for_file.s(3, path=str(release))],
            echo.s(path=str(runs)),
        ).apply_async()
    finally:
        signals.before_task_publish.disconnect(capture)
    first = next(p for p in published if p["task"] == "tests.jobs.increment")
    args, kwargs, embed = first["body"]
    group_id = first["headers"]["group"]
    # The same part again: same task id, group and chord body, as a redelivery would be.
    app.send_task(
        first["task"],
        args=args,
        kwargs=kwargs,
        task_id=first["headers"]["id"],
        group_id=group_id,
        group_index=first["headers"]["group_index"],
        chord=embed["chord"],
    )
    counter = f"chord:{group_id}"
    # The copy does not run (the run lease drops it); had the part finished first, the copy
    # reports it again, which may only make the counter run ahead.
    wait_until(
        lambda: (
            int(stack.item(counter)["done"]["N"]) >= 2
            and f"[{first['headers']['id']}] is already" in worker.log()
        ),
        30,
        message="the copy dropped and the second part counted",
    )
    assert "chord_fired_at" not in stack.item(counter)
    assert stack.status(result.id) is None  # the body was not sent
    release.touch()
    assert body_of(result) == [2, 3, 3]
    wait_until(lambda: stack.queue_counts() == (0, 0), 30, message="queue drained")
    assert runs.read_text().splitlines() == ["[2, 3, 3]"]


def test_a_chord_of_a_thousand_parts(stack: Stack, start_worker):
    from tests.jobs import increment, total

    start_worker(concurrency=4)
    started = time.monotonic()
    # Celery's test_large_header: group(identity.si(i) for i in range(1000)) | tsum.s()
    result = chord(increment.s(i) for i in range(1000))(total.s())
    sent = time.monotonic() - started
    assert result.get(timeout=120, interval=0.5) == sum(range(1, 1001))
    elapsed = time.monotonic() - started
    print(f"1,000-part chord: header sent in {sent:.1f}s, body done after {elapsed:.1f}s")
    assert elapsed < 90, elapsed
