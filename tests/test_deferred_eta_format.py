"""A job POSTed with a delay past the deferral threshold: the `eta` its record carries once
the worker defers it (tasks.worker.deferral, SCHEDULED) is the very string of the 202 answer,
`yyyy-mm-ddThh:mm:ss.mmm+00:00` (send_task.response), never Python's microseconds
(`.791000`) nor a fraction dropped at a whole second.

No server: the POST templates are rendered as in test_delay_template, the SQS body they make
is received by the deferral middleware as kombu hands it over, with test_deferral's fakes.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from datetime import UTC, datetime

import pytest

from tasks.worker import deferral
from tests.test_deferral import (
    SETTINGS,
    Consumer,
    Message,
    Records,
    run_on_loop,
    scheduler,  # noqa: F401  (fixture)
)
from tests.test_delay_template import answers
from tests.test_templates import EPOCH_MS, JOB_ID, kombu_channel, kombu_decode  # noqa: F401

ANSWER_ETA = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


@pytest.mark.parametrize("epoch_ms", [EPOCH_MS, EPOCH_MS - EPOCH_MS % 1000], ids=["ms", "whole"])
def test_the_deferred_records_eta_is_the_202_answers(kombu_channel, scheduler, epoch_ms):  # noqa: F811
    seconds = SETTINGS.defer_after + 3600  # past the threshold: deferred, not held by SQS
    request, accepted, _ = answers({"Delay-Seconds": str(seconds)}, epoch_ms)
    answered = json.loads(accepted.text)["eta"]
    assert ANSWER_ETA.match(answered), answered

    body = urllib.parse.parse_qs(request)["MessageBody"][0]
    received, _ = kombu_decode(kombu_channel, body)
    message = Message(JOB_ID, None)
    message.body, message.headers = body, received.headers
    message.delivery_info["sqs_message"]["Body"] = body
    records = Records()
    consumer = Consumer(records)
    now = datetime.fromtimestamp(epoch_ms / 1000, UTC)  # received at once: no DelaySeconds
    middleware = deferral.Deferral(SETTINGS, clock=lambda: now)
    assert middleware.screen_message(consumer, message) is not None  # taken: deferred
    assert run_on_loop(consumer, message) == ["ack"]
    ((job_id, _, recorded, _),) = records.calls
    assert job_id == JOB_ID
    assert recorded == answered  # the same instant, written the same way
