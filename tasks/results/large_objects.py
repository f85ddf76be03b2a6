"""The claim check: results and arguments too large for a record or a message, in S3.

A SUCCESS result whose JSON is over MAX_RESULT_BYTES is stored under the run's own key,
`results/<job_id>/<run>.json`, and its record keeps `result_ref` {bucket, key, size, sha256}
instead of `result`; only the run whose SUCCESS write won then publishes the same bytes at
`results/<job_id>.json` (what GET /jobs/{id}/result serves, on API Gateway by key), and a
refused finisher deletes its own object: two finishers never overwrite each other's result.

Arguments that would make the SQS message too large are stored at `payloads/<task_id>.json`
as the JSON `[args, kwargs]`, and the message carries the `payload_ref` header {bucket, key,
size, sha256} with empty arguments. The bucket (tasks.ops.provision.ensure_bucket) expires
both prefixes with their records and messages.

Objects are JSON only, written with the project's S3 client (tasks.ops.clients.s3_client)
and read with one GetObject.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from kombu.utils import json as kombu_json

from tasks.ops.provision import PAYLOADS_PREFIX, RESULTS_PREFIX

JSON_TYPE = "application/json"
MISSING_CODES = ("NoSuchKey", "404", "NotFound", "NoSuchBucket")


class StoredObjectError(Exception):
    """A claim-checked object is missing, or not what its reference says."""


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    size: int
    sha256: str | None = None

    def as_header(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bucket": self.bucket, "key": self.key, "size": self.size}
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        return out

    @classmethod
    def from_header(cls, value: Any) -> ObjectRef:
        if not isinstance(value, dict):
            raise StoredObjectError("payload_ref is not an object")
        try:
            return cls(
                str(value["bucket"]), str(value["key"]), int(value["size"]), value.get("sha256")
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoredObjectError(f"payload_ref is malformed: {exc!r}") from exc


def result_key(job_id: str) -> str:
    """The published result: what GET /jobs/{id}/result reads."""
    return f"{RESULTS_PREFIX}{job_id}.json"


def run_result_key(job_id: str, run: str) -> str:
    """One finisher's own copy, which the record's `result_ref` names."""
    return f"{RESULTS_PREFIX}{job_id}/{run}.json"


def payload_key(task_id: str) -> str:
    return f"{PAYLOADS_PREFIX}{task_id}.json"


def put_json_text(s3, bucket: str, key: str, text: str) -> ObjectRef:
    data = text.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=JSON_TYPE)
    return ObjectRef(bucket, key, len(data), digest)


def get_bytes(s3, ref: ObjectRef) -> bytes:
    """The object's bytes, checked against the reference's size (and sha256 if it has one)."""
    try:
        data = s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in MISSING_CODES:
            raise StoredObjectError(
                f"s3://{ref.bucket}/{ref.key} is gone ({code}): it expired, was deleted, "
                "or was never stored"
            ) from exc
        raise
    if len(data) != ref.size:
        raise StoredObjectError(
            f"s3://{ref.bucket}/{ref.key} has {len(data)} bytes, its reference says {ref.size}"
        )
    if ref.sha256 is not None and hashlib.sha256(data).hexdigest() != ref.sha256:
        raise StoredObjectError(f"s3://{ref.bucket}/{ref.key} does not match its sha256")
    return data


def delete(s3, bucket: str, key: str) -> None:
    s3.delete_object(Bucket=bucket, Key=key)  # S3 answers 204 for a key that is not there


# --- results --------------------------------------------------------------------------
def store_result(s3, bucket: str, job_id: str, run: str, text: str) -> ObjectRef:
    return put_json_text(s3, bucket, run_result_key(job_id, run), text)


def publish_result(s3, bucket: str, job_id: str, text: str) -> None:
    """The winner's result at the key GET /jobs/{id}/result reads."""
    put_json_text(s3, bucket, result_key(job_id), text)


def result_ref_map(ref: ObjectRef) -> dict:
    """`result_ref` as a DynamoDB map: readable by API Gateway's template as it is."""
    mapped = {"bucket": {"S": ref.bucket}, "key": {"S": ref.key}, "size": {"N": str(ref.size)}}
    if ref.sha256 is not None:
        mapped["sha256"] = {"S": ref.sha256}
    return {"M": mapped}


def ref_from_item(item: dict) -> ObjectRef | None:
    ref = (item.get("result_ref") or {}).get("M")
    if not ref:
        return None
    return ObjectRef(
        ref["bucket"]["S"],
        ref["key"]["S"],
        int(ref["size"]["N"]),
        (ref.get("sha256") or {}).get("S"),
    )


def load_result(s3, ref: ObjectRef) -> Any:
    return kombu_json.loads(get_bytes(s3, ref))  # as a result in the record is read


# --- arguments (payloads) ---------------------------------------------------------------
def store_payload(s3, bucket: str, task_id: str, args: Any, kwargs: Any) -> ObjectRef:
    # kombu's JSON, as the message body would have been (dates, UUIDs, decimals...).
    text = kombu_json.dumps([list(args or ()), dict(kwargs or {})])
    return put_json_text(s3, bucket, payload_key(task_id), text)


def load_payload(s3, ref: ObjectRef) -> tuple[list, dict]:
    try:
        value = kombu_json.loads(get_bytes(s3, ref))
    except (ValueError, TypeError) as exc:
        raise StoredObjectError(f"s3://{ref.bucket}/{ref.key} is not JSON: {exc}") from exc
    if not (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], list)
        and isinstance(value[1], dict)
    ):
        raise StoredObjectError(f"s3://{ref.bucket}/{ref.key} is not [args, kwargs]")
    return value[0], value[1]
