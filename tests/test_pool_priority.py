"""Pool processes run below the consumer's priority (tasks.worker.pool_priority): Celery
sends worker_process_init in every pool process it starts (Celery's signals documentation),
and there the process lowers its own priority by WORKER_POOL_NICE. Checked in a forked
process, as the prefork pool makes them, without starting a worker."""

from __future__ import annotations

import os

import pytest
from celery import signals

from tasks.app_factory import create_app
from tasks.ops.settings import Settings


def _nice_in_a_pool_process(env: dict[str, str]) -> int:
    """The priority a process forked from this one has after worker_process_init."""
    app = create_app(Settings.from_env(env))
    assert app.middleware is not None  # the worker makes its list before the pool forks
    app.set_current()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the pool process
        try:
            signals.worker_process_init.send(sender="test@host")
            os.write(write, str(os.getpriority(os.PRIO_PROCESS, 0)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    value = int(os.read(read, 32))
    os.close(read)
    return value


@pytest.mark.parametrize(("env", "lower_by"), [({}, 5), ({"WORKER_POOL_NICE": "0"}, 0)])
def test_a_pool_process_runs_below_the_consumer(env, lower_by):
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert _nice_in_a_pool_process(env) == min(mine + lower_by, 19)


@pytest.mark.parametrize(
    ("env", "pool"), [({}, "prefork"), ({"WORKER_POOL": "threads"}, "threads")]
)
def test_the_pool_is_a_setting_that_celery_worker_reads(env, pool):
    # Celery's `worker_pool` setting: `celery worker` uses it unless --pool says otherwise.
    assert create_app(Settings.from_env(env)).conf.worker_pool == pool
    with pytest.raises(ValueError):
        Settings.from_env({"WORKER_POOL": "gevent"})
