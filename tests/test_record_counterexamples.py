"""The counterexamples tests/test_record_model.py shrank to on the code before its fixes,
replayed step by step through the same model, its invariants checked after every step.

Each was found by running the model with one fix reverted (issue 17's defects): before the
fixes each of these failed with the message in its docstring; now each passes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.test_record_model import ChordModel, JobModel, model_env  # noqa: F401

Step = Callable[[JobModel], object]


def ready(model: JobModel, *, retry: bool = False) -> int:
    """The index, among deliverable messages, of the first (retry=True: retried) one."""
    candidates = [m for m in model.messages if m.deliverable]
    return next(i for i, m in enumerate(candidates) if bool(m.retry_of) == retry)


def replay(machine: JobModel | ChordModel, steps: list[Step]) -> None:
    for step in steps:
        step(machine)
        for check in ("one_live_run", "record_rules", "body_sent_once"):
            if hasattr(machine, check):
                getattr(machine, check)()
    machine.teardown()


@pytest.fixture
def job(model_env):  # noqa: F811
    JobModel.env = model_env
    model = JobModel()
    return model


def test_a_retry_never_starts_beside_a_run_that_took_over(job):
    """Defect 1 ("two live runs of one job"): a run retries; its record goes (here by
    forget, as by a lapsed lease); a copy of the job starts; the retry, due now, started
    beside it."""
    replay(
        job,
        [
            lambda m: m.new_job(copies=1),
            lambda m: m.redrive(),
            lambda m: m.deliver(data=ready(m)),
            lambda m: m.redrive(),
            lambda m: m.retry(countdown=False, data=0),
            lambda m: m.forget(),
            lambda m: m.redrive(),
            lambda m: m.deliver(data=ready(m)),
            lambda m: m.deliver(data=ready(m, retry=True)),
        ],
    )


def test_redrive_leaves_a_running_job_alone(job):
    """Defect 2 ("two live runs of one job"): a redrive deleted a running job's record, and
    the redriven copy started beside the run."""
    replay(
        job,
        [
            lambda m: m.new_job(copies=2),
            lambda m: m.deliver(data=0),
            lambda m: m.redrive(),
            lambda m: m.deliver(data=ready(m)),
        ],
    )


def test_redrive_leaves_a_revoked_job_revoked(job):
    """Defect 2 ("the REVOKED record became None"): a redrive deleted a revoked job's
    record, so its message would run."""
    replay(
        job,
        [
            lambda m: m.new_job(copies=1),
            lambda m: m.revoke(),
            lambda m: m.redrive(),
            lambda m: m.deliver(data=ready(m)),
        ],
    )


def test_a_claim_applied_but_answered_with_an_error_is_not_skipped(job):
    """Defect 3 ("the job succeeded without its side effect"): once()'s claim was applied,
    its answer lost, botocore's repeat refused; the effect was skipped for good."""
    replay(
        job,
        [
            lambda m: m.new_job(copies=2),
            lambda m: m.deliver(data=0),
            lambda m: m.fault(skip=0),
            lambda m: m.work(data=0, outcome="small", crash="no"),
        ],
    )


def test_a_chord_claim_applied_but_answered_with_an_error_still_sends_the_body(model_env):  # noqa: F811
    """Defect 3 ("every part reported, and no body sent"): the last part's claim of the
    chord was applied, its answer lost, the repeat refused; nobody sent the body."""
    ChordModel.env = model_env
    chord = ChordModel()
    replay(
        chord,
        [
            lambda c: c.new_chord(),
            lambda c: c.finish_part(data=0),
            lambda c: c.finish_part(data=1),
            lambda c: c.fault(skip=3),
            lambda c: c.finish_part(data=2),
        ],
    )


def test_a_lost_delivery_never_fails_a_job_another_run_holds(job):
    """Found by the model beyond the issue's list ("a delivery that never ran ended ...'s
    job"): a copy of the job whose process died before it started, on its message's last
    receive, recorded FAILURE over the job another run was running."""
    replay(
        job,
        [
            lambda m: m.new_job(copies=2),
            lambda m: m.deliver(data=0),
            lambda m: m.lost_on_last_receive(data=0),
        ],
    )


def test_a_run_killed_inside_once_does_not_make_the_next_skip_the_effect(job):
    """Defect 8 ("the job succeeded without its side effect"): a run killed inside once()
    kept its claim; the job's next run (its message delivered again) found the key held,
    skipped the effect, and the job ended SUCCESS without it."""
    replay(
        job,
        [
            lambda m: m.new_job(copies=2),
            lambda m: m.deliver(data=0),
            lambda m: m.deliver(data=0),  # the copy: refused, the lease is held
            lambda m: m.work(data=0, outcome="small", crash="before effect"),
            lambda m: m.deliver(data=0),  # the killed run's message, again
            lambda m: m.work(data=0, outcome="small", crash="no"),
        ],
    )


def test_the_losing_finisher_never_replaces_the_winners_large_result(job):
    """Defect 4 ("does not match its sha256" on read, or "the stored result is not the
    winning run's"): a wedged run and its successor both finish with a large result; the
    loser's PutObject had replaced the winner's object before its record write was
    refused."""
    replay(
        job,
        [
            lambda m: m.new_job(copies=1),
            lambda m: m.deliver(data=0),
            lambda m: m.wedge(data=0, redelivered=True),  # its message comes back: a new run
            lambda m: m.work(data=1, outcome="large", crash="no"),  # the new run wins
            lambda m: m.work(data=0, outcome="large", crash="no"),  # the wedged one, late
        ],
    )
