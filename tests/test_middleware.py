"""The worker's middleware (tasks.worker.middleware): one ordered list per app, the hooks our
Consumer and Request call, and failures kept to the middleware that failed.

The list's contract is dramatiq's (`add(middleware, before=, after=)`); the hooks' moments are
Celery's: a Request's `on_failure` runs in the main process before its message is
acknowledged or handed back, `task_postrun` in the pool process after the state was stored.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery, signals

from tasks.celery_private import Terminated, WorkerLostError
from tasks.worker.middleware import Middleware, MiddlewareStack, Rejection, Verdict, built


class A(Middleware):
    pass


class B(Middleware):
    pass


class C(Middleware):
    pass


class Recorder(Middleware):
    """Notes every hook it gets, in order, in a list shared between recorders."""

    def __init__(self, seen: list, name: str = "rec") -> None:
        self.seen, self.name = seen, name

    def job_started(self, request: Any) -> None:
        self.seen.append((self.name, "job_started"))

    def run_failed(self, request: Any, exc: BaseException) -> None:
        self.seen.append((self.name, "run_failed", type(exc).__name__))

    def run_lost(self, request: Any, exc: BaseException) -> None:
        self.seen.append((self.name, "run_lost", type(exc).__name__))

    def run_ended(self, task: Any, state: str) -> None:
        self.seen.append((self.name, "run_ended", state))

    def message_rejected(self, consumer: Any, message: Any, rejection: Rejection) -> None:
        self.seen.append((self.name, "message_rejected", rejection))


def names(stack: MiddlewareStack) -> list[str]:
    return [type(m).__name__ for m in stack]


def test_add_appends_or_places_before_the_first_or_after_the_last_of_a_kind():
    stack = MiddlewareStack([A(), B()])
    stack.add(C(), before=B)
    assert names(stack) == ["A", "C", "B"]
    second_a = stack.add(A(), after=B)
    assert names(stack) == ["A", "C", "B", "A"]
    stack.add(B(), after=A)  # after the last A
    assert names(stack) == ["A", "C", "B", "A", "B"]
    stack.add(C(), before=second_a)  # an instance names one place
    assert names(stack) == ["A", "C", "B", "C", "A", "B"]
    assert stack.find(C) is list(stack)[1] and B in stack and second_a in stack
    stack.remove(C)
    assert names(stack) == ["A", "B", "A", "B"]


def test_add_refuses_what_it_cannot_place():
    stack = MiddlewareStack([A()])
    with pytest.raises(ValueError, match="not both"):
        stack.add(B(), before=A, after=A)
    with pytest.raises(ValueError, match="C is not in the middleware list"):
        stack.add(B(), after=C)
    with pytest.raises(TypeError):
        stack.add(B)  # the class, not an instance
    assert names(stack) == ["A"]


def test_a_failing_hook_is_logged_and_the_others_still_run(caplog):
    seen: list = []

    class Broken(Middleware):
        def job_started(self, request: Any) -> None:
            raise RuntimeError("boom")

    stack = MiddlewareStack([Recorder(seen, "first"), Broken(), Recorder(seen, "last")])
    with caplog.at_level(logging.ERROR, logger="tasks.worker.middleware.stack"):
        stack.dispatch("job_started", object())
    assert seen == [("first", "job_started"), ("last", "job_started")]
    assert "middleware Broken failed in job_started" in caplog.text


def test_a_hook_goes_to_the_list_as_it_is_at_the_call():
    """Hooks go only to the middlewares that implement them, worked out once per change of
    the list: one added, or given a hook as an attribute, after hooks were called still gets
    the next call, in its place; one removed does not."""
    seen: list = []
    first = Recorder(seen, "first")
    stack = MiddlewareStack([A(), first])
    stack.dispatch("job_started", object())
    assert stack.implementing("job_started") == (first,)
    stack.add(Recorder(seen, "before"), before=first)
    patched = stack.add(B())
    patched.job_started = lambda request: seen.append(("patched", "job_started"))
    stack.add(A())  # no hook, but a change: `patched` is looked at again
    stack.dispatch("job_started", object())
    assert seen[1:] == [
        ("before", "job_started"),
        ("first", "job_started"),
        ("patched", "job_started"),
    ]
    stack.remove(first)
    stack.dispatch("job_started", object())
    assert seen[4:] == [("before", "job_started"), ("patched", "job_started")]


def test_the_first_screen_to_refuse_decides_and_a_failing_screen_refuses():
    refusal = Verdict("no", True, "j1", "t")
    asked: list = []

    class Refuses(Middleware):
        def screen_message(self, consumer: Any, message: Any) -> Verdict | None:
            asked.append("refuses")
            return refusal

    class Later(Middleware):
        def screen_message(self, consumer: Any, message: Any) -> Verdict | None:
            asked.append("later")
            return None

    class Fails(Middleware):
        def screen_message(self, consumer: Any, message: Any) -> Verdict | None:
            raise KeyError("x")

    assert MiddlewareStack([A(), Refuses(), Later()]).screen(None, object()) is refusal
    assert asked == ["refuses"]
    assert MiddlewareStack([A(), Later()]).screen(None, object()) is None
    verdict = MiddlewareStack([Fails(), Later()]).screen(None, object())
    assert verdict == Verdict("unreadable message: KeyError", True, None, None)


def test_a_body_hook_that_raises_reaches_the_caller():
    class Gone(Middleware):
        def message_body(self, message: Any, headers: dict) -> tuple | None:
            raise LookupError("payload gone")

    stack = MiddlewareStack([A()])
    assert stack.message_body(object(), {}) is None
    stack.add(Gone())
    with pytest.raises(LookupError):
        stack.message_body(object(), {})


def test_each_app_has_its_own_list_with_the_defaults_in_order():
    from tasks.app_factory import App
    from tasks.worker.claim_check import ClaimCheck
    from tasks.worker.completion_callbacks import CompletionCallbacks
    from tasks.worker.deferral import Deferral
    from tasks.worker.gate.middleware import MessageGate
    from tasks.worker.metrics import JobMetrics
    from tasks.worker.rejection_record import RejectionRecord
    from tasks.worker.worker_lost import LostRunRecord

    one, two = App("one"), App("two")
    assert built(one) is None  # nothing made until asked for
    mine = one.middleware.add(A(), after=JobMetrics)
    assert built(one) is one.middleware and mine not in two.middleware
    order = names(one.middleware)
    assert order.index("A") == order.index("JobMetrics") + 1
    # The gate screens first, then deferral takes what is due too far ahead (only a message
    # the gate passed); the lost-run record writes before the callbacks read.
    assert order[:6] == [
        MessageGate.__name__,
        Deferral.__name__,
        ClaimCheck.__name__,
        RejectionRecord.__name__,
        LostRunRecord.__name__,
        CompletionCallbacks.__name__,
    ]


def test_an_app_not_made_by_the_factory_gets_the_defaults_once():
    from tasks.worker.default_middleware import of

    app = Celery("plain")
    stack = of(app)
    assert of(app) is stack and app.middleware is stack and len(stack) > 5


def consumer_with(stack: MiddlewareStack, max_receive_count: int = 3) -> Any:
    return SimpleNamespace(middleware=stack, max_receive_count=max_receive_count)


class Message:
    def __init__(self, receive_count: int | None) -> None:
        attributes = (
            {} if receive_count is None else {"ApproximateReceiveCount": str(receive_count)}
        )
        self.delivery_info = {"sqs_message": {"Attributes": attributes}}
        self.rejected: list = []

    def reject(self, requeue: bool = False) -> None:
        self.rejected.append(requeue)


@pytest.mark.parametrize(
    ("permanent", "count", "final"),
    [(False, 1, False), (False, 3, True), (True, 1, True), (False, None, False)],
)
def test_a_rejected_message_reaches_the_middleware_then_sqs(permanent, count, final):
    from tasks.worker.consumer import SafeConsumer

    seen: list = []
    consumer = consumer_with(MiddlewareStack([Recorder(seen)]))
    message = Message(count)
    verdict = Verdict("bad", permanent, "j1", "tasks.debug.add")
    SafeConsumer.reject(consumer, message, verdict)
    assert seen == [("rec", "message_rejected", Rejection(verdict, count, final))]
    assert message.rejected == [False]  # left to the redrive policy, never requeued


def test_the_rejection_record_says_why_on_the_job_record():
    from tasks.worker.rejection_record import RejectionRecord

    calls: list = []
    records = SimpleNamespace(reject_message=lambda *a, **k: calls.append((a, k)))
    consumer = SimpleNamespace(
        app=SimpleNamespace(backend=SimpleNamespace(records=records)), hostname="w1"
    )
    verdict = Verdict("bad", False, "j1", "tasks.debug.add")
    RejectionRecord().message_rejected(consumer, object(), Rejection(verdict, 2, False))
    RejectionRecord().message_rejected(
        consumer, object(), Rejection(Verdict("no id", True, None, None), 1, True)
    )
    assert calls == [
        (
            ("j1", "bad"),
            {"final": False, "facts": {"task": "tasks.debug.add", "attempts": 2, "worker": "w1"}},
        )
    ]


@pytest.fixture
def request_app():
    """A plain app with one task and a recording middleware list."""
    app = Celery("hooks", set_as_current=False)

    @app.task(name="hooks.add")
    def add(x: int, y: int) -> int:
        return x + y

    seen: list = []
    app.middleware = MiddlewareStack([Recorder(seen)])
    return SimpleNamespace(app=app, task=add, seen=seen)


def make_request(request_app: Any) -> Any:
    from tasks.worker.request import SQSRequest

    message = SimpleNamespace(
        headers={"id": "r1", "task": "hooks.add", "timelimit": [None, None]},
        body=b"[[1, 2], {}, {}]",
        content_type="application/json",
        content_encoding="utf-8",
        payload=([1, 2], {}, {}),
        properties={},
        delivery_info={
            "sqs_message": {"MessageId": "m1", "Attributes": {"ApproximateReceiveCount": "1"}}
        },
        decode=lambda: ([1, 2], {}, {}),
    )
    return SQSRequest(message, app=request_app.app, task=request_app.task)


@pytest.mark.parametrize(
    ("exc", "hook"),
    [
        (WorkerLostError("gone"), "run_lost"),
        (Terminated(9), "run_lost"),
        (ValueError("job raised"), "run_failed"),
    ],
)
def test_a_failed_or_lost_run_reaches_the_middleware_before_celery_acts(
    request_app, monkeypatch, exc, hook
):
    from tasks.celery_private import Request

    def celery_on_failure(self: Any, exc_info: Any, **kwargs: Any) -> None:
        request_app.seen.append(("celery", "on_failure"))

    monkeypatch.setattr(Request, "on_failure", celery_on_failure)
    request = make_request(request_app)
    # billiard hands the main process the exception wrapped (ExceptionWithTraceback).
    request.on_failure(SimpleNamespace(exception=SimpleNamespace(exc=exc)))
    assert request_app.seen == [("rec", hook, type(exc).__name__), ("celery", "on_failure")]


def test_a_body_from_the_middleware_is_the_one_celery_runs(request_app):
    class Stored(Middleware):
        def message_body(self, message: Any, headers: dict) -> tuple | None:
            return [5, 6], {}, {}

    request_app.app.middleware.add(Stored(), before=Recorder)
    request = make_request(request_app)
    assert request.args == [5, 6]


def test_run_ended_runs_after_a_worker_run_only(request_app):
    import tasks.worker.celery_hooks  # noqa: F401  (connects the receivers)

    task = request_app.task
    task.push_request(id="r1", is_eager=False)
    try:
        signals.task_postrun.send(sender=task, task_id="r1", task=task, state="SUCCESS")
    finally:
        task.pop_request()
    task.push_request(id="r2", is_eager=True)
    try:
        signals.task_postrun.send(sender=task, task_id="r2", task=task, state="SUCCESS")
    finally:
        task.pop_request()
    assert request_app.seen == [("rec", "run_ended", "SUCCESS")]  # not the eager one
