"""AWS list prices used for scenario 3 (us-east-1, on-demand, as listed on 2026-11-26).

SQS standard queue: $0.40 per million requests (after the free tier; each 64 KB chunk of
a payload is a request, and our messages are < 2 KB). DynamoDB on-demand: $0.625 per
million write request units (1 WRU per 1 KB written, rounded up; an UpdateItem is billed
on the larger of the item before and after) and $0.125 per million read request units
(1 RRU per 4 KB strongly consistent read, half for an eventually consistent one).
Fargate: $0.04048 per vCPU-hour (memory, $0.004445 per GB-hour, is left out: it does not
depend on the code). API Gateway REST: $3.50 per million requests (first 333 million).
"""

from __future__ import annotations

import math

PRICES_DATE = "2026-11-26"
SQS_PER_MILLION_REQUESTS = 0.40
DDB_PER_MILLION_WRU = 0.625
DDB_PER_MILLION_RRU = 0.125
FARGATE_PER_VCPU_HOUR = 0.04048
APIGW_REST_PER_MILLION = 3.50
# Index write units per no-op job, which the emulators' request counts cannot show: ours's
# listing index (docs/job-record.md) lists a job that ends before JOBS_LIST_RUNNING_AFTER
# once, finished (a new entry under SUCCESS#0: 1 unit). bench/index_units.py computes it
# from DynamoDB's billing rule on a real job's writes; tests/test_listing_index.py pins this
# to that measure. The other kinds have no index.
INDEX_WRU_PER_JOB = {"ours": 1}


def wru(item_bytes: int) -> int:
    return max(1, math.ceil(item_bytes / 1024))


def rru(item_bytes: int, consistent: bool) -> float:
    units = max(1, math.ceil(item_bytes / 4096))
    return units if consistent else units / 2


def cost_per_million(row: dict, consistent_reads: bool) -> dict:
    """Dollars per million jobs from one measured row of scenario 1 (+2 for CPU).

    Includes the one SendMessage that submits each job and the kind's index writes
    (INDEX_WRU_PER_JOB); API Gateway is shown apart (only jobs submitted over HTTP pay it).
    """
    sqs = (row["sqs_total"] + 1) * SQS_PER_MILLION_REQUESTS
    writes = (
        row["ddb_writes"] * wru(row["item_bytes"]) + INDEX_WRU_PER_JOB.get(row.get("kind", ""), 0)
    ) * DDB_PER_MILLION_WRU
    reads = row["ddb_reads"] * rru(row["item_bytes"], consistent_reads) * DDB_PER_MILLION_RRU
    cpu = row["cpu_s_per_1000"] / 1000 * 1_000_000 / 3600 * FARGATE_PER_VCPU_HOUR
    return {
        "sqs": sqs,
        "ddb_writes": writes,
        "ddb_reads": reads,
        "fargate_cpu": cpu,
        "total": sqs + writes + reads + cpu,
        "api_gateway_if_http": APIGW_REST_PER_MILLION,
    }
