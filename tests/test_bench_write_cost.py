"""bench.write_cost's request surgery: every variant it replays is a request DynamoDB accepts
(no placeholder left unused or undefined: DynamoDB refuses either), built from the records'
own STARTED and SUCCESS requests (captured with a botocore hook, as the bench does)."""

from __future__ import annotations

from celery import states

from bench.write_cost import LEAN, split_clauses, variants


def captured_requests(records) -> dict:
    seen: dict[str, dict] = {}

    def capture(params, **_):
        seen[params["ExpressionAttributeValues"][":status"]["S"]] = dict(params)

    events = records.client.meta.events
    events.register("provide-client-params.dynamodb.UpdateItem", capture)
    job = "5b6c2a1e-0000-4000-8000-00000000beef"
    facts = {"run_token": "m:1", "retries": 0, "attempts": 1, "task": "tasks.debug.add"}
    facts |= {"worker": "w@h", "args": "()", "kwargs": "{}", "queue": "q", "root_id": job}
    try:
        assert records.transition(job, states.STARTED, facts=facts, refusal={})
        assert records.transition(job, states.SUCCESS, result_text="3", facts=facts)
    finally:
        events.unregister("provide-client-params.dynamodb.UpdateItem", capture)
    return seen


def test_every_variant_is_a_request_dynamodb_accepts(records):
    captured = captured_requests(records)
    client = records.client
    built = variants(captured, "jobs", "jobs", baseline=captured)
    for name, requests_of in built.items():
        for operation, params in requests_of(f"variant-{name}"):
            getattr(client, operation)(**params)  # raises on an unused or missing placeholder


def test_the_lean_variant_drops_the_facts_and_keeps_the_transition(records):
    captured = captured_requests(records)
    (_, started), (_, success) = variants(captured, "jobs", "jobs")["no facts, no no-op REMOVEs"](
        "x"
    )
    for params in (started, success):
        clauses = split_clauses(params["UpdateExpression"])
        written = {c.split(" ", 1)[0][1:] for c in clauses["SET"] + clauses["REMOVE"]}
        assert not written & LEAN
        assert {"status", "updated_at"} <= written
        assert (
            params["ConditionExpression"]
            == captured[params["ExpressionAttributeValues"][":status"]["S"]]["ConditionExpression"]
        )
    assert "run_lease" in started["UpdateExpression"]
    assert "list_pk" in success["UpdateExpression"]
