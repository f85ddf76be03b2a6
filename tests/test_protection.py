"""ECS scale-in protection, against a stand-in for the ECS agent on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery import states

from tasks.debug import sleep
from tasks.worker.protection import protection_minutes
from tests.conftest import wait_until
from tests.faults import side_queue, submit

pytestmark = pytest.mark.integration


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
                    answer = {"protection": {"ProtectionEnabled": body["ProtectionEnabled"],
                                             "TaskArn": "arn:aws:ecs:task/test"}}
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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def enabled(self) -> list[bool]:
        return [body["ProtectionEnabled"] for _, _, _, body in self.calls]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def agent():
    fake = FakeAgent()
    yield fake
    fake.close()


def test_protected_while_a_job_runs_and_released_when_idle(stack, start_worker, agent):
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
    wait_until(lambda: agent.enabled() == [True, False], 10, message="protection released")
    released_at = agent.calls[1][0]
    finished = stack.item(job)["finished_at"]["S"]
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(released_at)) >= finished[:19]
    assert worker.alive()


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


def test_an_unreachable_agent_is_never_fatal(stack, start_worker):
    from tests.conftest import free_port

    queue = side_queue(stack, "protectdown")
    worker = start_worker(concurrency=1, env={
        **queue.env, "ECS_AGENT_URI": f"http://127.0.0.1:{free_port()}/api/none"})
    job = submit(stack, sleep.s(seconds=2, steps=2), queue)
    wait_until(lambda: "ECS task protection (True) failed" in worker.log(), 10,
               message="failure logged")
    wait_until(lambda: stack.status(job) == states.SUCCESS, 30, message="job done")
    assert worker.alive()
