"""Chaos: side-effect jobs while pool processes and workers are killed and the emulator freezes.

Many jobs (tests/chaos_jobs.py) each do one side effect under `once`. Meanwhile a seeded
schedule SIGKILLs pool processes, SIGKILLs whole workers (an out-of-memory kill of the
container), SIGTERMs workers (scale-in, with a short shutdown deadline) and freezes moto's
server (SIGSTOP, then SIGCONT 3 s later); a supervisor loop starts a worker for each one
killed or stopped. At the end, what `once` promises (docs/guarantees.md):

* every job is SUCCESS, written once (no second finisher's write was refused);
* every job's side effect happened;
* twice only where the run that did it first died between the effect and its mark: its
  process was one this test killed (or whose worker it stopped), and it never wrote `marked`;
* nothing is left in the queue or the DLQ.

CHAOS_SEED=<n> replays another schedule (the timing of the processes still varies); the
schedule and what each run did are written to test-output/chaos-<seed>-<run id>.log.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from celery import states

from tests.chaos_jobs import side_effect
from tests.conftest import MOTO_PORT, OUTPUT, RUN_ID, Worker, wait_until
from tests.faults import (
    all_terminal,
    drained,
    emulator_pid,
    frozen,
    pool_processes,
    side_queue,
    statuses,
    submit,
)

pytestmark = [pytest.mark.integration, pytest.mark.fault]

SEED = int(os.environ.get("CHAOS_SEED") or 20240917)
JOBS = 60
WORKERS = 2  # each with 2 pool processes
VISIBILITY = 6  # s: a killed worker's messages come back this soon; the run lease as long
MAX_RECEIVE = 10  # a job survives many kills before its message would go to the DLQ
SHUTDOWN_DEADLINE = 1  # s: some SIGTERMs cut running jobs off and hand them back
FREEZE = 3.0  # s the emulator stays frozen
# The schedule: each fault this many times (while jobs remain), a seeded gap apart.
STRIKES = {"kill_child": 6, "kill_worker": 2, "term_worker": 2, "freeze": 2}
GAP = (0.8, 2.0)
# s each of a job's four steps takes (tests/chaos_jobs.py): some jobs outlast the shutdown
# deadline, and kills land on either side of the effect and of its mark.
WORK = (0.1, 0.35)
POLL = 0.3
BUDGET = 100  # s from the first job sent to the last job finished
STOP_WITHIN = SHUTDOWN_DEADLINE + 20  # s a SIGTERMed worker may take to exit


@dataclass
class Run:
    """One run of a job, as its journal lines tell it."""

    token: str
    pid: int
    events: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"run {self.token[:8]} (pid {self.pid}): {' > '.join(self.events)}"


def read_runs(out: Path, job_id: str) -> tuple[list[Run], list[Run]]:
    """(every run in the order it started, the runs that did the effect in effect order)."""
    path = out / f"{job_id}.jsonl"
    runs: dict[str, Run] = {}
    effects: list[Run] = []
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        entry = json.loads(line)
        run = runs.setdefault(entry["run"], Run(entry["run"], entry["pid"]))
        run.events.append(entry["event"])
        if entry["event"] == "effect":
            effects.append(run)
    return list(runs.values()), effects


def running_pids(out: Path) -> set[int]:
    """Pids in the middle of a run: its latest journal line is not `done`."""
    latest: dict[int, tuple[float, str]] = {}
    for path in out.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["at"] >= latest.get(entry["pid"], (0.0, ""))[0]:
                latest[entry["pid"]] = (entry["at"], entry["event"])
    return {pid for pid, (_, event) in latest.items() if event != "done"}


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Chaos:
    """Keeps WORKERS workers serving and strikes them (or the emulator) on a seeded schedule."""

    def __init__(
        self,
        start_worker: Callable[..., Worker],
        env: dict[str, str],
        rng: random.Random,
        out: Path,
        journal: Path,
    ) -> None:
        self.start_worker, self.env, self.rng, self.out = start_worker, env, rng, out
        self.serving: list[Worker] = []
        self.stopping: list[tuple[Worker, float]] = []  # SIGTERMed, and when
        self.stopped: list[tuple[Worker, int | None]] = []
        self.everyone: list[Worker] = []
        self.killed: set[int] = set()  # pids killed, or whose worker was killed or stopped
        self.struck: Counter = Counter()
        self.crashed: list[str] = []  # workers that died without being struck
        # One of each kind first (so each lands while jobs run), then the rest; seeded orders.
        first, rest = list(STRIKES), [k for k, times in STRIKES.items() for _ in range(times - 1)]
        self.rng.shuffle(first)
        self.rng.shuffle(rest)
        self.schedule = first + rest
        self.began = time.monotonic()
        self.journal = journal.open("w")

    def note(self, text: str) -> None:
        self.journal.write(f"{time.monotonic() - self.began:7.2f} {text}\n")
        self.journal.flush()

    def describe(self, run: Run) -> str:
        return f"{run}{' [killed]' if run.pid in self.killed else ''}"

    def staff(self) -> None:
        """Replace workers that died, reap stopped ones: WORKERS serving again."""
        for worker in [w for w in self.serving if not w.alive()]:
            self.serving.remove(worker)
            self.crashed.append(f"{worker.name} exited with {worker.proc.returncode}")
            self.note(f"worker {worker.name} died on its own ({worker.proc.returncode})")
        for worker, since in list(self.stopping):
            if not worker.alive() or time.monotonic() - since > STOP_WITHIN:
                self.stopping.remove((worker, since))
                code = worker.proc.returncode if not worker.alive() else None
                self.stopped.append((worker, code))
                self.note(f"worker {worker.name} stopped: exit {code}")
        while len(self.serving) < WORKERS:
            worker = self.start_worker(concurrency=2, env=self.env)
            self.serving.append(worker)
            self.everyone.append(worker)
            self.note(f"worker {worker.name} ready (pid {worker.proc.pid})")

    def strike(self) -> bool:
        """The next fault of the schedule; False once there is none left."""
        if not self.schedule:
            return False
        kind = self.schedule.pop(0)
        getattr(self, kind)()
        self.struck[kind] += 1
        return True

    def kill_child(self) -> None:
        """SIGKILL a pool process, one in the middle of a job if there is one."""
        children = {c: w for w in self.serving for c in pool_processes(w.proc.pid) if alive(c)}
        if not children:
            self.note("kill_child: no pool process")
            return
        busy = sorted(set(children) & running_pids(self.out))
        child = self.rng.choice(busy or sorted(children))
        self.killed.add(child)
        os.kill(child, signal.SIGKILL)
        self.note(
            f"SIGKILL pool process {child} ({'busy' if busy else 'idle'}) of {children[child].name}"
        )

    def busy_worker(self) -> Worker:
        """A serving worker with a job in a pool process, if one has; else any."""
        running = running_pids(self.out)
        busy = [w for w in self.serving if running & set(pool_processes(w.proc.pid))]
        return self.rng.choice(busy or self.serving)

    def kill_worker(self) -> None:
        worker = self.busy_worker()
        children = pool_processes(worker.proc.pid)
        self.killed.update(children)
        worker.kill()  # SIGKILL to its process group: the worker and its pool at once
        self.serving.remove(worker)
        self.note(f"SIGKILL worker {worker.name} with pool {children}")

    def term_worker(self) -> None:
        worker = self.busy_worker()
        children = pool_processes(worker.proc.pid)
        # A warm shutdown lets its jobs finish, or kills them at the deadline: either way.
        self.killed.update(children)
        worker.proc.send_signal(signal.SIGTERM)
        self.serving.remove(worker)
        self.stopping.append((worker, time.monotonic()))
        self.note(f"SIGTERM worker {worker.name} with pool {children}")

    def freeze(self) -> None:
        pid = emulator_pid(MOTO_PORT)
        self.note(f"SIGSTOP emulator {pid} for {FREEZE} s")
        with frozen(pid):
            time.sleep(FREEZE)  # the fault's length, not a wait for anything
        self.note("SIGCONT emulator")


def succeeded_and_refused(logs: list[str], job_id: str) -> tuple[int, int]:
    """How many runs logged SUCCESS (Celery's "Task name[id] succeeded in 1.2s: result"),
    and how many SUCCESS writes the record refused (tasks.results.records logs each)."""
    refused = re.compile(rf"job {re.escape(job_id)} is already \w+; a later SUCCESS write")
    return (
        sum(log.count(f"[{job_id}] succeeded in ") for log in logs),
        sum(len(refused.findall(log)) for log in logs),
    )


def judge(
    job_id: str, item: dict, runs: list[Run], effects: list[Run], logs: list[str], chaos: Chaos
) -> list[str]:
    """What is wrong with one job's outcome (nothing, if `once` kept its promise)."""
    status = item.get("status", {}).get("S")
    if status != states.SUCCESS:
        return [f"{job_id}: {status}"]
    problems = []
    succeeded, refused = succeeded_and_refused(logs, job_id)
    if succeeded > 1 or refused:
        problems.append(f"{job_id}: {succeeded} runs succeeded, {refused} SUCCESS refused")
    winner = json.loads(item["result"]["S"])  # the job returns its run's token
    finisher = next((r for r in runs if r.token == winner), None)
    if finisher is None or "done" not in finisher.events:
        problems.append(f"{job_id}: SUCCESS from a run that did not finish: {winner}")
    if not effects:
        problems.append(
            f"{job_id}: SUCCESS but its side effect never happened: "
            + "; ".join(map(chaos.describe, runs))
        )
    for first in effects[:-1]:
        if "marked" in first.events or first.pid not in chaos.killed:
            problems.append(
                f"{job_id}: side effect done again after {chaos.describe(first)}, "
                "whose process was not killed before its mark"
            )
    return problems


@pytest.mark.timeout(240)
def test_side_effects_under_kills_sigterms_and_a_frozen_emulator(stack, start_worker, tmp_path):
    rng = random.Random(SEED)
    queue = side_queue(stack, "chaos", visibility=VISIBILITY, max_receive=MAX_RECEIVE)
    env = {
        **queue.env,
        "JOBS_EXTRA_MODULES": "tests.jobs,tests.chaos_jobs",
        "WORKER_SHUTDOWN_DEADLINE": str(SHUTDOWN_DEADLINE),
    }
    OUTPUT.mkdir(exist_ok=True)
    journal = OUTPUT / f"chaos-{SEED}-{RUN_ID}.log"
    out = tmp_path / "effects"
    out.mkdir()
    chaos = Chaos(start_worker, env, rng, out, journal)

    jobs = [
        submit(stack, side_effect.s(out=str(out), work=round(rng.uniform(*WORK), 2)), queue)
        for _ in range(JOBS)
    ]
    began = time.monotonic()
    chaos.note(f"seed {SEED}: {JOBS} jobs sent; schedule {chaos.schedule}")
    next_strike = began + rng.uniform(*GAP)
    try:
        while not all_terminal(stack, jobs) or chaos.stopping:
            elapsed = time.monotonic() - began
            assert elapsed < BUDGET, (
                f"seed {SEED}: after {elapsed:.0f} s, not finished: "
                f"{Counter(statuses(stack, jobs).values())}; see {journal}"
            )
            chaos.staff()
            if time.monotonic() >= next_strike and chaos.strike():
                next_strike = time.monotonic() + rng.uniform(*GAP)
            time.sleep(POLL)  # the supervisor's polling period
        chaos.note(f"every job finished after {time.monotonic() - began:.1f} s")
        wait_until(lambda: drained(stack, queue.url), 15, message="queue drained")
    finally:
        chaos.journal.close()

    logs = [w.log() for w in chaos.everyone]
    problems: list[str] = []
    died_in_block = 0
    with journal.open("a") as story:
        for job_id in jobs:
            runs, effects = read_runs(out, job_id)
            story.write(f"{job_id}:\n" + "".join(f"    {chaos.describe(r)}\n" for r in runs))
            died_in_block += sum(
                1
                for r in runs
                if "claimed" in r.events and "marked" not in r.events and r.pid in chaos.killed
            )
            problems += judge(job_id, stack.item(job_id) or {}, runs, effects, logs, chaos)

    assert not problems, f"seed {SEED} (see {journal}):\n" + "\n".join(problems)
    # The faults landed where they matter, or the test proves nothing.
    assert set(chaos.struck) == set(STRIKES), (chaos.struck, journal)
    assert died_in_block, f"no run was killed between its claim and its mark; see {journal}"
    assert not chaos.crashed, chaos.crashed
    assert all(code in (0, 1) for _, code in chaos.stopped), chaos.stopped
    assert stack.queue_counts(queue.dlq_url) == (0, 0)
