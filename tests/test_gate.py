"""The message gate (tasks.worker.gate) as a unit: which messages it refuses, and why.

The property-based tests in tests/test_gate_properties.py send generated
messages to a real worker; these name the cases found so far.
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from tasks import app
from tasks.worker import gate

GOOD_HEADERS = {
    "id": "abc",
    "task": "tasks.debug.add",
    "lang": "py",
    "eta": None,
    "expires": None,
    "timelimit": [None, None],
    "retries": 0,
    "root_id": "abc",
    "parent_id": None,
    "group": None,
    "argsrepr": "()",
    "kwargsrepr": "{}",
    "origin": "gen1@host",
    "ignore_result": False,
}
GOOD_BODY = json.dumps(
    [[], {"x": 1, "y": 2}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
)


def message(
    headers=None,
    body=GOOD_BODY,
    content_type="application/json",
    content_encoding="utf-8",
    properties=None,
    **header_changes,
):
    headers = dict(GOOD_HEADERS if headers is None else headers, **header_changes)
    return SimpleNamespace(
        headers=headers,
        body=body,
        content_type=content_type,
        content_encoding=content_encoding,
        properties=properties or {"correlation_id": "abc", "priority": 0},
    )


def test_a_well_formed_message_passes():
    assert gate.check(message(), app.tasks) is None


def test_a_chain_of_signatures_in_the_embed_passes():
    sig = {
        "task": "tasks.debug.add",
        "args": [],
        "kwargs": {"y": 1},
        "options": {"task_id": "t2"},
        "subtask_type": None,
        "immutable": False,
        "chord_size": None,
    }
    body = json.dumps(
        [[1], {"y": 2}, {"callbacks": [sig], "errbacks": None, "chain": [sig], "chord": None}]
    )
    assert gate.check(message(body=body), app.tasks) is None


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (SimpleNamespace(headers=None, body=GOOD_BODY), "no headers"),
        (message(headers={"task": "tasks.debug.add"}), "'id' is a required property"),
        (message(id=5), "headers.id"),
        (message(headers={"id": "abc"}), "'task' is a required property"),
        # The message that stopped a worker for good: billiard unpacks this pair.
        (message(timelimit="soon"), "headers.timelimit"),
        (message(timelimit=[1, 2, 3]), "headers.timelimit"),
        (message(timelimit=["a", None]), "headers.timelimit"),
        (message(eta="tomorrow"), "headers.eta"),
        (message(expires={"at": 1}), "headers.expires"),
        (message(retries="many"), "headers.retries"),
        (message(group_index=-1), "headers.group_index"),
        (message(stamps=[1]), "headers.stamps"),
        (message(args=[1]), "headers"),  # would shadow the request's own args
        (message(content_type=None), "content-type None"),
        (message(content_type="application/x-python-serialize"), "only application/json"),
        (message(content_encoding="binary"), "content-encoding"),
        (message(properties={"priority": "high"}), "properties.priority"),
        (message(body="[[], {}"), "not JSON"),
        (message(body=json.dumps([[], {}])), "body"),
        (message(body=json.dumps({"args": []})), "body"),
        (message(body=json.dumps([{}, {}, {}])), "body.0"),
        (message(body=json.dumps([[], {}, "x"])), "body.2"),
        (message(body=json.dumps([[], {}, {"callbacks": "tasks.debug.add"}])), "body.2"),
        (message(body=json.dumps([[], {}, {"chord": {"args": []}}])), "body.2"),
        (message(body=json.dumps([[], {}, {"surprise": 1}])), "body.2"),
        (message(body=json.dumps([[], {"bad key": 1}, None])), "body.1"),
        (message(body="[[NaN], {}, null]"), "not finite"),
        (message(body="[" * 100 + "]" * 100), "nests deeper"),
        (message(body=b"\xff\xfe"), "not JSON"),
    ],
)
def test_malformed_messages_are_refused_for_good_with_a_reason(msg, reason):
    verdict = gate.check(msg, app.tasks)
    assert verdict is not None and reason in verdict.reason, verdict
    assert verdict.permanent


def test_an_unknown_task_is_refused_but_not_for_good():
    # During a rolling deploy another worker may know it: FAILURE only on the last receive.
    verdict = gate.check(message(task="tasks.nope"), app.tasks)
    assert verdict is not None and "unknown task 'tasks.nope'" in verdict.reason
    assert not verdict.permanent and verdict.job_id == "abc" and verdict.task == "tasks.nope"


def _envelope(**changes):
    inner = base64.b64encode(GOOD_BODY.encode()).decode()
    envelope = {
        "body": inner,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": GOOD_HEADERS,
        "properties": {"body_encoding": "base64", "delivery_info": {}},
    }
    envelope.update(changes)
    return envelope


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({}, "not a kombu JSON envelope"),
        ([], "not a kombu JSON envelope"),
        (_envelope(properties="x"), "properties"),
        (_envelope(properties={"delivery_info": 3}), "delivery_info"),
        (_envelope(headers=[1]), "headers"),
        (_envelope(body=5), "body"),
        (_envelope(body="!!not base64!!"), "not base64"),
        (_envelope(body=base64.b64encode(b"\xff").decode()), "not base64 of UTF-8"),
        (_envelope(**{"content-type": None}), "content-type"),
        (_envelope(properties={"body_encoding": "rot13", "delivery_info": {}}), "rot13"),
    ],
)
def test_envelopes_kombu_cannot_decode_are_caught_before_it_tries(payload, reason):
    problem = gate.envelope_problem(payload)
    assert problem is not None and reason in problem


def test_a_bad_envelope_becomes_a_stand_in_the_gate_refuses_with_its_identity():
    raw = {"ReceiptHandle": "r1", "Body": "..."}
    stand_in = gate.stand_in(_envelope(body=5), "envelope.body is missing", raw, "http://q")
    assert gate.envelope_problem(stand_in) is None
    kombu_message = SimpleNamespace(
        headers=stand_in["headers"],
        body=stand_in["body"],
        content_type=stand_in["content-type"],
        content_encoding="utf-8",
        properties=stand_in["properties"],
    )
    verdict = gate.check(kombu_message, app.tasks)
    assert verdict.reason == "envelope.body is missing" and verdict.job_id == "abc"
    assert stand_in["properties"]["delivery_info"]["sqs_queue"] == "http://q"


def test_a_good_envelope_passes():
    assert gate.envelope_problem(_envelope()) is None


# --- the compiled validator decides, jsonschema explains: they must agree -----------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**7),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["2026-12-01T10:00:00+00:00", "soon", "", "tasks.debug.add", "abc", "\ud800"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_HEADER_NAMES = st.sampled_from([*gate.HEADERS["properties"], "args", "x-extra", "get", "1bad"])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(_HEADER_NAMES, _VALUES, max_size=8))
def test_the_compiled_and_the_explaining_validators_agree_on_headers(mutation):
    headers = {**GOOD_HEADERS, **mutation}
    explained = not any(True for _ in gate._HEADERS.detail.iter_errors(headers))
    assert gate._HEADERS.accepts(headers) == explained, headers


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_VALUES, _VALUES, _VALUES)
def test_the_compiled_and_the_explaining_validators_agree_on_bodies(args, kwargs, embed):
    for body in (
        [args, kwargs, embed],
        [[], {"x": kwargs}, {"callbacks": embed}],
        [[], {}, {"chain": [{"task": "t", "options": {"link": args}}]}],
    ):
        explained = not any(True for _ in gate._BODY.detail.iter_errors(body))
        assert gate._BODY.accepts(body) == explained, body


_PROPERTY_NAMES = st.sampled_from([*gate.PROPERTIES["properties"], "x-extra"])


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.dictionaries(_PROPERTY_NAMES, _VALUES, max_size=6))
def test_the_compiled_and_the_explaining_validators_agree_on_properties(properties):
    explained = not any(True for _ in gate._PROPERTIES.detail.iter_errors(properties))
    assert gate._PROPERTIES.accepts(properties) == explained, properties


def test_the_compiled_validator_runs_a_cheaper_form_of_the_same_schema():
    """A null-or-ID header is one type list, and the names a header may not have are a
    lookahead in its name pattern: no exception raised per header on a valid message
    (the agreement tests above hold the two forms to the same decisions)."""
    cheaper = gate.cheaper_to_run(gate.HEADERS)
    assert cheaper["properties"]["parent_id"] == {
        "type": ["null", "string"],
        "minLength": 1,
        "maxLength": gate.MAX_ID_CHARS,
    }
    assert set(cheaper["propertyNames"]) == {"pattern"}
    names = gate.Schema({"type": "object", "propertyNames": gate.HEADERS["propertyNames"]})
    for name, ok in (("x-extra", True), ("args", False), ("get", False), ("argsx", True)):
        assert names.accepts({name: 1}) is ok, name
        assert (not any(True for _ in names.detail.iter_errors({name: 1}))) is ok, name
