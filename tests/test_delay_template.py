"""POST /tasks/{name} with `Delay-Seconds`: the three POST templates, on both engines.

The oracles: SQS's SendMessage ("DelaySeconds ... Valid values: 0 to 900"), and Celery's
message: the `eta` header is the moment the job becomes due, ISO 8601 (what `countdown=`
writes). The template computes it from $context.requestTimeEpoch with integer arithmetic;
Python's datetime is the reference for the date, Apache Velocity 1.7 for the bytes.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.http_contract.mapping_templates import fill_template, load_template
from tasks.http_contract.vtl import Params, render
from tests.test_templates import (  # noqa: F401  (fixtures)
    EPOCH_MS,
    JOB_ID,
    POST_TEMPLATE,
    kombu_channel,
    kombu_decode,
    velocity,
)

ACCEPTED = load_template("send_task.response")
REFUSED = fill_template("send_task.error", max_body_bytes="1000")
PATH = "/tasks/tasks.debug.add"
BODY = '{"x": 1, "y": 2}'
# The largest epoch whose due date is still in year 9999 (ISO 8601's four-digit years).
LAST_EPOCH_MS = 253_402_300_799_999 - 900_000


def iso(epoch_ms: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)).isoformat(
        timespec="milliseconds"
    )


def answers(headers: dict[str, str], epoch_ms: int = EPOCH_MS):
    """(the SendMessage form, the 202 answer, the 4xx answer) our engine renders."""
    context = {
        "requestId": JOB_ID,
        "path": PATH,
        "resourcePath": PATH,
        "requestTimeEpoch": epoch_ms,
    }
    params = Params(header=headers)
    request = render(POST_TEMPLATE, body=BODY, params=params, context=context).text
    accepted = render(ACCEPTED, body="", params=params, context=context)
    refused = render(REFUSED, body="", params=params, context=context)
    return request, accepted, refused


@pytest.mark.parametrize("seconds", ["1", "9", "10", "99", "100", "599", "900"])
def test_a_delay_is_sqs_delay_seconds_and_the_eta_header(kombu_channel, seconds):  # noqa: F811
    from tasks.worker.gate import check  # the worker's message gate

    request, accepted, _ = answers({"Delay-Seconds": seconds})
    fields = urllib.parse.parse_qs(request, keep_blank_values=True, strict_parsing=True)
    assert set(fields) == {"Action", "MessageBody", "DelaySeconds"}
    assert fields["DelaySeconds"] == [seconds]
    message, _ = kombu_decode(kombu_channel, fields["MessageBody"][0])
    eta = iso(EPOCH_MS + int(seconds) * 1000)
    assert message.headers["eta"] == eta
    assert datetime.fromisoformat(eta) == datetime.fromtimestamp(EPOCH_MS / 1000, UTC) + timedelta(
        seconds=int(seconds)
    )
    assert check(message, {"tasks.debug.add"}) is None
    assert accepted.status_override is None
    assert json.loads(accepted.text) == {
        "job_id": JOB_ID,
        "status": "PENDING",
        "status_url": f"/jobs/{JOB_ID}",
        "eta": eta,
    }


@pytest.mark.parametrize("seconds", ["", "0"])
def test_no_delay_is_the_message_of_today(seconds):
    assert answers({"Delay-Seconds": seconds})[0] == answers({})[0]
    assert "eta" not in json.loads(answers({"Delay-Seconds": seconds})[1].text)


MALFORMED = ["-1", "+5", "901", "1000", "01", "00", "1.5", "5s", " 5", "abc", "9" * 20, "٣"]


@pytest.mark.parametrize("seconds", MALFORMED)
def test_a_malformed_delay_is_400_and_never_a_message(seconds):
    request, accepted, refused = answers({"Delay-Seconds": seconds})
    fields = urllib.parse.parse_qs(request)
    assert fields["MessageBody"] == ["refused"]  # a request SQS refuses: never a message
    for answer in (accepted, refused):
        assert answer.status_override == 400
        assert json.loads(answer.text)["message"].startswith(
            "Delay-Seconds must be a whole number of seconds from 0 to 900"
        )


@settings(max_examples=300, deadline=None)
@given(epoch=st.integers(min_value=0, max_value=LAST_EPOCH_MS), seconds=st.integers(1, 900))
def test_the_eta_is_the_request_time_plus_the_delay_for_any_date(epoch, seconds):
    request, accepted, _ = answers({"Delay-Seconds": str(seconds)}, epoch)
    eta = iso(epoch + seconds * 1000)
    assert json.loads(accepted.text)["eta"] == eta
    assert f"&DelaySeconds={seconds}" in request


# Dates where a civil calendar goes wrong: leap days (2000, 2024; 2100 is no leap year),
# the turn of a year, of a century, the epoch itself; and today.
EDGES = [0, 951_782_399_999, 1_709_164_800_005, 1_735_689_599_500, 4_107_542_399_999, EPOCH_MS]


def test_velocity_17_renders_the_delay_the_same(velocity):  # noqa: F811
    """API Gateway's engine: the same form, eta and answers, byte for byte."""
    cases = [(epoch, {"Delay-Seconds": "900"}) for epoch in EDGES]
    cases += [(EPOCH_MS, {"Delay-Seconds": v}) for v in ("0", "1", "45", "901", "01", "x")]
    for epoch, headers in cases:
        ours = dict(zip(("request", "accepted", "refused"), answers(headers, epoch), strict=True))
        for name, template in (
            ("request", POST_TEMPLATE),
            ("accepted", ACCEPTED),
            ("refused", REFUSED),
        ):
            if name != "request" and epoch != EPOCH_MS:
                continue  # the answers' eta lines are the request's: one date suffices
            java = velocity(
                template,
                BODY if name == "request" else "",
                JOB_ID,
                PATH,
                PATH,
                with_status=True,
                times=(epoch, "-"),
                headers=headers,
            )
            mine = ours[name]
            if name == "request":
                assert java[0] == mine, (epoch, headers)
            else:
                assert java == (mine.text, mine.status_override), (epoch, headers)
