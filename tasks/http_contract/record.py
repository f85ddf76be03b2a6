"""The job record as JSON over HTTP: what GET /jobs/{job_id} answers for a DynamoDB item.

API Gateway renders get_job.response over GetItem's answer; the shim renders the same file
with tasks.http_contract.vtl, and so does the worker for a callback's body (tasks.callbacks),
so the three cannot drift. What a job shows beyond the defaults is passed in as `exposed`,
the `task:field` words of tasks.http_contract.mapping_templates.exposed_words.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from tasks.http_contract.mapping_templates import fill_template
from tasks.http_contract.vtl import Params, render


@functools.lru_cache(maxsize=64)
def record_template(exposed: tuple[str, ...] = ()) -> str:
    """get_job.response with `@EXPOSED@` filled (the words sorted: one text per set)."""
    return fill_template("get_job.response", exposed=exposed)


def record_json(job_id: str, item: Mapping[str, Any], exposed: Iterable[str] = ()) -> str:
    """The record `item` (DynamoDB's attribute values) as GET /jobs/{job_id} shows it."""
    rendered = render(
        record_template(tuple(sorted(set(exposed)))),
        body=json.dumps({"Item": dict(item)}),
        params=Params(path={"job_id": job_id}),
        # $context.path: what result_url is built from (relative to the
        # API's base URL; API Gateway's own path starts with the stage)
        context={
            "requestId": job_id,
            "path": f"/jobs/{job_id}",
            "resourcePath": "/jobs/{job_id}",
            "httpMethod": "GET",
        },
    )
    return rendered.text
