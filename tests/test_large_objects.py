"""The claim check end to end: a 5 MB result and a 3 MB argument through real processes.

moto's server, `celery -A tasks worker` (with tests.large_jobs), gunicorn serving the shim.
A result over what a job record holds is kept in S3 and read back by AsyncResult.get() and by
GET /jobs/{id}/result; arguments over what one SQS message holds travel in S3 and the
message carries a reference (`payload_ref`), checked by the worker before the job starts.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from celery import states

from tasks.ops.provision import MAX_MESSAGE_BYTES
from tasks.results.job_item import MAX_RESULT_BYTES
from tests.conftest import launch_worker, wait_until
from tests.envelopes import b64, kombu_envelope
from tests.http_shim import Shim, http, running_shim
from tests.large_jobs import big_json, digest, digest_after_a_retry

pytestmark = pytest.mark.integration

RESULT_BYTES = 5_000_000
ARGUMENT_CHARS = 3_000_000


@pytest.fixture(scope="module")
def worker(stack) -> Iterator:
    worker = launch_worker(
        stack, "largeobjects", 2, env={"JOBS_EXTRA_MODULES": "tests.jobs,tests.large_jobs"}
    )
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def shim(stack) -> Iterator[Shim]:
    with running_shim(stack.env, "large") as server:
        yield server


@pytest.fixture(scope="module")
def s3(stack):
    from tasks.ops.clients import s3_client
    from tasks.ops.settings import Settings

    return s3_client(Settings.from_env())


@pytest.fixture(scope="module")
def bucket() -> str:
    from tasks.ops.settings import Settings

    return Settings.from_env().bucket_name


@pytest.fixture
def sent_messages(monkeypatch) -> list[int]:
    """The size of every SQS message this process sends (SendMessage's MessageBody)."""
    sizes: list[int] = []
    real = BaseClient._make_api_call

    def spy(self, operation_name, api_params):
        if operation_name == "SendMessage":
            sizes.append(len(api_params["MessageBody"].encode("utf-8")))
        return real(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", spy)
    return sizes


def raw_get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, response.read()


def test_a_5_mb_result_is_kept_in_s3_and_read_back(stack, worker, shim, s3, bucket):
    expected = {"rows": [{"word": "é😀", "n": 1}] * (RESULT_BYTES // 40), "tail": "x" * 10}
    result = big_json.delay(size=RESULT_BYTES)
    assert result.get(timeout=120) == expected

    item = stack.item(result.id)
    assert "result" not in item and item["status"] == {"S": "SUCCESS"}
    ref = item["result_ref"]["M"]
    # The winning run's own copy, with its checksum; the same bytes published for HTTP.
    assert ref["bucket"] == {"S": bucket}
    assert ref["key"]["S"].startswith(f"results/{result.id}/")
    stored = s3.get_object(Bucket=bucket, Key=ref["key"]["S"])
    data = stored["Body"].read()
    assert len(data) == int(ref["size"]["N"]) > MAX_RESULT_BYTES
    assert hashlib.sha256(data).hexdigest() == ref["sha256"]["S"]
    assert stored["ContentType"] == "application/json"
    published = s3.get_object(Bucket=bucket, Key=f"results/{result.id}.json")
    assert published["Body"].read() == data

    # Over HTTP: the record points at the result, and the result route returns its JSON.
    job = shim.job(result.id)
    assert "result" not in job and job["status"] == "SUCCESS"
    assert job["result_url"] == f"/jobs/{result.id}/result"
    assert job["result_bytes"] == len(data)
    status, body = raw_get(shim.url + job["result_url"])
    assert status == 200 and body == data and json.loads(body) == expected

    missing = http("GET", f"{shim.url}/jobs/{uuid.uuid4()}/result")
    assert missing.status == 404 and missing.body == {"message": "no stored result for this job"}
    malformed = http("GET", f"{shim.url}/jobs/not-a-uuid/result")
    assert malformed.status == 400 and "UUID" in malformed.body["message"]

    # forget() deletes the record and the object.
    result.forget()
    assert stack.item(result.id) is None
    with pytest.raises(ClientError) as gone:
        s3.head_object(Bucket=bucket, Key=ref["key"]["S"])
    assert gone.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_a_3_mb_argument_travels_in_s3(stack, worker, s3, bucket, sent_messages):
    blob = secrets.token_hex(ARGUMENT_CHARS // 2)
    result = digest.delay(blob, tag="big")
    assert result.get(timeout=120) == {
        "len": ARGUMENT_CHARS,
        "tag": "big",
        "sha256": hashlib.sha256(blob.encode()).hexdigest(),
    }
    # The message carried a reference: a few KB, where 3 MB of arguments would be 5.3 MB.
    assert len(sent_messages) == 1 and sent_messages[0] < 16_000, sent_messages
    stored = s3.get_object(Bucket=bucket, Key=f"payloads/{result.id}.json")["Body"].read()
    assert json.loads(stored) == [[blob], {"tag": "big"}]
    item = stack.item(result.id)
    assert len(item["args"]["S"]) < 2_000  # argsrepr stays Celery's cut repr


def test_a_reference_is_never_inherited(stack, worker, monkeypatch):
    """Celery copies a request's custom headers into its retries: a payload_ref given by
    hand, or inherited, is dropped unless the arguments were stored for this very message."""
    from tasks.submit import claim_check, publish

    seen: list[bool] = []
    step = publish.STEPS.index(claim_check.only_this_messages_payload_ref)

    def spy(body, headers, properties):
        seen.append("payload_ref" in headers)
        claim_check.only_this_messages_payload_ref(body, headers, properties)
        seen.append("payload_ref" in headers)

    monkeypatch.setattr(publish, "STEPS", [*publish.STEPS[:step], spy, *publish.STEPS[step + 1 :]])
    forged = {"bucket": "b", "key": "payloads/x.json", "size": 1, "sha256": "0" * 64}
    result = digest.apply_async(args=["small"], headers={"payload_ref": forged})
    assert seen == [True, False]  # it was there, and was dropped before kombu sent it
    assert result.get(timeout=60)["len"] == len("small")


def test_a_retry_of_a_job_with_large_arguments_gets_them_again(stack, worker):
    """The retry is sent by the worker with the request's arguments: stored again, and its
    message refers to them, never to a reference it inherited."""
    blob = secrets.token_hex(700_000)  # 1.4 MB
    result = digest_after_a_retry.delay(blob)
    assert result.get(timeout=120) == {
        "len": len(blob),
        "retries": 1,
        "sha256": hashlib.sha256(blob.encode()).hexdigest(),
    }


def test_the_size_estimate_is_what_kombu_sends(stack, worker, monkeypatch, sent_messages):
    """Measured, not guessed: the estimate covers the message kombu's transport sends."""
    from tasks.submit import claim_check

    estimates: list[int] = []
    real = claim_check.sqs_message_bytes

    def measure(headers, properties, body):
        estimates.append(real(headers, properties, body))
        return estimates[-1]

    monkeypatch.setattr(claim_check, "sqs_message_bytes", measure)
    blob = "é" * 30_000 + secrets.token_hex(50_000)  # escapes and base64 both count
    result = digest.delay(blob)
    assert result.get(timeout=60)["len"] == len(blob)
    assert len(estimates) == 1 and len(sent_messages) == 1
    actual = sent_messages[0]
    # Within a few hundred bytes (the routing key and the headers before_task_publish adds
    # after the estimate), well inside the slack it keeps.
    assert abs(estimates[0] - actual) < 400, (estimates, actual)
    assert actual <= estimates[0] + claim_check.PUBLISH_SLACK_BYTES
    assert actual < MAX_MESSAGE_BYTES


def test_a_missing_or_corrupt_payload_fails_the_job_and_the_worker_serves_on(
    stack, worker, s3, bucket
):
    missing_id, corrupt_id = str(uuid.uuid4()), str(uuid.uuid4())
    s3.put_object(Bucket=bucket, Key=f"payloads/{corrupt_id}.json", Body=b'[["tampered"], {}]')
    good = b'[["original"], {}]'
    refs = {
        missing_id: {
            "bucket": bucket,
            "key": f"payloads/{missing_id}.json",
            "size": 10,
            "sha256": "0" * 64,
        },
        corrupt_id: {
            "bucket": bucket,
            "key": f"payloads/{corrupt_id}.json",
            "size": len(good),
            "sha256": hashlib.sha256(good).hexdigest(),
        },
    }
    for job_id, ref in refs.items():  # sent as raw messages: our publisher never sends these
        message = kombu_envelope(
            job_id, task=digest.name, args=[], kwargs={}, queue=stack.queue_url.rsplit("/", 1)[-1]
        )
        message["headers"]["payload_ref"] = ref
        stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=b64(json.dumps(message)))

    def finished() -> bool:
        return all(stack.status(job_id) == states.FAILURE for job_id in refs)

    wait_until(finished, 60, message="both jobs FAILURE on their last receive")
    for job_id, words in ((missing_id, "is gone"), (corrupt_id, "sha256")):
        error = stack.item(job_id)["error"]["M"]
        assert error["type"] == {"S": "PoisonMessage"}
        assert "arguments cannot be read" in error["message"]["S"]
        assert words in error["message"]["S"], error
    assert worker.alive()
    assert digest.delay("still serving").get(timeout=60)["len"] == len("still serving")
