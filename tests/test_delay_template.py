"""POST /tasks/{name} with `Delay-Seconds`, `X-Countdown` or `Eta`: the three POST templates,
on both engines.

The oracles: SQS's SendMessage ("DelaySeconds ... Valid values: 0 to 900"), and Celery's
message: the `eta` header is the moment the job becomes due, ISO 8601 (what `countdown=`
writes). The template computes it from $context.requestTimeEpoch with integer arithmetic;
Python's datetime is the reference for the date, Apache Velocity 1.7 for the bytes. A delay
past 900 s is sent with no DelaySeconds: the worker receives it at once and defers it
(tasks.worker.deferral), so the record says SCHEDULED at once.
"""

from __future__ import annotations

import json
import math
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
TEN_YEARS = 315_360_000  # the longest delay a header may ask, in seconds
# The largest epoch whose due date is still in year 9999 (ISO 8601's four-digit years).
LAST_EPOCH_MS = 253_402_300_799_999 - TEN_YEARS * 1000


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


@pytest.mark.parametrize("header", ["Delay-Seconds", "X-Countdown"])
@pytest.mark.parametrize("seconds", ["", "0"])
def test_no_delay_is_the_message_of_today(header, seconds):
    assert answers({header: seconds})[0] == answers({})[0]
    assert "eta" not in json.loads(answers({header: seconds})[1].text)


def test_x_countdown_is_delay_seconds():
    for seconds in ("1", "900", "901", "7200", str(TEN_YEARS)):
        assert answers({"X-Countdown": seconds}) == answers({"Delay-Seconds": seconds})


@pytest.mark.parametrize("seconds", ["901", "7200", str(10 * 86400), str(TEN_YEARS)])
def test_a_delay_past_15_minutes_is_sent_at_once_with_its_eta(kombu_channel, seconds):  # noqa: F811
    """No DelaySeconds: the worker receives it now and defers it to its eta."""
    request, accepted, _ = answers({"Delay-Seconds": seconds})
    fields = urllib.parse.parse_qs(request, keep_blank_values=True, strict_parsing=True)
    assert set(fields) == {"Action", "MessageBody"}
    message, _ = kombu_decode(kombu_channel, fields["MessageBody"][0])
    eta = iso(EPOCH_MS + int(seconds) * 1000)
    assert message.headers["eta"] == json.loads(accepted.text)["eta"] == eta


TWO = "Give at most one of Delay-Seconds, X-Countdown and Eta"
BAD_SECONDS = "Delay-Seconds (or X-Countdown) must be a whole number of seconds from 0 to 315360000"
BAD_ETA = "Eta must be a real UTC date and time in ISO 8601"
MALFORMED = [
    *(
        ({header: v}, BAD_SECONDS)
        for header in ("Delay-Seconds", "X-Countdown")
        for v in ["-1", "+5", str(TEN_YEARS + 1), "01", "00", "1.5", "5s", " 5", "abc", "9" * 20]
    ),
    ({"Delay-Seconds": "٣"}, BAD_SECONDS),
    ({"Delay-Seconds": "5", "X-Countdown": "5"}, TWO),
    ({"X-Countdown": "5", "Eta": "2026-12-06T20:00:00Z"}, TWO),
    ({"Delay-Seconds": "0", "Eta": "2026-12-06T20:00:00Z"}, TWO),
    *(
        ({"Eta": v}, BAD_ETA)
        for v in [
            "2026-12-06T20:00:00",  # no zone: which one?
            "2026-12-06T20:00:00+01:00",  # UTC only
            "2026-12-06 20:00:00Z",
            "2026-12-06",
            "2026-02-29T00:00:00Z",  # no such day (2026 is no leap year)
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-06T24:00:00Z",
            "2026-12-06T20:00:00.1234Z",
            "1969-12-31T23:59:59Z",
            "2037-01-01T00:00:00Z",  # more than ten years after the request (2026-09)
            "tomorrow",
        ]
    ),
]


@pytest.mark.parametrize("headers, message", MALFORMED)
def test_a_malformed_or_doubled_delay_is_400_and_never_a_message(headers, message):
    request, accepted, refused = answers(headers)
    fields = urllib.parse.parse_qs(request)
    assert fields["MessageBody"] == ["refused"]  # a request SQS refuses: never a message
    for answer in (accepted, refused):
        assert answer.status_override == 400
        assert json.loads(answer.text)["message"].startswith(message)


@settings(max_examples=300, deadline=None)
@given(
    epoch=st.integers(min_value=0, max_value=LAST_EPOCH_MS),
    seconds=st.one_of(st.integers(1, 900), st.integers(901, TEN_YEARS)),
)
def test_the_eta_is_the_request_time_plus_the_delay_for_any_date(epoch, seconds):
    request, accepted, _ = answers({"Delay-Seconds": str(seconds)}, epoch)
    eta = iso(epoch + seconds * 1000)
    assert json.loads(accepted.text)["eta"] == eta
    assert ("&DelaySeconds=" in request) is (seconds <= 900)
    if seconds <= 900:
        assert request.endswith(f"&DelaySeconds={seconds}")


def eta_header(when: datetime, decimals: int, zone: str) -> str:
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if decimals:
        text += "." + f"{when.microsecond // 1000:03d}"[:decimals]
    return text + zone


@settings(max_examples=300, deadline=None)
@given(
    epoch=st.integers(min_value=0, max_value=LAST_EPOCH_MS),
    ahead_ms=st.integers(-86_400_000, TEN_YEARS * 1000),
    decimals=st.integers(0, 3),
    zone=st.sampled_from(["Z", "+00:00"]),
)
def test_an_eta_header_is_the_messages_eta_and_sqs_holds_it_no_earlier(
    epoch, ahead_ms, decimals, zone
):
    """Any instant within ten years, written any way the header admits: the message's eta is
    that instant (milliseconds kept), DelaySeconds rounds up (never before it), and an
    instant already past is no delay."""
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch + ahead_ms)
    header = eta_header(when, decimals, zone)
    meant = datetime.fromisoformat(header.replace("Z", "+00:00"))
    request, accepted, _ = answers({"Eta": header}, epoch)
    if meant.year < 1970:
        assert accepted.status_override == 400
        return
    wait_ms = round((meant - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000) - epoch
    if wait_ms <= 0:
        assert "eta" not in json.loads(accepted.text)  # due now
        assert request == answers({}, epoch)[0]
        return
    assert json.loads(accepted.text)["eta"] == meant.isoformat(timespec="milliseconds")
    delay = math.ceil(wait_ms / 1000)
    assert ("&DelaySeconds=" in request) is (delay <= 900)
    if delay <= 900:
        assert request.endswith(f"&DelaySeconds={delay}")


def test_the_three_templates_share_one_delay_block():
    """send_task.request, .response and .error compute the delay with the same lines."""

    def block(name: str) -> str:
        text = load_template(name)
        start = text.index("## The due time:")
        return text[start : text.index("#if($late ", start)]

    assert block("send_task.request") == block("send_task.response") == block("send_task.error")


# Dates where a civil calendar goes wrong: leap days (2000, 2024; 2100 is no leap year),
# the turn of a year, of a century, the epoch itself; and today.
EDGES = [0, 951_782_399_999, 1_709_164_800_005, 1_735_689_599_500, 4_107_542_399_999, EPOCH_MS]


def test_velocity_17_renders_the_delay_the_same(velocity):  # noqa: F811
    """API Gateway's engine: the same form, eta and answers, byte for byte."""
    cases = [(epoch, {"Delay-Seconds": "900"}) for epoch in EDGES]
    cases += [(epoch, {"X-Countdown": str(TEN_YEARS)}) for epoch in EDGES]
    cases += [(EPOCH_MS, {"Delay-Seconds": v}) for v in ("0", "1", "45", "901", "01", "x")]
    cases += [(EPOCH_MS, {"X-Countdown": "7200"}), (EPOCH_MS, {"X-Countdown": "2", "Eta": "x"})]
    etas = [iso(e + 1000).replace("+00:00", "Z") for e in EDGES if e < EPOCH_MS]
    etas += ["2026-12-06T20:00:00Z", "2028-02-29T23:59:59.5+00:00", "2036-09-18T14:13:20.123Z"]
    etas += ["2026-02-29T00:00:00Z", "2026-12-06T20:00:00", "2037-01-01T00:00:00Z"]
    cases += [(EPOCH_MS, {"Eta": v}) for v in etas]
    for epoch, headers in cases:
        ours = dict(zip(("request", "accepted", "refused"), answers(headers, epoch), strict=True))
        for name, template in (
            ("request", POST_TEMPLATE),
            ("accepted", ACCEPTED),
            ("refused", REFUSED),
        ):
            if name != "request" and epoch != EPOCH_MS:
                continue  # the answers' delay block is the request's: one date suffices
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


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.one_of(
        st.integers(0, 10**9 - 1), st.integers(TEN_YEARS - 1000, TEN_YEARS + 1000)
    ).map(str)
)
def test_the_openapi_pattern_admits_what_the_template_admits(seconds):
    """The documented header (what Schemathesis generates from) and the template agree."""
    import re

    from tasks.http_contract.forms import DELAY_SECONDS_REGEX

    accepted = answers({"X-Countdown": seconds})[1].status_override is None
    assert (re.fullmatch(DELAY_SECONDS_REGEX, seconds) is not None) is accepted
