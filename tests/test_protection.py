"""ECS scale-in protection, against a stand-in for the ECS agent and the task metadata
endpoint on 127.0.0.1, with moto's ECS API as the service whose deployment changes."""

from __future__ import annotations

import itertools
import json
import random
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.stub import Stubber
from celery import states

from tasks.debug import sleep
from tasks.ops.settings import Settings
from tasks.worker import protection
from tasks.worker.protection import MIN_PUT_INTERVAL, DeploymentWatch, protection_minutes
from tests.conftest import wait_until
from tests.faults import TERMINAL, received_count, side_queue, statuses, submit

# Scheduling noise of a shared 2-core machine on top of a stated bound.
TOLERANCE = 5.0


class FakeAgent:
    """Records task-protection calls; answers like the agent, or with `status` when set."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[tuple[float, str, str, dict]] = []
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_PUT(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                agent.calls.append((time.time(), self.command, self.path, body))
                if agent.status == 200:
                    answer = {
                        "protection": {
                            "ProtectionEnabled": body["ProtectionEnabled"],
                            "TaskArn": "arn:aws:ecs:task/test",
                        }
                    }
                else:
                    answer = {"error": {"Code": "ServerException", "Message": "injected"}}
                data = json.dumps(answer).encode()
                self.send_response(agent.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/api/task-1234"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def enabled(self) -> list[bool]:
        return [body["ProtectionEnabled"] for _, _, _, body in self.calls]

    def times(self, enabled: bool | None = None) -> list[float]:
        return [
            at
            for at, _, _, body in self.calls
            if enabled is None or body["ProtectionEnabled"] is enabled
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeTaskMetadata:
    """$ECS_CONTAINER_METADATA_URI_V4: answers /task as the v4 endpoint does (the fields
    the worker reads)."""

    def __init__(self, task: dict) -> None:
        self.task = task
        self.requests: list[str] = []
        metadata = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                metadata.requests.append(self.path)
                found = self.path.endswith("/task")
                data = json.dumps(metadata.task if found else {}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/v4/0123456789abcdef"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Feeder:
    """A steady stream of sleep jobs to a queue, on a thread, bounded in count and time."""

    def __init__(
        self, stack, queue, seconds: float, every: float, limit: int = 200, for_at_most: float = 180
    ) -> None:
        self.ids: list[str] = []
        self.stopped = threading.Event()

        def feed() -> None:
            deadline = time.monotonic() + for_at_most
            while (
                not self.stopped.is_set() and len(self.ids) < limit and time.monotonic() < deadline
            ):
                self.ids.append(submit(stack, sleep.s(seconds=seconds, steps=1), queue))
                self.stopped.wait(every)

        self.thread = threading.Thread(target=feed, daemon=True)
        self.thread.start()

    def stop(self) -> list[str]:
        self.stopped.set()
        self.thread.join(30)
        return list(self.ids)


@pytest.fixture
def agent():
    fake = FakeAgent()
    yield fake
    fake.close()


def assert_rate_bounded(agent: FakeAgent) -> None:
    times = agent.times()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= MIN_PUT_INTERVAL - 0.5 for gap in gaps), gaps


@pytest.mark.integration
def test_protected_while_a_job_runs_and_released_when_idle(stack, agent, start_worker):
    queue = side_queue(stack, "protect", visibility=120)
    worker = start_worker(concurrency=1, env={**queue.env, "ECS_AGENT_URI": agent.uri})
    assert agent.calls == []  # an idle worker asks for nothing

    job = submit(stack, sleep.s(seconds=3, steps=3), queue)
    wait_until(lambda: agent.enabled() == [True], 10, message="protection asked for")
    assert stack.status(job) in (states.STARTED, "PROGRESS", None)
    _, method, path, body = agent.calls[0]
    assert (method, path) == ("PUT", "/api/task-1234/task-protection/v1/state")
    # The backstop outlives the visibility timeout (120 s).
    assert body == {"ProtectionEnabled": True, "ExpiresInMinutes": protection_minutes(120)}
    assert body["ExpiresInMinutes"] * 60 > 120

    wait_until(lambda: stack.status(job) == states.SUCCESS, 30, message="job done")
    # Released once idle, but never sooner than MIN_PUT_INTERVAL after the last PUT.
    wait_until(
        lambda: agent.enabled() == [True, False],
        MIN_PUT_INTERVAL + 5,
        message="protection released",
    )
    released_at = agent.calls[1][0]
    finished = stack.item(job)["finished_at"]["S"]
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(released_at)) >= finished[:19]
    assert_rate_bounded(agent)
    assert worker.alive()


@pytest.mark.integration
def test_a_failing_agent_is_logged_and_never_fatal(stack, start_worker):
    broken = FakeAgent(status=500)
    try:
        queue = side_queue(stack, "protectfail")
        worker = start_worker(concurrency=1, env={**queue.env, "ECS_AGENT_URI": broken.uri})
        job = submit(stack, sleep.s(seconds=2, steps=2), queue)
        wait_until(lambda: stack.status(job) == states.SUCCESS, 30, message="job done")
        assert broken.enabled()[:1] == [True]
        assert "ECS task protection (True) failed" in worker.log()
        assert worker.alive()
    finally:
        broken.close()


@pytest.mark.integration
def test_an_unreachable_agent_is_never_fatal(stack, start_worker):
    from tests.conftest import free_port

    queue = side_queue(stack, "protectdown")
    worker = start_worker(
        concurrency=1,
        env={**queue.env, "ECS_AGENT_URI": f"http://127.0.0.1:{free_port()}/api/none"},
    )
    job = submit(stack, sleep.s(seconds=2, steps=2), queue)
    wait_until(
        lambda: "ECS task protection (True) failed" in worker.log(), 10, message="failure logged"
    )
    wait_until(lambda: stack.status(job) == states.SUCCESS, 30, message="job done")
    assert worker.alive()


@pytest.mark.integration
def test_sigterm_releases_protection_at_once_and_the_running_job_still_finishes(
    stack, agent, start_worker
):
    queue = side_queue(stack, "protectterm", visibility=120)
    worker = start_worker(concurrency=1, env={**queue.env, "ECS_AGENT_URI": agent.uri})
    job = submit(stack, sleep.s(seconds=4, steps=4), queue)
    wait_until(lambda: agent.enabled() == [True], 10, message="protection asked for")
    terminated_at = time.time()
    worker.proc.send_signal(signal.SIGTERM)
    # At once: not held back by MIN_PUT_INTERVAL, not after the job.
    wait_until(
        lambda: agent.enabled() == [True, False], 3 + TOLERANCE, message="released on SIGTERM"
    )
    assert agent.times(False)[0] - terminated_at < 3 + TOLERANCE
    assert stack.status(job) != states.SUCCESS  # still running: the release came first
    assert worker.proc.wait(60) == 0  # the warm shutdown let it finish
    assert stack.status(job) == states.SUCCESS


# --- a deploy under steady load ---------------------------------------------------------------
class EcsService:
    """A cluster, a task definition and a service in moto, and one task of its deployment."""

    def __init__(self, endpoint: str) -> None:
        self.ecs = boto3.client(
            "ecs",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        suffix = uuid.uuid4().hex[:8]
        self.cluster = self.ecs.create_cluster(clusterName=f"protect-{suffix}")["cluster"][
            "clusterArn"
        ]
        self.family = f"worker-{suffix}"
        self.register()
        service = self.ecs.create_service(
            cluster=self.cluster,
            serviceName="worker",
            taskDefinition=f"{self.family}:1",
            desiredCount=1,
            launchType="FARGATE",
        )["service"]
        (deployment,) = service["deployments"]
        task = self.ecs.run_task(
            cluster=self.cluster,
            taskDefinition=f"{self.family}:1",
            launchType="FARGATE",
            startedBy=deployment["id"],
            group="service:worker",
        )["tasks"][0]
        self.metadata = FakeTaskMetadata(
            {
                "Cluster": self.cluster,
                "TaskARN": task["taskArn"],
                "Family": self.family,
                "Revision": "1",
                "DesiredStatus": "RUNNING",
                "KnownStatus": "RUNNING",
                "LaunchType": "FARGATE",
                "Containers": [],
            }
        )

    def register(self) -> None:
        self.ecs.register_task_definition(
            family=self.family,
            containerDefinitions=[{"name": "worker", "image": "sqs-jobs:test", "memory": 512}],
        )

    def deploy(self) -> None:
        """What `python -m ecs deploy` does to the service: a new task definition, rolled out."""
        self.register()
        self.ecs.update_service(
            cluster=self.cluster,
            service="worker",
            taskDefinition=f"{self.family}:2",
            forceNewDeployment=True,
        )

    def close(self) -> None:
        self.metadata.close()


@pytest.fixture
def ecs_service(stack):
    service = EcsService(stack.endpoint)
    yield service
    service.close()


JOB_SECONDS = 1.0
DEPLOYMENT_CHECK = 1.0


@pytest.mark.integration
def test_a_deploy_under_steady_load_gets_the_protection_released_within_the_bound(
    stack, agent, ecs_service, start_worker
):
    queue = side_queue(stack, "protectdeploy")
    old = start_worker(
        concurrency=2,
        env={
            **queue.env,
            "ECS_AGENT_URI": agent.uri,
            "ECS_CONTAINER_METADATA_URI_V4": ecs_service.metadata.uri,
            "ECS_DEPLOYMENT_CHECK_SECONDS": str(DEPLOYMENT_CHECK),
        },
    )
    # Jobs arrive faster than two processes finish them: the worker is never idle.
    feeder = Feeder(stack, queue, seconds=JOB_SECONDS, every=0.4)
    wait_until(lambda: agent.enabled() == [True], 15, message="protection asked for")
    wait_until(
        lambda: sum(s == states.SUCCESS for s in statuses(stack, feeder.ids).values()) >= 4,
        30,
        message="jobs flowing under protection",
    )
    assert agent.enabled() == [True]  # steady load: never idle, never released
    assert ecs_service.metadata.requests  # the worker knows which task it is

    deployed_at = time.time()
    submitted_then = len(feeder.ids)
    ecs_service.deploy()
    # Stated in tasks/worker/protection/__init__.py: check period + longest held job + one PUT
    # interval + 2 s.
    bound = DEPLOYMENT_CHECK + JOB_SECONDS + MIN_PUT_INTERVAL + 2
    wait_until(
        lambda: False in agent.enabled(),
        bound + TOLERANCE + 5,
        message="protection released after the deploy",
    )
    released_at = agent.times(False)[0]
    assert released_at - deployed_at <= bound + TOLERANCE
    assert len(feeder.ids) > submitted_then  # jobs kept arriving meanwhile
    assert "no longer of the service's primary deployment" in old.log()

    # Every job the old worker took finished SUCCESS; from the release on it takes none.
    log_at_release = old.log()
    taken = [j for j in feeder.ids if received_count(log_at_release, j)]
    wait_until(
        lambda: all(s == states.SUCCESS for s in statuses(stack, taken).values()),
        30,
        message="the old worker's jobs done",
    )
    # The new deployment's worker (no protection needed here) serves the rest.
    start_worker(concurrency=4, env=queue.env)
    submitted = feeder.stop()
    wait_until(
        lambda: all(s in TERMINAL for s in statuses(stack, submitted).values()),
        90,
        message="every job done",
    )
    assert set(statuses(stack, submitted).values()) == {states.SUCCESS}
    log = old.log()
    assert [j for j in submitted if received_count(log, j)] == taken
    assert agent.enabled() == [True, False]  # stayed drained and released
    assert_rate_bounded(agent)
    assert old.alive()
    # On ECS (the metadata endpoint is there) job metrics are on by default.
    assert '{"_aws":' in log


@pytest.mark.integration
def test_protection_is_released_after_the_max_window_and_taken_again_after_the_cooldown(
    stack, agent, start_worker
):
    window, cooldown = 4.0, 6.0  # the cool-down's floor here: long poll (1 s) + 5 s
    queue = side_queue(stack, "protectwindow")
    worker = start_worker(
        concurrency=2,
        env={
            **queue.env,
            "ECS_AGENT_URI": agent.uri,
            "ECS_PROTECTION_MAX_WINDOW": str(window),
            "ECS_PROTECTION_COOLDOWN": "1",
        },
    )
    feeder = Feeder(stack, queue, seconds=JOB_SECONDS, every=0.4, limit=40)
    wait_until(lambda: agent.enabled() == [True], 15, message="protection asked for")
    wait_until(
        lambda: agent.enabled()[:2] == [True, False],
        window + JOB_SECONDS + MIN_PUT_INTERVAL + 2 + TOLERANCE + 5,
        message="released after the max window",
    )
    enabled_at, released_at = agent.times()[:2]
    assert released_at - enabled_at <= window + JOB_SECONDS + MIN_PUT_INTERVAL + 2 + TOLERANCE
    assert "without a break" in worker.log()
    # After the cool-down it takes jobs again, and is protected again for them.
    wait_until(
        lambda: agent.enabled()[:3] == [True, False, True],
        cooldown + MIN_PUT_INTERVAL + TOLERANCE + 5,
        message="protected again",
    )
    assert agent.times()[2] - released_at >= cooldown - 0.5
    assert "taking jobs again" in worker.log()
    submitted = feeder.stop()
    wait_until(
        lambda: all(s in TERMINAL for s in statuses(stack, submitted).values()),
        90,
        message="every job done by the same worker",
    )
    assert set(statuses(stack, submitted).values()) == {states.SUCCESS}
    assert_rate_bounded(agent)
    assert worker.alive()


# --- the pieces, in process -------------------------------------------------------------------
class RecordingClient:
    def __init__(self, clock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, bool]] = []

    def put(self, enabled: bool, minutes: int | None = None) -> bool:
        self.calls.append((self.clock(), enabled))
        return True


def test_the_put_rate_stays_under_one_per_interval_however_busy_flaps(monkeypatch):
    monkeypatch.setenv("ECS_AGENT_URI", "http://127.0.0.1:9/unused")
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)
    now = [1000.0]
    guard = protection.ScaleInProtection(Settings.from_env(), clock=lambda: now[0])
    guard.client = RecordingClient(lambda: now[0])
    busy = [False]
    guard.busy = lambda at: busy[0]
    rng = random.Random(11)
    for _ in range(20_000):  # about 2.8 simulated hours of jobs coming and going
        now[0] += 0.5
        if rng.random() < 0.3:
            busy[0] = not busy[0]
        guard.step(now[0])
    times = [at for at, _ in guard.client.calls]
    assert len(times) > 100
    assert min(b - a for a, b in itertools.pairwise(times)) >= MIN_PUT_INTERVAL
    assert len(times) <= (times[-1] - times[0]) / MIN_PUT_INTERVAL + 1
    # No stretch of protection (renewals included) outlasts the max window + one interval.
    since = None
    for at, on in guard.client.calls:
        if on and since is None:
            since = at
        elif not on:
            assert at - since <= protection.DEFAULT_MAX_WINDOW + MIN_PUT_INTERVAL + 1
            since = None


def test_a_worker_busy_for_ever_is_released_at_the_max_window(monkeypatch):
    monkeypatch.setenv("ECS_AGENT_URI", "http://127.0.0.1:9/unused")
    monkeypatch.setenv("ECS_PROTECTION_MAX_WINDOW", "600")
    now = [0.0]
    guard = protection.ScaleInProtection(Settings.from_env(), clock=lambda: now[0])
    guard.client = RecordingClient(lambda: now[0])
    running = [True]
    guard.busy = lambda at: running[0]
    while now[0] < 3600 and [on for _, on in guard.client.calls][-1:] != [False]:
        now[0] += 1
        if guard.state == protection.DRAINING:
            running[0] = False  # no new jobs are taken; the held one finishes
        guard.step(now[0])
    (first, _), (released, on) = guard.client.calls[0], guard.client.calls[-1]
    assert on is False
    assert released - first <= 600 + MIN_PUT_INTERVAL + 2
    assert guard.state == protection.PAUSED


def ecs_stub(answers: list[tuple[str, dict, dict | None]]):
    ecs = boto3.client(
        "ecs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(ecs)
    for operation, response, expected in answers:
        if operation.startswith("error:"):
            stubber.add_client_error(
                operation.split(":", 1)[1],
                service_error_code=response["code"],
                http_status_code=400,
                expected_params=expected,
            )
        else:
            stubber.add_response(operation, response, expected)
    stubber.activate()
    return ecs, stubber


CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/sqs-jobs"
TASK = "arn:aws:ecs:us-east-1:123456789012:task/sqs-jobs/0123456789abcdef"
TASK_DEF = "arn:aws:ecs:us-east-1:123456789012:task-definition/sqs-jobs-worker:{}"


def described_task(started_by: str | None, group: str = "service:worker") -> dict:
    task = {
        "taskArn": TASK,
        "clusterArn": CLUSTER,
        "group": group,
        "taskDefinitionArn": TASK_DEF.format(3),
    }
    if started_by:
        task["startedBy"] = started_by
    return {"tasks": [task], "failures": []}


def described_service(primary_id: str, revision: int, status: str = "ACTIVE") -> dict:
    return {
        "services": [
            {
                "serviceName": "worker",
                "status": status,
                "deployments": [
                    {
                        "id": primary_id,
                        "status": "PRIMARY",
                        "taskDefinition": TASK_DEF.format(revision),
                    },
                    {"id": "ecs-svc/1", "status": "ACTIVE", "taskDefinition": TASK_DEF.format(3)},
                ],
            }
        ],
        "failures": [],
    }


@pytest.fixture
def metadata():
    fake = FakeTaskMetadata(
        {"Cluster": CLUSTER, "TaskARN": TASK, "Family": "sqs-jobs-worker", "Revision": "3"}
    )
    yield fake
    fake.close()


@pytest.mark.parametrize(
    ("started_by", "primary", "revision", "superseded"),
    [
        ("ecs-svc/1", "ecs-svc/1", 3, False),  # still the primary deployment
        ("ecs-svc/1", "ecs-svc/2", 4, True),  # a deploy began
        ("ecs-svc/1", "ecs-svc/2", 3, True),  # forced new deployment, same task definition
        (None, "ecs-svc/2", 3, False),  # started by hand: compare task definitions
        (None, "ecs-svc/2", 4, True),
    ],
)
def test_the_deployment_check_compares_the_task_with_the_primary_deployment(
    metadata, started_by, primary, revision, superseded
):
    by_task = {"cluster": CLUSTER, "tasks": [TASK]}
    by_service = {"cluster": CLUSTER, "services": ["worker"]}
    ecs, stubber = ecs_stub(
        [
            ("describe_tasks", described_task(started_by), by_task),
            ("describe_services", described_service(primary, revision), by_service),
            ("describe_services", described_service(primary, revision), by_service),
        ]
    )
    watch = DeploymentWatch(metadata.uri, lambda: ecs)
    assert watch.superseded() is superseded
    assert watch.superseded() is superseded  # DescribeTasks once, DescribeServices each time
    stubber.assert_no_pending_responses()
    assert watch.identity.service == "worker"
    assert watch.identity.task_definition == "sqs-jobs-worker:3"
    assert metadata.requests == ["/v4/0123456789abcdef/task"]


def test_a_deleted_service_counts_as_superseded(metadata):
    ecs, _ = ecs_stub(
        [
            ("describe_tasks", described_task("ecs-svc/1"), None),
            ("describe_services", described_service("ecs-svc/1", 3, "DRAINING"), None),
        ]
    )
    assert DeploymentWatch(metadata.uri, lambda: ecs).superseded() is True


def test_without_permission_the_check_turns_itself_off_and_asks_no_more(metadata, caplog):
    ecs, stubber = ecs_stub([("error:describe_tasks", {"code": "AccessDeniedException"}, None)])
    watch = DeploymentWatch(metadata.uri, lambda: ecs)
    assert watch.superseded() is False
    assert watch.superseded() is False  # a second call would find no stubbed answer
    stubber.assert_no_pending_responses()
    assert "ecs:DescribeTasks" in watch.off and "ecs:DescribeServices" in watch.off
    assert sum("deployment check off" in r.getMessage() for r in caplog.records) == 1


def test_a_task_outside_a_service_has_no_deployment_to_follow(metadata):
    ecs, _ = ecs_stub([("describe_tasks", described_task(None, group="family:sqs-jobs"), None)])
    watch = DeploymentWatch(metadata.uri, lambda: ecs)
    assert watch.superseded() is False
    assert "not part of a service" in watch.off
