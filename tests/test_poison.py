"""Which messages the worker refuses before Celery sees them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tasks import app
from tasks.poison import message_problem

GOOD_HEADERS = {"id": "abc", "task": "tasks.debug.add", "lang": "py"}
GOOD_BODY = json.dumps([[], {"x": 1, "y": 2}, {"callbacks": None, "errbacks": None,
                                               "chain": None, "chord": None}])


def message(headers=GOOD_HEADERS, body=GOOD_BODY, content_type="application/json"):
    return SimpleNamespace(headers=headers, body=body, content_type=content_type)


def test_a_well_formed_message_passes():
    assert message_problem(message(), app.tasks) is None


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (message(headers=None), "no headers"),
        (message(headers={"task": "tasks.debug.add"}), "headers.id"),
        (message(headers={"id": 5, "task": "tasks.debug.add"}), "headers.id"),
        (message(headers={"id": "abc"}), "headers.task"),
        (message(content_type=None), "content-type None"),
        (message(content_type="application/x-python-serialize"), "only application/json"),
        (message(body="[[], {}"), "not JSON"),
        (message(body=json.dumps([[], {}])), "[args, kwargs, embed]"),
        (message(body=json.dumps({"args": []})), "[args, kwargs, embed]"),
        (message(body=json.dumps([{}, {}, {}])), "list of args"),
        (message(body=json.dumps([[], {}, "x"])), "third element"),
        (message(body=b"\xff\xfe"), "not JSON"),
        (message(headers={"id": "abc", "task": "tasks.nope"}), "unknown task 'tasks.nope'"),
    ],
)
def test_malformed_messages_are_named(msg, reason):
    problem = message_problem(msg, app.tasks)
    assert problem is not None and reason in problem
