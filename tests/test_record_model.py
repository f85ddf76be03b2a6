"""A model of one job's life, driving the real record code through interleavings and faults.

Hypothesis' RuleBasedStateMachine plays SQS, workers and operators against the real
tasks.results code on moto in process: messages (redelivered copies, duplicates by id,
retries with countdowns), runs (start, side effect under `once`, progress, finish with a
small or a large result, retry, crash, wedge), time passing (healthy runs renew their lease
as the heartbeat does), revoke, redrive from the DLQ (tasks.ops.dlq.redrive), forget, and
DynamoDB's documented fault: a write that was applied although the caller saw an error, so
that botocore sends it again (a `needs-retry` hook asks for the retry after the first
attempt went through). After every step it checks the invariants of tasks.results.transitions:

* at most one live run per job id, outside the documented wedge;
* a terminal record never changes, except by forget, and by redrive for FAILURE only;
* a revoked job never starts;
* the record's `retries` never goes down;
* a `once` effect is never skipped: a SUCCESS job has had its effect, and has had it
  twice only where a run died between the effect and its mark, or a wedged run overlapped;
* a large result stored for the job is the result of the run whose record won, both where
  Python reads it (the record's reference) and where HTTP reads it (results/<id>.json);
* the listing partition names the record's current status, and a STARTED record is listed
  only once its run's lease renewal listed it (past JOBS_LIST_RUNNING_AFTER);
* a job deferred to its eta (SCHEDULED: a message with an eta over 15 minutes ahead, the
  worker's deferral, the one-time schedule firing at the eta) never runs before its eta, a
  revoked scheduled job never runs when its schedule fires anyway, and SCHEDULED is entered
  and left only along the table's rows.

What it does not model: clock skew between workers (one clock here), SQS's own visibility
bookkeeping (a message is deliverable again exactly when its run crashed or wedged), the
message gate, and several jobs sharing one `once` key (tests/test_records.py covers that).

The seed is fixed (derandomize) and the budget small for `make test`; TEST_MODEL_EXAMPLES
runs it longer (`make test-long`).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pkgutil
import time
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from celery import states
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tasks.jobkit.once import once
from tasks.results import large_objects
from tasks.results.keys import list_pk
from tasks.results.transitions import NONE, SCHEDULED, TRANSITIONS, allowed

EXAMPLES = int(os.environ.get("TEST_MODEL_EXAMPLES") or 150)
LEASE = 30  # the queue's visibility timeout, and so the run lease
EFFECT_LEASE = 300  # once()'s default: longer than a redelivery takes
SQS_MAX_DELAY = 900  # an eta further ahead is deferred to a one-time schedule
# The states a SCHEDULED record may move to: the targets of the rows that leave it.
FROM_SCHEDULED = {
    target
    for t in TRANSITIONS
    if allowed(t.name, SCHEDULED)
    for target in t.target.replace(" or ", ", ").split(", ")
} | {SCHEDULED}
WRITES = ("UpdateItem", "PutItem", "DeleteItem")
# once() blocks of runs killed inside them: kept so that no generator cleanup (which a
# SIGKILL never runs) releases their claims.
KILLED: list = []


class Clock:
    """The records' and the backend's time: advanced by the model (and by the backend's own
    waits), never by the machine's clock."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def clocked_modules() -> list:
    """Every module of the record package that reads the clock (`import time`): leases,
    chord claims, expiry and the backend's waits all take the model's time."""
    import tasks.results

    modules = [
        importlib.import_module(f"tasks.results.{info.name}")
        for info in pkgutil.iter_modules(tasks.results.__path__)
    ]
    clocked = [module for module in modules if getattr(module, "time", None) is time]
    assert "tasks.results.leases" in {module.__name__ for module in clocked}
    return clocked


class AppliedButFailed:
    """DynamoDB may apply a write and still answer 500 or time out; botocore then sends it
    again. Armed, this asks botocore for one more attempt after the next write went
    through, exactly as it does after such an error."""

    def __init__(self) -> None:
        self.armed = False
        self.skip = 0  # writes to let through first
        self.fired = 0

    def arm(self, skip: int) -> None:
        self.armed, self.skip = True, skip

    def __call__(self, attempts: int, operation=None, **_) -> int | None:
        name = getattr(operation, "name", "")
        if not (self.armed and attempts == 1 and name in WRITES):
            return None
        if self.skip:
            self.skip -= 1
            return None
        self.armed = False
        self.fired += 1
        return 0  # retry at once


class RetryRequested(Exception):
    """What the model's task.retry() returns: the job asked to run again later."""


@dataclass
class Run:
    token: str
    message: str
    retries: int
    alive: bool = True
    wedged: bool = False
    effect_done: bool = False  # this run's once() block is behind it (done or skipped)
    claimed: bool = False  # holds the effect's claim, effect not done yet
    started: float = 0.0  # the model clock's time of its STARTED write


@dataclass
class Message:
    id: str
    retries: int = 0
    retry_of: str | None = None
    receives: int = 0
    deliverable: bool = True
    eta: float | None = None  # the model clock's time before which it may not run


@dataclass
class Snapshot:
    status: str
    fields: dict = field(default_factory=dict)


class JobModel(RuleBasedStateMachine):
    env: SimpleNamespace  # set by the test: backend, clock, fault, sqs, queue urls

    @initialize(copies=st.integers(1, 3), deferred=st.booleans())
    def new_job(self, copies: int, deferred: bool = False) -> None:
        """A job submitted `copies` times under one id (a POST retried with its
        Idempotency-Key, apply_async(task_id=...) twice); `deferred`: with an eta two hours
        ahead, so that its worker defers it (SCHEDULED) before anything else happens."""
        self.job = str(uuid.uuid4())
        self.key = f"effect:{self.job}"
        eta = self.env.clock.now + 7200 if deferred else None
        self.messages: list[Message] = [Message(str(uuid.uuid4()), eta=eta) for _ in range(copies)]
        self.runs: dict[str, Run] = {}
        self.effects = 0
        self.effect_crashes = 0  # runs that died (or wedged) after the effect, before its mark
        self.revoked = False
        self.terminal: Snapshot | None = None
        self.max_retries_seen = 0
        self.winner: str | None = None  # the run whose SUCCESS write won
        self.listed_run: str | None = None  # the run whose renewal listed the job (STARTED)
        self.results: dict[str, object] = {}
        # A one-time schedule: (eta, name, the deferred message's retries and retry_of).
        self.schedule: tuple[float, str, int, str | None] | None = None
        self.last_status: str = NONE
        self.env.fault.armed = False

    # --- helpers ------------------------------------------------------------------------
    @staticmethod
    def pick(data, candidates: list):
        """One of `candidates`: drawn, or named by its index where a counterexample is
        replayed (tests/test_record_counterexamples.py)."""
        if isinstance(data, int):
            return candidates[data]
        return data.draw(st.sampled_from(candidates))

    @property
    def backend(self):
        return self.env.backend

    def item(self) -> dict:
        return (
            self.backend.client.get_item(
                TableName=self.backend.table, Key={"job_id": {"S": self.job}}, ConsistentRead=True
            ).get("Item")
            or {}
        )

    def request(self, run: Run) -> SimpleNamespace:
        return SimpleNamespace(
            id=self.job,
            task="tests.model.job",
            delivery_count=1,
            retries=run.retries,
            hostname=f"w@{run.token}",
            run_token=run.token,
            called_directly=False,
            retry_of=next((m.retry_of for m in self.messages if m.id == run.message), None),
            delivery_info={"routing_key": "jobs"},
            argsrepr="()",
            kwargsrepr="{}",
        )

    def live(self) -> list[Run]:
        return [r for r in self.runs.values() if r.alive]

    def end(self, run: Run) -> None:
        run.alive = False
        self.messages = [m for m in self.messages if m.id != run.message]

    # --- SQS ------------------------------------------------------------------------------
    @rule(data=st.data())
    def deliver(self, data) -> None:
        """SQS delivers a message: its run's STARTED write takes the lease, or it is a
        duplicate (acknowledged, not run)."""
        ready = [m for m in self.messages if m.deliverable]
        if ready:
            self.deliver_message(self.pick(data, ready))

    def deliver_message(self, message: Message) -> None:
        now = self.env.clock.now
        if message.eta is not None and message.eta > now + SQS_MAX_DELAY:
            self.defer(message)
            return
        message.receives += 1
        message.deliverable = False
        run = Run(f"{message.id}:{message.receives}", message.id, message.retries)
        refusal: dict = {}
        self.backend.store_result(self.job, None, states.STARTED, request=self.request(run))
        self.backend.note_refusal(SimpleNamespace(run_token=run.token), refusal)
        item = self.item()
        started = (
            item.get("run_token", {}).get("S") == run.token
            and item.get("status", {}).get("S") == states.STARTED
        )
        assert not (started and self.revoked), "a revoked job started"
        assert not (started and message.eta is not None and now < message.eta), (
            "a job ran before its eta"
        )
        if started:
            run.started = now
            self.runs[run.token] = run
            self.listed_run = None  # the STARTED write took the job out of the listing index
        else:
            self.messages = [m for m in self.messages if m.id != message.id]

    def defer(self, message: Message) -> None:
        """The worker's deferral (item 2 of issue 20): SCHEDULED with the eta and the
        schedule's name, then the message is acknowledged; the schedule fires at the eta."""
        from datetime import UTC, datetime

        before = self.item().get("status", {}).get("S") or NONE
        eta = datetime.fromtimestamp(message.eta, UTC).isoformat()
        name = f"job-{self.job}-{message.retries}"
        recorded = int(self.item().get("retries", {}).get("N", 0))
        wrote = self.backend.records.mark_scheduled(
            self.job, task="tests.model.job", eta=eta, schedule=name, retries=message.retries
        )
        # Never over a run or a finished job, and never a stale attempt: retries never go down.
        expected = allowed("schedule", before) and recorded <= message.retries
        assert wrote == expected, f"SCHEDULED over {before} (retries {recorded}): {wrote}"
        if wrote:
            self.schedule = (message.eta, name, message.retries, message.retry_of)
        self.messages = [m for m in self.messages if m.id != message.id]

    @rule(ahead=st.sampled_from([SQS_MAX_DELAY + 1, 7200, 10 * 86400]))
    def send_with_eta(self, ahead: int) -> None:
        """apply_async(eta=...) or a POST with an Eta further ahead than SQS can delay."""
        self.messages.append(Message(str(uuid.uuid4()), eta=self.env.clock.now + ahead))

    @precondition(
        lambda self: (
            getattr(self, "schedule", None) is not None
            and not any(r.alive for r in self.runs.values())
        )
    )
    @rule()
    def schedule_fires(self) -> None:
        """Time reaches the eta (no run alive whose lease would need renewing meanwhile);
        EventBridge Scheduler sends the job's message, due now. A revoke before it does
        not stop it here (it was already firing): the worker must drop it."""
        eta, _, retries, retry_of = self.schedule
        self.env.clock.now = max(self.env.clock.now, eta)
        self.schedule = None
        self.messages.append(Message(str(uuid.uuid4()), retries, retry_of, eta=eta))

    @rule()
    def duplicate(self) -> None:
        """Another message with the same job id: a retried POST with the same
        Idempotency-Key, apply_async(task_id=...) twice."""
        self.messages.append(Message(str(uuid.uuid4())))

    # --- a run ----------------------------------------------------------------------------
    @precondition(lambda self: any(r.alive for r in self.runs.values()))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["large", "small", "large", "failure"]),
        crash=st.sampled_from(["no", "no", "no", "before effect", "after effect"]),
    )
    def work(self, data, outcome: str, crash: str) -> None:
        """The job's body: one side effect under once() (the process may die inside it),
        then its outcome. A run that had its effect already goes straight to the outcome."""
        run = self.pick(data, self.live())
        if not run.effect_done and not self.side_effect(run, crash):
            return
        request = self.request(run)
        if outcome == "failure":
            self.backend.store_result(
                self.job, RuntimeError("boom"), states.FAILURE, request=request
            )
        else:
            value = {"run": run.token, "pad": "x" * (200 if outcome == "large" else 1)}
            self.results[run.token] = value
            self.backend.store_result(self.job, value, states.SUCCESS, request=request)
            item = self.item()
            if item.get("status", {}).get("S") == states.SUCCESS and self.winner is None:
                self.winner = run.token
        self.end(run)

    def side_effect(self, run: Run, crash: str) -> bool:
        """once(): False if the run went no further (killed inside, or retried)."""
        task = SimpleNamespace(
            app=SimpleNamespace(backend=self.backend),
            request=self.request(run),
            retry=self.task_retry,
        )
        block = once(task, self.key, lease_seconds=EFFECT_LEASE)
        try:
            mine = block.__enter__()
        except RetryRequested:
            self.retry_run(run, countdown=True)
            return False
        if mine and crash == "before effect":
            KILLED.append(block)  # SIGKILL: the block never exits, its claim stays
            self.crash_run(run)
            return False
        if mine:
            self.effects += 1
        if mine and crash == "after effect":
            KILLED.append(block)
            self.effect_crashes += 1
            self.crash_run(run)
            return False
        block.__exit__(None, None, None)
        run.effect_done = True
        return True

    def renew(self) -> None:
        """The heartbeat's renewals; a run past JOBS_LIST_RUNNING_AFTER is listed by it."""
        records = self.backend.records
        for run in self.live():
            if run.wedged:
                continue
            due = self.env.clock.now - run.started >= records.index_keys.running_after
            if not records.renew_run_lease(self.job, run.token, list_running=due):
                status = self.item().get("status", {}).get("S")
                assert status in (states.SUCCESS, states.FAILURE, states.REVOKED), (
                    f"a healthy run lost its lease to another while it ran ({status})"
                )
                self.end(run)
            elif due:
                self.listed_run = run.token
                assert "list_pk" in self.item(), "a job running past the threshold is unlisted"

    def task_retry(self, exc=None, countdown=None, max_retries=None, throw=True):
        return RetryRequested(str(exc))

    @precondition(lambda self: any(r.alive for r in self.runs.values()))
    @rule(data=st.data())
    def progress(self, data) -> None:
        run = self.pick(data, self.live())
        self.backend.store_result(self.job, {"current": 1}, "PROGRESS", request=self.request(run))
        if self.item().get("status", {}).get("S") == states.REVOKED:
            self.end(run)  # the refused progress write tells it: the job stops

    @rule(data=st.data())
    def lost_on_last_receive(self, data) -> None:
        """A delivery whose process died before the job started, on the message's last
        receive: the worker records FAILURE (tasks.worker.worker_lost), unless another run
        holds the job."""
        from tasks.worker.worker_lost import WorkerProcessLost

        ready = [m for m in self.messages if m.deliverable]
        if not ready:
            return
        message = self.pick(data, ready)
        message.receives += 1
        token = f"{message.id}:{message.receives}"
        request = self.request(Run(token, message.id, message.retries))
        wrote = self.backend.record_quietly(
            self.job, WorkerProcessLost("lost"), states.FAILURE, request, holder_only=True
        )
        holders = [r.token for r in self.live() if not r.wedged and r.message != message.id]
        assert not (wrote and holders), f"a delivery that never ran ended {holders}' job"
        self.messages = [m for m in self.messages if m.id != message.id]  # to the DLQ

    @precondition(lambda self: any(r.alive for r in self.runs.values()))
    @rule(data=st.data(), countdown=st.booleans())
    def retry(self, data, countdown: bool) -> None:
        """self.retry(): the retried message is sent first, then RETRY is written."""
        self.retry_run(self.pick(data, self.live()), countdown)

    @precondition(lambda self: any(r.alive for r in self.runs.values()))
    @rule(data=st.data())
    def retry_in_an_hour(self, data) -> None:
        """self.retry(countdown=3600): the retry is deferred when received (a schedule)."""
        self.retry_run(self.pick(data, self.live()), countdown=False, ahead=3600)

    def retry_run(self, run: Run, countdown: bool, ahead: float | None = None) -> None:
        # A countdown keeps it out of reach until time passes (tick makes it deliverable);
        # one further ahead than SQS delays is received at once and deferred.
        eta = None if ahead is None else self.env.clock.now + ahead
        self.messages.append(
            Message(
                str(uuid.uuid4()), run.retries + 1, run.token, deliverable=not countdown, eta=eta
            )
        )
        self.backend.store_result(
            self.job, RuntimeError("again"), states.RETRY, request=self.request(run)
        )
        self.end(run)

    @precondition(lambda self: any(r.alive for r in self.runs.values()))
    @rule(data=st.data())
    def crash(self, data) -> None:
        """SIGKILL: nothing more from this run; SQS delivers its message again."""
        self.crash_run(self.pick(data, self.live()))

    def crash_run(self, run: Run) -> None:
        run.alive = False
        for message in self.messages:
            if message.id == run.message:
                message.deliverable = True

    @precondition(lambda self: any(r.alive and not r.wedged for r in self.runs.values()))
    @rule(data=st.data(), redelivered=st.booleans())
    def wedge(self, data, redelivered: bool) -> None:
        """Alive but stuck: no more renewals or visibility extensions (documented: its
        lease lapses and another run may start; it may still finish later). Its message
        becomes visible again, and SQS may deliver it at once."""
        run = self.pick(data, [r for r in self.live() if not r.wedged])
        run.wedged = True
        for message in self.messages:
            if message.id == run.message:
                message.deliverable = True
                if redelivered:
                    self.deliver_message(message)

    # --- time, operators, faults ----------------------------------------------------------------
    @rule(seconds=st.sampled_from([1, LEASE + 1, EFFECT_LEASE + 1]))
    def tick(self, seconds: int) -> None:
        """Time passes; healthy runs renew their lease every third of it, as the
        heartbeat does."""
        while seconds > 0:
            self.renew()
            step = min(seconds, LEASE // 3)
            self.env.clock.now += step
            seconds -= step
        for message in self.messages:
            message.deliverable = message.deliverable or message.receives == 0

    @rule()
    def revoke(self) -> None:
        outcome = self.backend.records.revoke(self.job)
        if outcome.status == states.REVOKED:
            self.revoked = True
        if outcome.revoked and outcome.previous == SCHEDULED:
            # What the revoker is told to cancel (tasks.results.control).
            assert (outcome.schedule or "").startswith(f"job-{self.job}-")

    @rule()
    def redrive(self) -> None:
        """The job's message dead-lettered and redriven by the operator's command."""
        from tasks.ops.dlq import redrive

        envelope = {"headers": {"id": self.job, "task": "tests.model.job"}, "body": ""}
        env = self.env
        env.sqs.send_message(QueueUrl=env.dlq_url, MessageBody=json.dumps(envelope))
        moved = redrive(
            env.sqs, self.backend.client, env.dlq_url, env.queue_url, self.backend.table
        )
        assert moved == 1
        for sent in env.sqs.receive_message(QueueUrl=env.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            env.sqs.delete_message(QueueUrl=env.queue_url, ReceiptHandle=sent["ReceiptHandle"])
        if self.terminal is not None and self.terminal.status == states.FAILURE:
            # Redrive resets a FAILURE: the job may run again, from a new record.
            self.terminal, self.max_retries_seen = None, 0
        self.messages.append(Message(str(uuid.uuid4())))

    @precondition(lambda self: not any(r.alive for r in self.runs.values()))
    @rule()
    def forget(self) -> None:
        """AsyncResult.forget() of a job that no longer runs (forgetting a running job lets
        a duplicate run it again, as an expired record does: documented, not modelled)."""
        self.backend.forget(self.job)
        self.terminal, self.revoked, self.winner = None, False, None
        self.max_retries_seen = 0  # a new record starts from the message's retries

    @rule(skip=st.integers(0, 3))
    def fault(self, skip: int) -> None:
        """A coming write (the skip+1-th) is applied, answered with an error, sent again."""
        self.env.fault.arm(skip)

    # --- invariants -----------------------------------------------------------------------
    @invariant()
    def one_live_run(self) -> None:
        if not hasattr(self, "job"):
            return
        healthy = [r.token for r in self.runs.values() if r.alive and not r.wedged]
        assert len(healthy) <= 1, f"two live runs of one job: {healthy}"

    @invariant()
    def record_rules(self) -> None:
        if not hasattr(self, "job"):
            return
        item = self.item()
        status = item.get("status", {}).get("S")
        listed = item.get("list_pk", {}).get("S")
        if status == states.STARTED:
            # Listed (under STARTED) iff its run's renewal listed it since its STARTED write.
            mine = self.listed_run is not None and self.listed_run == item["run_token"]["S"]
            assert listed == (list_pk(status, self.job) if mine else None), (
                f"STARTED listed as {listed}"
            )
        elif status:
            assert listed == list_pk(status, self.job), "listed under another status"
        now = status or NONE
        if now == SCHEDULED and self.last_status != SCHEDULED:
            assert allowed("schedule", self.last_status), f"{self.last_status} -> SCHEDULED"
        if self.last_status == SCHEDULED:
            assert now in FROM_SCHEDULED, f"SCHEDULED -> {now}"
        self.last_status = now
        if "retries" in item:
            retries = int(item["retries"]["N"])
            assert retries >= self.max_retries_seen, "retries went down"
            self.max_retries_seen = retries
        if status in (states.SUCCESS, states.FAILURE, states.REVOKED):
            fields = {
                k: v
                for k, v in item.items()
                if k in ("status", "result", "result_ref", "error", "finished_at")
            }
            if self.terminal is None:
                self.terminal = Snapshot(status, fields)
            else:
                assert fields == self.terminal.fields, "a terminal record changed"
        elif self.terminal is not None:
            raise AssertionError(f"the {self.terminal.status} record became {status}")
        if status == states.SUCCESS:
            assert self.effects >= 1, "the job succeeded without its side effect"
            assert self.effects <= 1 + self.effect_crashes + sum(
                r.wedged for r in self.runs.values()
            ), "the side effect ran twice"
            self.check_result(item)

    def check_result(self, item: dict) -> None:
        winner = self.results.get(self.winner or "")
        meta = self.backend.meta_from_item(self.job, item)
        assert meta["result"] == winner, "the stored result is not the winning run's"
        if "result_ref" in item:
            env = self.env
            body = env.s3.get_object(Bucket=env.bucket, Key=large_objects.result_key(self.job))[
                "Body"
            ].read()
            assert json.loads(body) == winner, "HTTP would serve another run's result"


@pytest.fixture
def model_env(in_process_aws, monkeypatch):
    from tasks import app
    from tasks.ops.clients import s3_client, sqs_client
    from tasks.ops.provision import ensure_bucket, ensure_table
    from tasks.results import backend as backend_module
    from tasks.results.backend import DynamoDBJobBackend

    clock = Clock()
    for module in clocked_modules():
        monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(backend_module, "MAX_RESULT_BYTES", 100)  # "large" stays cheap
    backend = DynamoDBJobBackend(app)
    backend.records.run_lease_seconds = LEASE
    ensure_table(backend.client, backend.table)
    fault = AppliedButFailed()
    backend.client.meta.events.register("needs-retry.dynamodb", fault)
    s3 = s3_client(backend.settings)
    ensure_bucket(s3, backend.settings.bucket_name, "us-east-1", record_seconds=3600)
    sqs = sqs_client(backend.settings)
    yield SimpleNamespace(
        backend=backend,
        clock=clock,
        fault=fault,
        s3=s3,
        bucket=backend.settings.bucket_name,
        sqs=sqs,
        queue_url=sqs.create_queue(QueueName="model-jobs")["QueueUrl"],
        dlq_url=sqs.create_queue(QueueName="model-jobs-dlq")["QueueUrl"],
    )
    # The killed blocks' generators are finalised now, while moto still answers them.
    KILLED.clear()
    gc.collect()


def test_the_job_record_holds_its_promises_at_every_interleaving(model_env):
    JobModel.env = model_env
    run_state_machine_as_test(
        JobModel,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=25,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    assert model_env.fault.fired > 0  # the fault was really injected


class ChordModel(RuleBasedStateMachine):
    """A three-part chord whose parts finish, are reported again (a redelivered part whose
    record is already finished), and whose writes may be applied yet answered with an error.
    Invariant: the body is sent at most once, and once every part has reported, exactly
    once."""

    env: SimpleNamespace
    PARTS = 3

    @initialize()
    def new_chord(self) -> None:
        from tasks import app

        backend = self.env.backend
        self.sent: list = []
        backend.send_chord_body = lambda callback, values: self.sent.append(values)
        self.group = str(uuid.uuid4())
        self.ids = [str(uuid.uuid4()) for _ in range(self.PARTS)]
        header = app.GroupResult(self.group, [app.AsyncResult(i) for i in self.ids])
        body = app.signature("tests.model.body")
        body.freeze()
        backend.apply_chord((self.group, header.results), body)
        backend.set_chord_size(self.group, self.PARTS)
        self.body = dict(body)
        self.reported: set[str] = set()
        self.env.fault.armed = False

    pick = staticmethod(JobModel.pick)

    def report(self, part: str) -> None:
        request = SimpleNamespace(
            id=part, group=self.group, chord=self.body, task="tests.model.part"
        )
        self.env.backend.on_chord_part_return(request, states.SUCCESS, part)
        self.reported.add(part)

    @rule(data=st.data())
    def finish_part(self, data) -> None:
        part = self.pick(data, self.ids)
        self.env.backend.store_result(
            part,
            part,
            states.SUCCESS,
            request=SimpleNamespace(id=part, task="tests.model.part", retries=0, delivery_count=1),
        )
        self.report(part)

    @precondition(lambda self: bool(self.reported))
    @rule(data=st.data())
    def report_again(self, data) -> None:
        """A part's message delivered again after it finished: told to its chord again."""
        self.report(self.pick(data, sorted(self.reported)))

    @rule(skip=st.integers(0, 4))
    def fault(self, skip: int) -> None:
        self.env.fault.arm(skip)

    @invariant()
    def body_sent_once(self) -> None:
        if not hasattr(self, "group"):
            return
        assert len(self.sent) <= 1, "the chord body was sent twice"
        if self.reported == set(self.ids):
            assert self.sent == [self.ids], "every part reported, and no body sent"


def test_a_chord_body_is_sent_once_whatever_is_lost(model_env):
    ChordModel.env = model_env
    run_state_machine_as_test(
        ChordModel,
        settings=settings(
            max_examples=max(EXAMPLES // 2, 10),
            stateful_step_count=15,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
