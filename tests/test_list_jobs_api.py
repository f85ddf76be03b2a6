"""GET /jobs (issue 12.1): the Query mapping templates, in the shim's engine and in Apache
Velocity 1.7, and the route through the shim on the moto server.

The request template and the response template check the parameters alike (a malformed
request queries the empty partition "-" and answers 400); a forged cursor can at most move
within the listing of the request's own status, never to another partition."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.http_contract.mapping_templates import fill_template, load_template
from tests import apigw

# Most tests here render the templates as deployed with JOBS_LIST_SHARDS=4 (the deploy option
# for high write rates), where a page is one shard and `next` walks them; the default (one
# shard a status: every page globally ordered) is tested apart (ONE_SHARD).
REQUEST = fill_template(
    "list_jobs.request", table_name="jobs-t", list_index="by_status", shards="0123"
)
RESPONSE = fill_template("list_jobs.response", shards="0123")
ONE_SHARD = (
    fill_template("list_jobs.request", table_name="jobs-t", list_index="by_status", shards="0"),
    fill_template("list_jobs.response", shards="0"),
)
ERROR = load_template("list_jobs.error")
UUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
AT = "2026-12-01T10:00:03.123Z"


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def request(**query: str) -> dict:
    return json.loads(apigw.shim_engine(apigw.Case(REQUEST, query=query)).text)


def response(body: dict | str, **query: str) -> apigw.Rendered:
    text = body if isinstance(body, str) else json.dumps(body)
    return apigw.shim_engine(apigw.Case(RESPONSE, body=text, query=query))


def item(job_id: str, status: str = "FAILURE", **extra: str) -> dict:
    out = {
        "job_id": {"S": job_id},
        "status": {"S": status},
        "list_pk": {"S": f"{status}#0"},
        "created_at": {"S": AT},
    }
    out.update({k: {"S": v} for k, v in extra.items()})
    return out


BAD_QUERY: list[dict[str, str]] = [
    {},
    {"status": "PENDING"},
    {"status": "failure"},
    {"status": "FAILURE#1"},
    {"status": "FAILURE", "limit": "0"},
    {"status": "FAILURE", "limit": "101"},
    {"status": "FAILURE", "limit": "5x"},
    {"status": "FAILURE", "limit": "-1"},
    {"status": "FAILURE", "task": "a b"},
    {"status": "FAILURE", "task": 'x"}'},
    {"status": "FAILURE", "since": "yesterday"},
    {"status": "FAILURE", "since": "2026-12-01T00:00:00"},
    {"status": "FAILURE", "cursor": "!!!!!!!!"},
    {"status": "FAILURE", "cursor": cursor("v1|4||")},
    {"status": "FAILURE", "cursor": cursor("v2|0||")},
    {"status": "FAILURE", "cursor": cursor(f"v1|0|{AT}|{UUID[:-1]}!")},
    {"status": "FAILURE", "cursor": cursor(f"v1|0|{AT}|{UUID}") + "A"},
]
GOOD_QUERY: list[dict[str, str]] = [
    {"status": "FAILURE"},
    {"status": "SUCCESS", "limit": "100"},
    {"status": "PROGRESS", "task": "tasks.text.analyze", "since": "2026-12-01"},
    {"status": "REVOKED", "since": "2026-12-01T00:00:00.5Z", "limit": "1"},
    {"status": "STARTED", "cursor": cursor("v1|2||")},
    {"status": "RETRY", "cursor": cursor(f"v1|3|{AT}|{UUID}"), "task": "t.x"},
]


def test_the_request_is_one_query_of_one_shard_newest_first():
    sent = request(status="FAILURE")
    assert sent == {
        "TableName": "jobs-t",
        "IndexName": "by_status",
        "ScanIndexForward": False,
        "Limit": 50,
        "KeyConditionExpression": "list_pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "FAILURE#0"}},
    }
    sent = request(
        status="SUCCESS",
        task="tasks.x",
        since="2026-12-01T00:00:00Z",
        limit="7",
        cursor=cursor(f"v1|2|{AT}|{UUID}"),
    )
    assert sent["KeyConditionExpression"] == "list_pk = :pk AND created_at >= :since"
    assert sent["FilterExpression"] == "#task = :task"
    assert sent["ExpressionAttributeNames"] == {"#task": "task"}
    assert sent["ExpressionAttributeValues"] == {
        ":pk": {"S": "SUCCESS#2"},
        ":since": {"S": "2026-12-01T00:00:00"},
        ":task": {"S": "tasks.x"},
    }
    assert sent["Limit"] == 7
    assert sent["ExclusiveStartKey"] == {
        "list_pk": {"S": "SUCCESS#2"},
        "created_at": {"S": AT},
        "job_id": {"S": UUID},
    }
    assert request(status="SUCCESS", cursor=cursor("v1|3||"))["ExpressionAttributeValues"] == {
        ":pk": {"S": "SUCCESS#3"}
    }


@pytest.mark.parametrize("query", BAD_QUERY, ids=range(len(BAD_QUERY)))
def test_a_malformed_request_queries_nothing_and_answers_400(query):
    sent = request(**query)
    assert sent["ExpressionAttributeValues"] == {":pk": {"S": "-"}} and sent["Limit"] == 1
    out = response({"Items": [], "Count": 0}, **query)
    assert out.status == 400
    message = json.loads(out.text)["message"]
    if "status" not in query or query["status"] != "FAILURE":
        assert "STARTED, PROGRESS, RETRY, SUCCESS, FAILURE or REVOKED" in message
    elif "cursor" in query:
        assert message.startswith("Invalid cursor")


def test_a_page_lists_the_items_and_the_next_position():
    older = str(uuid.uuid4())
    body = {
        "Items": [
            item(UUID, task="tasks.debug.fail", updated_at=AT, finished_at=AT, submitted_at=AT),
            item(older),
        ],
        "LastEvaluatedKey": {
            "job_id": {"S": older},
            "list_pk": {"S": "FAILURE#1"},
            "created_at": {"S": AT},
        },
    }
    out = response(body, status="FAILURE", cursor=cursor("v1|1||"))
    assert out.status is None
    page = json.loads(out.text)
    assert page["jobs"][0] == {
        "job_id": UUID,
        "status": "FAILURE",
        "task": "tasks.debug.fail",
        "created_at": AT,
        "updated_at": AT,
        "submitted_at": AT,
        "finished_at": AT,
    }
    assert page["jobs"][1] == {"job_id": older, "status": "FAILURE", "created_at": AT}
    assert base64.urlsafe_b64decode(page["next"] + "==").decode() == f"v1|1|{AT}|{older}"
    # The end of a shard: the next shard's start; after shard 3: null.
    for shard, following in (("0", "v1|1||"), ("1", "v1|2||"), ("2", "v1|3||")):
        page = json.loads(
            response({"Items": []}, status="FAILURE", cursor=cursor(f"v1|{shard}||")).text
        )
        assert page == {"jobs": [], "next": cursor(following)}
    assert (
        json.loads(
            response({"Items": [item(UUID)]}, status="FAILURE", cursor=cursor("v1|3||")).text
        )["next"]
        is None
    )
    assert json.loads(response({"Items": []}, status="FAILURE").text)["next"] == cursor("v1|1||")


def test_with_one_shard_a_status_is_one_partition_and_next_stays_in_it():
    """The default (JOBS_LIST_SHARDS=1): every request queries "<status>#0", `next` is the
    position after the page in it, and null at its end (no empty pages of other shards)."""
    one_request, one_response = ONE_SHARD

    def sent(**query: str) -> dict:
        return json.loads(apigw.shim_engine(apigw.Case(one_request, query=query)).text)

    def page(body: dict, **query: str) -> apigw.Rendered:
        return apigw.shim_engine(apigw.Case(one_response, body=json.dumps(body), query=query))

    assert sent(status="SUCCESS")["ExpressionAttributeValues"] == {":pk": {"S": "SUCCESS#0"}}
    after = sent(status="SUCCESS", cursor=cursor(f"v1|0|{AT}|{UUID}"))
    assert after["ExclusiveStartKey"]["list_pk"] == {"S": "SUCCESS#0"}
    for other in ("v1|1||", f"v1|3|{AT}|{UUID}"):  # another shard's cursor: not this listing
        assert sent(status="SUCCESS", cursor=cursor(other))["ExpressionAttributeValues"] == {
            ":pk": {"S": "-"}
        }
        assert page({"Items": []}, status="SUCCESS", cursor=cursor(other)).status == 400
    last = {"job_id": {"S": UUID}, "list_pk": {"S": "SUCCESS#0"}, "created_at": {"S": AT}}
    more = json.loads(
        page({"Items": [item(UUID)], "LastEvaluatedKey": last}, status="SUCCESS").text
    )
    assert base64.urlsafe_b64decode(more["next"] + "==").decode() == f"v1|0|{AT}|{UUID}"
    assert json.loads(page({"Items": [item(UUID)]}, status="SUCCESS").text)["next"] is None


def test_dynamodb_errors_map_to_429_400_and_502():
    ddb = "com.amazonaws.dynamodb.v20120810#"
    throttled = json.dumps({"__type": ddb + "ThrottlingException", "message": "slow"})
    invalid = json.dumps(
        {
            "__type": ddb + "ValidationException",
            "message": "The provided starting key is outside query boundaries "
            "based on provided conditions",
        }
    )
    out = apigw.shim_engine(apigw.Case(ERROR, body=throttled, query={"status": "FAILURE"}))
    assert (out.status, out.headers) == (429, {"Retry-After": "1"})
    out = apigw.shim_engine(
        apigw.Case(
            ERROR, body=invalid, query={"status": "FAILURE", "cursor": cursor(f"v1|0|{AT}|{UUID}")}
        )
    )
    assert out.status == 400 and "cursor" in json.loads(out.text)["message"]
    out = apigw.shim_engine(apigw.Case(ERROR, body=invalid, query={"status": "FAILURE"}))
    assert out.status is None  # the response's own 502


# --- forged cursors: always 400, or a Query of the same listing -------------------------
VALID = cursor(f"v1|2|{AT}|{UUID}")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=!|% "


@st.composite
def mutated_cursors(draw) -> str:
    text = draw(st.sampled_from([VALID, cursor("v1|0||"), ""]))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["replace", "insert", "delete", "decoded"]))
        char = draw(st.sampled_from(ALPHABET))
        if kind == "replace" and text:
            where = min(where, len(text) - 1)
            text = text[:where] + char + text[where + 1 :]
        elif kind == "insert":
            text = text[:where] + char + text[where:]
        elif kind == "delete" and text:
            text = text[:where] + text[where + 1 :]
        else:  # edit the decoded text and encode it again, as a forger would
            plain = draw(
                st.sampled_from(
                    [
                        f"v1|{draw(st.integers(0, 9))}|{AT}|{UUID}",
                        f"v1|1|{AT}|{UUID}|x",
                        f"v1|1|{AT[:-1]}|{UUID}",
                        "v1|3||",
                        f"v1|0|{AT}|" + "f" * 36,
                        "v1|0|" + draw(st.text(max_size=60)) + f"|{UUID}",
                    ]
                )
            )
            text = (
                base64.urlsafe_b64encode(plain.encode("utf-8", "surrogatepass"))
                .decode()
                .rstrip("=")
            )
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forged=mutated_cursors(), status=st.sampled_from(["FAILURE", "SUCCESS"]))
def test_a_forged_cursor_is_400_or_a_query_of_the_same_listing(forged, status):
    query = {"status": status, "cursor": forged}
    sent = request(**query)
    pk = sent["ExpressionAttributeValues"][":pk"]["S"]
    out = response({"Items": []}, **query)
    if pk == "-":
        assert out.status == 400 and "ExclusiveStartKey" not in sent
    else:
        assert pk in {f"{status}#{shard}" for shard in range(4)}
        start = sent.get("ExclusiveStartKey")
        assert start is None or start["list_pk"]["S"] == pk
        assert out.status is None


def test_velocity_17_renders_the_same(tmp_path_factory):
    if not apigw.velocity_available():
        pytest.skip("Apache Velocity 1.7 not installed")
    older = str(uuid.uuid4())
    page = json.dumps(
        {
            "Items": [item(UUID, task="t.x", updated_at=AT), item(older)],
            "LastEvaluatedKey": {
                "job_id": {"S": older},
                "list_pk": {"S": "FAILURE#2"},
                "created_at": {"S": AT},
            },
        }
    )
    cases = [
        apigw.Case(request_template, query=q)
        for request_template in (REQUEST, ONE_SHARD[0])
        for q in GOOD_QUERY + BAD_QUERY
    ]
    cases += [
        apigw.Case(response_template, body=body, query=q)
        for response_template in (RESPONSE, ONE_SHARD[1])
        for q in GOOD_QUERY + BAD_QUERY
        for body in (page, json.dumps({"Items": []}))
    ]
    ddb = "com.amazonaws.dynamodb.v20120810#"
    cases += [
        apigw.Case(ERROR, body=json.dumps({"__type": ddb + kind}), query=q)
        for kind in ("ThrottlingException", "ValidationException", "ResourceNotFoundException")
        for q in ({"status": "FAILURE"}, {"status": "FAILURE", "cursor": VALID})
    ]
    velocity = apigw.Velocity(tmp_path_factory.mktemp("velocity"))
    java = velocity.render_many(cases)
    for case, theirs in zip(cases, java, strict=True):
        assert apigw.shim_engine(case) == theirs, case.query


# --- through the shim, DynamoDB scripted (moto never throttles, nor refuses a start key) --
LIST_FAULTS = [
    ("ThrottlingException", 400, {}, 429),
    ("ProvisionedThroughputExceededException", 400, {}, 429),
    ("InternalServerError", 500, {}, 503),
    ("ValidationException", 400, {"cursor": VALID}, 400),  # a start key outside `since`
    ("ValidationException", 400, {}, 502),
    ("ResourceNotFoundException", 400, {}, 502),
]


@pytest.mark.parametrize(
    ("code", "status", "extra", "expected"),
    LIST_FAULTS,
    ids=[f"{c}-{e}" for c, _, _, e in LIST_FAULTS],
)
def test_the_shim_maps_dynamodb_faults_as_the_deployed_api(code, status, extra, expected):
    import dataclasses
    import urllib.parse

    from api_shim.app import create_app
    from tasks.ops.settings import Settings
    from tests.test_api_throttling import ScriptedAws

    aws = ScriptedAws()
    try:
        settings = dataclasses.replace(
            Settings.from_env(), sqs_endpoint=aws.url, dynamodb_endpoint=aws.url, api_keys=()
        )
        client = create_app(settings).test_client()
        aws.answer(
            "dynamodb",
            status,
            json.dumps(
                {"__type": "com.amazonaws.dynamodb.v20120810#" + code, "message": "injected"}
            ),
        )
        query = urllib.parse.urlencode({"status": "FAILURE", "since": "2026-12-01", **extra})
        response = client.get(f"/jobs?{query}")
        assert response.status_code == expected, response.get_data(as_text=True)
        assert (response.headers.get("Retry-After") == "1") == (expected in (429, 503))
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert [target for _, target in aws.seen] == ["DynamoDB_20120810.Query"]
    finally:
        aws.close()


# --- an independent DynamoDB (dynalite) refuses a start key outside the query, as AWS does --
@pytest.mark.integration
@pytest.mark.skipif(__import__("shutil").which("node") is None, reason="dynalite needs Node.js")
def test_a_cursor_outside_since_is_400_on_a_dynamodb_that_checks_it(tmp_path):
    """moto answers such a Query; DynamoDB (and dynalite) refuse it with ValidationException
    ("The provided starting key does not match the range key predicate"): 400, not 502."""
    import dataclasses
    import urllib.parse

    import boto3

    from api_shim.app import create_app
    from tasks.ops.provision import ensure_table
    from tasks.ops.settings import Settings
    from tasks.results.listing import list_jobs
    from tasks.results.records import JobRecords
    from tests.fast_dynamodb import fast_dynamodb

    with fast_dynamodb(tmp_path) as endpoint:
        ddb = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        ensure_table(ddb, "jobs")
        records = JobRecords(lambda: ddb, "jobs", 600)
        ids = [f"3fa85f64-5717-4562-b3fc-2c963f66afa{i}" for i in range(8)]
        for job_id in ids:
            records.transition(job_id, "FAILURE", error={"type": "E", "message": "m"})
        settings = dataclasses.replace(
            Settings.from_env(), dynamodb_endpoint=endpoint, table_name="jobs", api_keys=()
        )
        client = create_app(settings).test_client()

        def get(**query: str):
            return client.get("/jobs?" + urllib.parse.urlencode(query))

        first = get(status="FAILURE", limit="1")
        assert first.status_code == 200 and len(first.get_json()["jobs"]) == 1
        position = first.get_json()["next"]  # within shard 0: after its newest job
        assert get(status="FAILURE", limit="1", cursor=position).status_code == 200
        late = get(status="FAILURE", cursor=position, since="2999-01-01")
        assert late.status_code == 400 and "cursor" in late.get_json()["message"]
        page = list_jobs("FAILURE", limit=1, client=ddb, table="jobs")
        with pytest.raises(ValueError, match="cursor"):
            list_jobs(
                "FAILURE", limit=1, since="2999-01-01", cursor=page.next, client=ddb, table="jobs"
            )
