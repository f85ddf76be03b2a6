"""The transition table (tasks.results.transitions) is what the writes, the DELETE template
and the docs (docs/job-record.md) say: each is built from it or checked against it here."""

from __future__ import annotations

from pathlib import Path

from celery import states

from tasks.results.transitions import (
    NON_TERMINAL,
    NONE,
    TRANSITIONS,
    allowed,
    render_table,
    status_condition,
)

ROOT = Path(__file__).resolve().parent.parent


def conditions_sent(records, action) -> list[str]:
    seen: list[str] = []

    def capture(params, **_):
        if "ConditionExpression" in params:
            seen.append(params["ConditionExpression"])

    records.client.meta.events.register("provide-client-params.dynamodb.*", capture)
    try:
        action()
    finally:
        records.client.meta.events.unregister("provide-client-params.dynamodb.*", capture)
    return seen


def test_the_docs_show_the_table_as_it_is():
    page = ROOT / "docs" / "job-record.md"
    assert render_table() in page.read_text(encoding="utf-8")


def test_the_delete_template_writes_the_revoke_rows_condition():
    template = (ROOT / "tasks/http_contract/templates/revoke_job.request.vtl").read_text(
        encoding="utf-8"
    )
    assert status_condition("revoke") in template.replace("\\u0023", "#")


def test_every_job_write_takes_its_status_condition_from_the_table(records):
    job = "5b6c2a1e-0000-4000-8000-00000000c0de"
    facts = {"run_token": "m:1", "retries": 0}
    cases = {
        "start": lambda: records.transition(job, states.STARTED, facts=facts),
        "progress": lambda: records.transition(job, "PROGRESS", progress_text="{}"),
        "retry": lambda: records.transition(
            job, states.RETRY, facts=facts, error={"type": "X", "message": "x"}
        ),
        "finish": lambda: records.transition(job, states.SUCCESS, result_text="1"),
        "callback": lambda: records.record_callback(job, {"state": "pending"}),
        "revoke": lambda: records.revoke(job),
        "redrive": lambda: records.reset_for_redrive(job),
        "reject": lambda: records.reject_message("other-job", "bad", final=False),
        "schedule": lambda: records.mark_scheduled(
            "later-job", task="t", eta="2036-01-01T00:00:00+00:00", schedule="job-later-job-0"
        ),
    }
    for name, action in cases.items():
        sent = conditions_sent(records, action)
        assert sent and all(status_condition(name) in c for c in sent), (name, sent)


def test_the_oracle_agrees_with_the_rules_it_states():
    assert allowed("redrive", states.FAILURE)
    assert not any(
        allowed("redrive", s) for s in (states.STARTED, states.REVOKED, states.SUCCESS, NONE)
    )
    assert not any(allowed(t.name, states.SUCCESS) for t in TRANSITIONS if t.writer == "worker")
    assert all(allowed("revoke", s) for s in NON_TERMINAL)
    assert {t.name for t in TRANSITIONS} >= {"start", "finish", "revoke", "redrive", "forget"}


def test_the_not_terminal_condition_reads_with_dynamodbs_precedence(records):
    """The worker's conditions leave out parentheses DynamoDB's precedence makes redundant
    (AWS, "Comparison operator and function reference", precedence: IN above NOT, NOT above
    AND, AND above OR): `... OR NOT #status IN (...)` still passes exactly the non-terminal
    records, and the finish condition's `OR #finish_id = :finish_id` a repeat of its write."""
    condition = status_condition("finish")
    values = {
        ":success": {"S": states.SUCCESS},
        ":failure": {"S": states.FAILURE},
        ":revoked": {"S": states.REVOKED},
        ":x": {"S": "x"},
    }
    client = records.client

    def accepted(status: str | None, expression: str, **extra) -> bool:
        key = {"job_id": {"S": f"precedence-{status}"}}
        if status is not None:
            client.put_item(
                TableName="jobs", Item={**key, "status": {"S": status}, "f": {"S": "mine"}}
            )
        try:
            client.update_item(
                TableName="jobs",
                Key=key,
                UpdateExpression="SET #x = :x",
                ConditionExpression=expression,
                ExpressionAttributeNames={"#status": "status", "#x": "x", **extra.get("names", {})},
                ExpressionAttributeValues={**values, **extra.get("values", {})},
            )
        except client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    statuses = [None, states.PENDING, states.STARTED, "PROGRESS", states.RETRY, "SCHEDULED"]
    terminal = [states.SUCCESS, states.FAILURE, states.REVOKED]
    assert all(accepted(s, condition) for s in statuses)
    assert not any(accepted(s, condition) for s in terminal)
    repeat = {"names": {"#f": "f"}, "values": {":f": {"S": "mine"}}}
    finish = f"{condition} OR #f = :f"
    assert all(accepted(s, finish, **repeat) for s in terminal)
    other = {"names": {"#f": "f"}, "values": {":f": {"S": "another"}}}
    assert not any(accepted(s, finish, **other) for s in terminal)
