"""What one job-record write costs: the client's CPU and dynalite's, per request and per job.

Run: python -m bench.write_cost [--jobs 150] [--rounds 5] [--worker-rounds 3] [--out F.md]
(about 5 minutes on 2 cores; it starts its own fauxqs and dynalite, as bench.servers does).

1. Capture: a real `celery -A tasks worker` runs a few no-op jobs against the emulators; a
   botocore hook (`provide-client-params`) in the worker writes every UpdateItem it sends to
   a file. The STARTED claim and the SUCCESS end of the first job are the requests measured
   below, exactly as the code builds them.
2. Replay: each variant is a list of requests per job (a fresh job id each), sent from this
   process's one thread with its own client (the worker's record configuration,
   tasks.ops.clients.RECORDS_CONFIG, or another one); the variants alternate round by
   round. Per request: client CPU (the thread's CPU clock), split at botocore's events into
   build (parameters to the serialised body), sign (request created, signed, prepared) and
   send (send, receive, parse); dynalite's CPU (its process's user+sys, /proc, 10 ms ticks:
   hence one batch per request of the job). Variants take one ingredient out at a time, so
   the difference to `ours` is its cost.
3. Workers: real workers drain a backlog of no-op jobs, ours, ours without its STARTED write
   (task_track_started off: no run lease, for this measurement only) and the floor,
   alternating: what the run lease costs the worker and dynalite per job.

`report_section(json)` renders a saved result (`--out`) as Markdown for bench.report.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.messages import encode
from bench.servers import ServerSet, process_cpu_seconds, stop_process
from bench.stack import Stack
from bench.workers import NO_LEASE_ENV

ROOT = Path(__file__).resolve().parent.parent
CAPTURE_ENV = "BENCH_WRITE_CAPTURE"  # the file the worker's hook appends requests to
NO_STARTED_ENV = NO_LEASE_ENV  # the worker skips its STARTED writes
PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")
SPLIT_EVENTS = ("before-call", "before-send", "after-call")

Request = tuple[str, dict[str, Any]]  # (operation, parameters)


# --- capture: the requests a real worker sends -----------------------------------------
def install_capture_hook(path: str) -> None:
    """In the worker (before Celery starts): every DynamoDB client the project makes
    records its UpdateItem parameters, one JSON line each, into `path` (fork-safe: O_APPEND)."""
    from tasks.ops import clients

    made = clients._cached_client

    def record(params: dict, **_: Any) -> None:
        with open(path, "a") as out:
            out.write(json.dumps(params) + "\n")

    def hooked(service: str, *args: Any):
        client = made(service, *args)
        if service == "dynamodb" and not getattr(client, "_write_cost_hook", False):
            client.meta.events.register("provide-client-params.dynamodb.UpdateItem", record)
            client._write_cost_hook = True
        return client

    clients._cached_client = hooked


def worker_command(hostname: str, concurrency: int = 1) -> list[str]:
    """`celery -A tasks worker` as bench.workers starts it, through `as_worker`'s hooks."""
    return [
        sys.executable, "-m", "bench.write_cost", "--as-worker", "-A", "tasks", "worker",
        "--loglevel=WARNING", f"--concurrency={concurrency}", "--without-heartbeat",
        "--without-gossip", "--without-mingle", f"--hostname={hostname}@bench",
    ]  # fmt: skip


def start_worker(stack: Stack, log_dir: Path, tag: str, extra: dict[str, str], concurrency: int):
    env = {**os.environ, **stack.env(tag=tag), **extra, "PYTHONPATH": str(ROOT)}
    env["WORKER_CONCURRENCY"] = str(concurrency)
    log = open(log_dir / f"worker-{tag}.log", "ab")  # noqa: SIM115 (lives with the process)
    return subprocess.Popen(
        worker_command(f"ours-{tag}", concurrency), cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def wait_done(stack: Stack, ids: list[str], alive: Callable[[], bool], timeout: float) -> None:
    """Until every job's record is SUCCESS (the last ids first: they finish last)."""
    deadline = time.monotonic() + timeout
    pending = list(reversed(ids))
    while pending:
        if time.monotonic() > deadline or not alive():
            status = stack.status("ours", pending[0])
            raise RuntimeError(f"{len(pending)} jobs unfinished: {pending[0]} is {status}")
        if stack.status("ours", pending[0]) == "SUCCESS":
            pending.pop(0)
        else:
            time.sleep(0.05)


WITH_CLAIM = "ours"
WITHOUT_CLAIM = "ours without STARTED (task_track_started off)"
FLOOR = "floor (bench.floor)"


def start_kind(stack: Stack, log_dir: Path, name: str, tag: str, processes: int):
    """(root pids, alive, stop) of a worker of `name` (WITH_CLAIM, WITHOUT_CLAIM, FLOOR)."""
    if name == FLOOR:
        from bench.workers import start

        floor = start("floor", stack.env(tag=tag), processes, log_dir, tag)
        return [p.pid for p in floor.procs], floor.alive, floor.stop
    extra = {NO_STARTED_ENV: "1"} if name == WITHOUT_CLAIM else {}
    proc = start_worker(stack, log_dir, tag, extra, processes)
    return [proc.pid], lambda: proc.poll() is None, lambda: stop_process(proc, timeout=20)


def worker_cost(
    stack: Stack, log_dir: Path, dynalite_pid: int, jobs: int, rounds: int, processes: int = 2
) -> dict[str, list[dict[str, float]]]:
    """Worker CPU per no-op job (ms, by part: bench.workers.cpu_split) and dynalite's: ours
    with the STARTED claim, ours without it (task_track_started off: no run lease), and
    the floor, the three alternating round by round (the order rotating)."""
    from bench.messages import fill
    from bench.workers import cpu_split, diff

    results: dict[str, list[dict[str, float]]] = {WITH_CLAIM: [], WITHOUT_CLAIM: [], FLOOR: []}
    kinds = list(results)
    fill_args = (stack.sqs, stack.queue_url(), "tasks.debug.add", {"x": 1, "y": 2})
    for round_no in range(rounds):
        for name in kinds[round_no % 3 :] + kinds[: round_no % 3]:
            pids, alive, stop = start_kind(stack, log_dir, name, f"cost{round_no}", processes)
            try:
                wait_done(stack, fill(*fill_args, 20, stack.queue_name), alive, 60)
                time.sleep(0.5)  # let the warm-up's deletes and visibility calls settle
                ids = fill(*fill_args, jobs, stack.queue_name)
                before, ddb0 = cpu_split(pids), process_cpu_seconds(dynalite_pid)
                # The queue's depth (fauxqs), not the records: reading them costs dynalite.
                stack.wait_drained(alive, 120, interval=0.02)
                after, ddb1 = cpu_split(pids), process_cpu_seconds(dynalite_pid)
                wait_done(stack, ids, alive, 30)  # every job recorded SUCCESS
            finally:
                stop()
                # A long poll the stopped worker left open (WaitTimeSeconds) may still take a
                # message sent now, for a dead socket; it ends within the wait.
                time.sleep(Stack.WAIT_TIME_SECONDS + 0.5)
            row = {k: 1000 * v / jobs for k, v in diff(after, before).items()}
            row["dynalite"] = 1000 * (ddb1 - ddb0) / jobs
            results[name].append(row)
    return results


def capture(stack: Stack, log_dir: Path, jobs: int = 3, timeout: float = 60.0) -> dict:
    """Run `jobs` no-op jobs through a real worker; {"STARTED": params, "SUCCESS": params}
    of the first job that wrote both."""
    out = log_dir / "captured.jsonl"
    out.unlink(missing_ok=True)
    ids = [str(uuid.uuid4()) for _ in range(jobs)]
    for job_id in ids:
        body = encode("tasks.debug.add", {"x": 1, "y": 2}, stack.queue_name, job_id)
        stack.sqs.send_message(QueueUrl=stack.queue_url(), MessageBody=body)
    proc = start_worker(stack, log_dir, "capture", {CAPTURE_ENV: str(out)}, 1)
    try:
        wait_done(stack, ids, lambda: proc.poll() is None, timeout)
    finally:
        stop_process(proc, timeout=20)
    by_job: dict[str, dict[str, dict]] = {}
    for line in out.read_text().splitlines():
        params = json.loads(line)
        status = params.get("ExpressionAttributeValues", {}).get(":status", {}).get("S")
        by_job.setdefault(params["Key"]["job_id"]["S"], {})[status] = params
    for job_id in ids:
        found = by_job.get(job_id, {})
        if "STARTED" in found and "SUCCESS" in found:
            return {"STARTED": found["STARTED"], "SUCCESS": found["SUCCESS"]}
    raise RuntimeError(f"no job wrote both STARTED and SUCCESS: {sorted(by_job)}")


# --- request surgery: one ingredient out at a time -------------------------------------
def prune(params: dict) -> dict:
    """Drop the names and values no expression uses (DynamoDB refuses unused ones)."""
    used = set(
        PLACEHOLDER.findall(
            f"{params.get('UpdateExpression', '')} {params.get('ConditionExpression', '')}"
        )
    )
    for key in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
        if key in params:
            params[key] = {k: v for k, v in params[key].items() if k in used}
            if not params[key]:
                del params[key]
    return params


def short_placeholders(params: dict) -> dict:
    """The same request with every placeholder renamed to 2-3 characters (#a, :b...)."""
    params = copy.deepcopy(params)
    renamed: dict[str, str] = {}

    def short(match: re.Match) -> str:
        token = match.group(0)
        if token not in renamed:
            renamed[token] = f"{token[0]}{len(renamed):x}"
        return renamed[token]

    for key in ("UpdateExpression", "ConditionExpression"):
        if key in params:
            params[key] = PLACEHOLDER.sub(short, params[key])
    for key in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
        if key in params:
            params[key] = {renamed[k]: v for k, v in params[key].items() if k in renamed}
    return params


def split_clauses(expression: str) -> dict[str, list[str]]:
    """{"SET": [...], "REMOVE": [...]} of an UpdateExpression built by encoding.Update."""
    parts: dict[str, list[str]] = {"SET": [], "REMOVE": []}
    for action, body in re.findall(r"(SET|REMOVE) (.*?)(?= REMOVE |$)", expression):
        depth, start = 0, 0
        for i, ch in enumerate(body + ","):
            depth += ch == "("
            depth -= ch == ")"
            if ch == "," and depth == 0:
                parts[action].append(body[start:i].strip())
                start = i + 1
    return parts


def join_clauses(parts: dict[str, list[str]]) -> str:
    text = []
    if parts["SET"]:
        text.append("SET " + ", ".join(parts["SET"]))
    if parts["REMOVE"]:
        text.append("REMOVE " + ", ".join(parts["REMOVE"]))
    return " ".join(text)


def without_attrs(params: dict, attrs: set[str]) -> dict:
    """The request without its SET and REMOVE clauses of `attrs`."""
    params = copy.deepcopy(params)
    parts = split_clauses(params["UpdateExpression"])
    parts = {
        action: [c for c in clauses if re.split(r"[ =]", c, maxsplit=1)[0][1:] not in attrs]
        for action, clauses in parts.items()
    }
    params["UpdateExpression"] = join_clauses(parts)
    return prune(params)


# What a write sets beyond its transition: the request's facts, kept in the record.
FACTS = {
    "task", "attempts", "retries", "worker", "submitted_at", "args", "kwargs", "queue",
    "parent_id", "root_id", "group_id", "created_at", "expires_at",
}  # fmt: skip
# REMOVE clauses of attributes a no-op job never has.
NEVER_THERE = {"error", "traceback", "progress", "rejected"}
LEAN = FACTS | NEVER_THERE
SEGMENTS = ("build", "sign", "send")


def variants(
    captured: dict, table: str, plain_table: str, baseline: dict | None = None
) -> dict[str, Callable[[str], list]]:
    """name -> (job id -> the requests of one job); `baseline`: another capture (an earlier
    version of the code) replayed beside this one."""
    started, success = captured["STARTED"], captured["SUCCESS"]

    def on(params: dict, job_id: str, table_name: str = table) -> dict:
        params = copy.deepcopy(params)
        params["TableName"] = table_name
        params["Key"] = {"job_id": {"S": job_id}}
        return params

    def edited(change: Callable[[dict], dict]) -> tuple[dict, dict]:
        return change(copy.deepcopy(started)), change(copy.deepcopy(success))

    def pair(a: dict, b: dict, table_name: str = table) -> Callable[[str], list]:
        return lambda job_id: [
            ("update_item", on(a, job_id, table_name)),
            ("update_item", on(b, job_id, table_name)),
        ]

    def drop(key: str) -> Callable[[dict], dict]:
        def change(params: dict) -> dict:
            params.pop(key, None)
            return prune(params)

        return change

    def worker_condition_only(params: dict) -> dict:
        from tasks.results.transitions import WORKER_CONDITION

        params["ConditionExpression"] = WORKER_CONDITION
        return prune(params)

    floor = {
        "UpdateExpression": "SET #s = :s, #t = :t, #f = :f, updated_at = :u",
        "ExpressionAttributeNames": {"#s": "status", "#t": "task", "#f": "result"},
        "ExpressionAttributeValues": {
            ":s": {"S": "SUCCESS"},
            ":t": {"S": "tasks.debug.add"},
            ":f": {"S": "3"},
            ":u": {"S": "2026-12-06T21:00:00.000Z"},
        },
    }
    before = {}
    if baseline:
        before["ours before (baseline)"] = pair(baseline["STARTED"], baseline["SUCCESS"])
    return {
        **before,
        "ours": pair(started, success),
        "ours, table without GSI": pair(started, success, plain_table),
        "no list_pk": pair(*edited(lambda p: without_attrs(p, {"list_pk"}))),
        "no ReturnValuesOnCCF": pair(*edited(drop("ReturnValuesOnConditionCheckFailure"))),
        "condition: not terminal only": pair(*edited(worker_condition_only)),
        "no condition": pair(*edited(drop("ConditionExpression"))),
        "short placeholders": pair(*edited(short_placeholders)),
        "no facts, no no-op REMOVEs": pair(*edited(lambda p: without_attrs(p, LEAN))),
        "SUCCESS only (no STARTED claim)": lambda job_id: [("update_item", on(success, job_id))],
        "floor UpdateItem": lambda job_id: [("update_item", on(floor, job_id))],
        "PutItem x2 (same items)": lambda job_id: [],  # filled in by put_items()
    }


def put_items(client, captured: dict, table: str) -> tuple[dict, dict]:
    """The items a STARTED and a SUCCESS write leave (applied once, read back)."""
    job_id = f"put-model-{uuid.uuid4()}"
    after = []
    for state in ("STARTED", "SUCCESS"):
        params = copy.deepcopy(captured[state])
        params.update(TableName=table, Key={"job_id": {"S": job_id}})
        client.update_item(**params)
        item = client.get_item(TableName=table, Key=params["Key"], ConsistentRead=True)["Item"]
        after.append(item)
    return after[0], after[1]


# --- measurement ------------------------------------------------------------------------
@dataclass
class Split:
    """The thread CPU clock at botocore's events, summed per segment."""

    marks: dict[str, float] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SEGMENTS, 0.0))

    def start(self) -> None:
        self.marks = {"start": time.thread_time()}

    def hook(self, name: str) -> Callable[..., None]:
        def mark(**_: Any) -> None:
            self.marks.setdefault(name, time.thread_time())

        return mark

    def stop(self) -> None:
        m = self.marks
        if all(k in m for k in SPLIT_EVENTS):
            self.totals["build"] += m["before-call"] - m["start"]
            self.totals["sign"] += m["before-send"] - m["before-call"]
            self.totals["send"] += m["after-call"] - m["before-send"]


def client_variants() -> dict[str, Any]:
    """Other configurations of the record client, each replaying `ours` (botocore's public
    Config options that could lighten a request; tasks.ops.clients.RECORDS_CONFIG is the
    worker's)."""
    from botocore.config import Config

    from tasks.ops.clients import RECORDS_CONFIG, RETRY_CONFIG

    return {
        "with parameter validation (RETRY_CONFIG)": RETRY_CONFIG,
        "+ account_id_endpoint_mode=disabled": RECORDS_CONFIG.merge(
            Config(account_id_endpoint_mode="disabled")
        ),
        "+ checksums when_required": RECORDS_CONFIG.merge(
            Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
        ),
    }


def client_of(variant: str) -> str:
    prefix = "ours, client "
    return variant[len(prefix) :] if variant.startswith(prefix) else ""


def make_client(endpoint: str, config=None):
    import boto3

    from tasks.ops.clients import RECORDS_CONFIG

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return session.client("dynamodb", endpoint_url=endpoint, config=config or RECORDS_CONFIG)


def run_batch(client, split: Split, requests: list[Request], dynalite_pid: int) -> dict[str, float]:
    split.totals = dict.fromkeys(split.totals, 0.0)
    ddb0, cpu0, wall0 = process_cpu_seconds(dynalite_pid), time.thread_time(), time.perf_counter()
    for operation, params in requests:
        split.start()
        getattr(client, operation)(**params)
        split.stop()
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    ddb = process_cpu_seconds(dynalite_pid) - ddb0
    count = len(requests)
    return {
        "client": 1000 * cpu / count,
        **{k: 1000 * v / count for k, v in split.totals.items()},
        "dynalite": 1000 * ddb / count,
        "wall": 1000 * wall / count,
        "requests": count,
    }


def measure(
    endpoint: str, dynalite_pid: int, captured: dict, table: str, plain_table: str,
    jobs: int, rounds: int, config=None, baseline: dict | None = None,
) -> dict[str, list[list[dict[str, float]]]]:  # fmt: skip
    others = client_variants()
    split = Split()
    clients = {}
    for name, option in {"": config, **others}.items():
        clients[name] = make_client(endpoint, option)
        for event in SPLIT_EVENTS:
            clients[name].meta.events.register(f"{event}.dynamodb", split.hook(event))
    client = clients[""]
    built = variants(captured, table, plain_table, baseline)
    for name in others:
        built[f"ours, client {name}"] = built["ours"]
    started_item, success_item = put_items(client, captured, table)

    def puts(job_id: str) -> list[Request]:
        return [
            ("put_item", {"TableName": table, "Item": {**item, "job_id": {"S": job_id}}})
            for item in (started_item, success_item)
        ]

    built["PutItem x2 (same items)"] = puts
    names = list(built)
    # Warm up: connections, botocore's caches, dynalite's JIT.
    for name in names:
        warm = [r for _ in range(20) for r in built[name](str(uuid.uuid4()))]
        run_batch(clients[client_of(name)], split, warm, dynalite_pid)
    results: dict[str, list[list[dict[str, float]]]] = {name: [] for name in names}
    for round_no in range(rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            by_job = [built[name](str(uuid.uuid4())) for _ in range(jobs)]
            # One batch per request of the job (all STARTED, then all SUCCESS...): dynalite's
            # CPU clock ticks every 10 ms, too coarse for one request.
            results[name].append(
                [
                    {**run_batch(clients[client_of(name)], split, [job[k] for job in by_job],
                                 dynalite_pid),
                     "label": label(by_job[0][k])}
                    for k in range(len(by_job[0]))
                ]
            )  # fmt: skip
    return results


def label(request: Request) -> str:
    operation, params = request
    values = {**params.get("ExpressionAttributeValues", {}), **params.get("Item", {})}
    written = {v.get("S") for v in values.values() if isinstance(v, dict)}
    status = next((s for s in ("STARTED", "SUCCESS") if s in written), "?")
    return f"{operation} {status}"


KEYS = ("client", "build", "sign", "send", "dynalite", "wall")


def summarise(results: dict[str, list[list[dict[str, float]]]]) -> list[dict[str, Any]]:
    """Rows: each request of each variant, then the variant per job (the sum, round by
    round); each figure (median, min, max) over the rounds."""
    rows = []
    for name, rounds in results.items():
        phases = len(rounds[0])
        for k in range(phases):
            row: dict[str, Any] = {"variant": name, "request": rounds[0][k]["label"]}
            for key in KEYS:
                values = [r[k][key] for r in rounds]
                row[key] = (statistics.median(values), min(values), max(values))
            rows.append(row)
        total: dict[str, Any] = {"variant": name, "request": f"per job ({phases})"}
        for key in KEYS:
            values = [sum(r[k][key] for k in range(phases)) for r in rounds]
            total[key] = (statistics.median(values), min(values), max(values))
        rows.append(total)
    return rows


def table(rows: list[dict[str, Any]], title: str = "") -> str:
    """Markdown: CPU ms per request and per job, median (min..max) over the rounds."""

    def cell(triple: tuple[float, float, float]) -> str:
        med, lo, hi = triple
        return f"{med:.3f} ({lo:.3f}..{hi:.3f})"

    lines = [title] if title else []
    lines += [
        "| variant | request | client CPU ms | build | sign | send+parse | dynalite CPU ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        bold = "**" if row["request"].startswith("per job") else ""
        lines.append(
            f"| {row['variant']} | {bold}{row['request']}{bold} | {cell(row['client'])} "
            f"| {row['build'][0]:.3f} | {row['sign'][0]:.3f} | {row['send'][0]:.3f} "
            f"| {cell(row['dynalite'])} |"
        )
    return "\n".join(lines)


def spread(values: list[float], fmt: str = ".2f") -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"


def worker_table(results: dict[str, list[dict[str, float]]], jobs: int) -> str:
    """Markdown: worker CPU per job by part for each worker, its ratio to the floor's (run by
    run), and what the STARTED claim costs (ours minus ours without it, run by run)."""
    parts = ("total", "main_thread", "main_other_threads", "children", "dynalite")
    runs = len(next(iter(results.values())))
    lines = [
        f"Worker CPU per no-op job (ms), {runs} rounds of {jobs} jobs each, the workers "
        "alternating (2 pool processes; the floor 2 processes); median (min..max):\n",
        "| worker | total | vs floor | main thread | other threads | pool children | dynalite |",
        "|---|---|---|---|---|---|---|",
    ]
    floor = results.get(FLOOR, [])
    for name, rows in results.items():
        cells = [spread([r.get(part, 0.0) for r in rows]) for part in parts]
        ratios = [r["total"] / f["total"] for r, f in zip(rows, floor, strict=False) if f["total"]]
        cells.insert(1, spread(ratios) + "x" if ratios and name != FLOOR else "-")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    if results.get(WITH_CLAIM) and results.get(WITHOUT_CLAIM):
        pairs = list(zip(results[WITH_CLAIM], results[WITHOUT_CLAIM], strict=False))
        worker = [a["total"] - b["total"] for a, b in pairs]
        emulator = [a["dynalite"] - b["dynalite"] for a, b in pairs]
        lines.append(
            f"\nThe STARTED claim (the run lease) costs {spread(worker)} ms of worker CPU and "
            f"{spread(emulator)} ms of dynalite CPU per no-op job (round by round)."
        )
    return "\n".join(lines)


def report_section(result: Path, heading: str = "## Write cost") -> str:
    """A report section from the JSON `--out` writes (for bench.report to include)."""
    data = json.loads(result.read_text())
    text = [heading, "", table(data["summary"])]
    if data.get("workers"):
        text += ["", worker_table(data["workers"], data.get("worker_jobs", 0))]
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=150, help="jobs per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--worker-jobs", type=int, default=300, help="no-op jobs per real-worker run"
    )
    parser.add_argument(
        "--worker-rounds", type=int, default=3,
        help="real-worker runs with and without the STARTED claim each (0: none)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="also write the result (JSON + Markdown)")
    parser.add_argument("--captured", type=Path, help="replay these requests (no capture run)")
    parser.add_argument(
        "--baseline", type=Path, help="also replay these captured requests (an earlier code)"
    )
    args = parser.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="write-cost-"))
    servers = ServerSet(log_dir)
    workers: dict[str, list[dict[str, float]]] = {}
    try:
        sqs, ddb = servers.fauxqs(), servers.dynalite()
        stack = Stack(sqs, ddb, log_dir)
        stack.provision()
        if args.captured:
            captured = json.loads(args.captured.read_text())
        else:
            captured = capture(stack, log_dir)
        (log_dir / "captured.json").write_text(json.dumps(captured, indent=1))
        plain = f"{stack.table}-plain"
        stack.ddb.create_table(
            TableName=plain,
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        stack.ddb.get_waiter("table_exists").wait(TableName=plain)
        results = measure(
            ddb, servers.pids["dynalite"], captured, stack.table, plain, args.jobs, args.rounds,
            baseline=json.loads(args.baseline.read_text()) if args.baseline else None,
        )  # fmt: skip
        if args.worker_rounds:
            workers = worker_cost(
                stack, log_dir, servers.pids["dynalite"], args.worker_jobs, args.worker_rounds
            )
    finally:
        servers.close()
    summary = summarise(results)
    text = table(
        summary,
        f"Write cost: {args.rounds} rounds x {args.jobs} jobs per variant, alternating; "
        "median (min..max) over rounds.\n",
    )
    if workers:
        text += "\n\n" + worker_table(workers, args.worker_jobs)
    print(text)
    print(f"logs and captured requests: {log_dir}", file=sys.stderr)
    if args.out:
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(
            json.dumps(
                {
                    "captured": captured,
                    "summary": summary,
                    "workers": workers,
                    "worker_jobs": args.worker_jobs,
                },
                indent=1,
            )
        )


def as_worker(argv: list[str]) -> None:
    if os.environ.get(CAPTURE_ENV):
        install_capture_hook(os.environ[CAPTURE_ENV])
    if os.environ.get(NO_STARTED_ENV):
        from celery.signals import worker_init

        @worker_init.connect(weak=False)
        def without_started(sender: Any = None, **_: Any) -> None:
            # Measurement only: no STARTED write, so no run lease (the pool forks later).
            sender.app.conf.task_track_started = False
            for task in sender.app.tasks.values():
                task.track_started = False

    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *argv]
    celery_main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--as-worker"]:
        as_worker(sys.argv[2:])
    else:
        main()
