"""The job record's transitions, as data: who may move a job from which states to which.

Every conditional write of a job item in tasks.results takes the status part of its
condition from this table (`status_condition`), docs/job-record.md's table is rendered from
it (`render_table`; tests/test_transitions.py checks the page), and the DELETE template's
condition is checked against the revoke row. The guard column says, in words, what else the
write's condition asks; tests/test_record_model.py drives the real writes through every
interleaving it can find and checks the invariants below after each step.

Invariants (tests/test_record_model.py):

* at most one live run per job id, outside the documented wedge (a run alive but stuck past
  its lease renewals);
* a terminal record (SUCCESS, FAILURE, REVOKED) never changes, except that `forget` deletes
  any record and `redrive` deletes a FAILURE one so that its message can run again;
* a revoked job never starts;
* the record's `retries` never goes down;
* a large result stored for a job belongs to the run whose record won;
* the listing partition (`list_pk`), where there is one, names the record's current status,
  and only a STARTED record not yet past JOBS_LIST_RUNNING_AFTER has none
  (tasks.results.index_key).
"""

from __future__ import annotations

from dataclasses import dataclass

from celery import states

from tasks.results.encoding import s

NONE = "(none)"  # no item: queued, or unknown (PENDING to a reader)
PROGRESS = "PROGRESS"  # any custom state: a job's progress (Progress.update, update_state)
REJECTED = "RETRY [rejected]"  # a RETRY the gate wrote: no worker has touched the record
# A job deferred until its eta (docs/job-record.md): not a Celery state, and not ready.
SCHEDULED = "SCHEDULED"
TERMINAL = (states.SUCCESS, states.FAILURE, states.REVOKED)
NON_TERMINAL = (NONE, states.PENDING, REJECTED, SCHEDULED, states.STARTED, PROGRESS, states.RETRY)
ANY = (*NON_TERMINAL, *TERMINAL)


@dataclass(frozen=True)
class Transition:
    name: str
    writer: str
    sources: tuple[str, ...]  # the states the write may leave
    target: str  # the state it writes; NONE for a delete
    guard: str = ""  # what the condition asks besides the source state


TRANSITIONS: tuple[Transition, ...] = (
    Transition(
        "start",
        "worker",
        NON_TERMINAL,
        states.STARTED,
        "takes the run lease: no other run holds an unexpired one, or it is this "
        "message again, or this is the retry the holder sent; `retries` never lower",
    ),
    Transition("progress", "worker", NON_TERMINAL, PROGRESS),
    Transition(
        "retry",
        "worker",
        NON_TERMINAL,
        states.RETRY,
        "only the run holding the lease (or a write without one)",
    ),
    Transition(
        "finish",
        "worker",
        NON_TERMINAL,
        "SUCCESS, FAILURE or REVOKED",
        "the first finisher wins (its own write, sent again, still succeeds for it); "
        "a large result is kept under the run's own key",
    ),
    Transition(
        "lost",
        "worker (a delivery that did not run)",
        NON_TERMINAL,
        states.FAILURE,
        "its process was lost on the last receive, or its ETA is out of reach; "
        "not while another run holds the lease",
    ),
    Transition(
        "schedule",
        "worker (deferral of an eta over 15 minutes ahead)",
        (NONE, states.PENDING, REJECTED, states.RETRY, SCHEDULED),
        SCHEDULED,
        "writes `eta` and `schedule`; never over a run (STARTED, PROGRESS) or a finished job; "
        "a duplicate message writes the same again",
    ),
    Transition(
        "renew",
        "worker (heartbeat)",
        (states.STARTED, PROGRESS),
        "(same)",
        "only the run holding the lease",
    ),
    Transition(
        "reject",
        "gate",
        (NONE, states.PENDING, REJECTED),
        REJECTED,
        "not the message's last receive",
    ),
    Transition(
        "reject-final",
        "gate",
        (NONE, states.PENDING, REJECTED),
        states.FAILURE,
        "the message's last receive, or content no worker could run",
    ),
    Transition("revoke", "revoke, DELETE /jobs/{id}", NON_TERMINAL, states.REVOKED),
    Transition(
        "callback", "callbacks", TERMINAL, "(same)", "writes `callback` only, while it is pending"
    ),
    Transition(
        "redrive",
        "redrive (dlq)",
        (states.FAILURE,),
        NONE,
        "only a FAILURE: a running, revoked or finished job keeps its record",
    ),
    Transition("forget", "AsyncResult.forget", ANY, NONE),
)

BY_NAME = {t.name: t for t in TRANSITIONS}

# The placeholders every condition built here uses for the terminal states.
_PLACEHOLDER = {
    states.SUCCESS: ":success",
    states.FAILURE: ":failure",
    states.REVOKED: ":revoked",
    states.PENDING: ":pending",
    states.RETRY: ":retry",
    SCHEDULED: ":scheduled",
}


TERMINAL_STATES = frozenset(TERMINAL)
# The values of `:success, :failure, :revoked` in every "not terminal" condition.
TERMINAL_VALUES = {
    ":success": s(states.SUCCESS),
    ":failure": s(states.FAILURE),
    ":revoked": s(states.REVOKED),
}


def transition(name: str) -> Transition:
    return BY_NAME[name]


# A record that is not terminal (or no record): the status part of every worker write.
NOT_TERMINAL = "attribute_not_exists(#status) OR NOT #status IN (:success, :failure, :revoked)"


def status_condition(name: str) -> str:
    """The status part of a transition's ConditionExpression (`#status` and the
    placeholders :success, :failure, :revoked, :pending, `#rejected`)."""
    sources = set(transition(name).sources)
    if sources == set(ANY):
        return ""
    if sources == set(NON_TERMINAL):
        # No parentheses where DynamoDB's precedence makes them redundant (IN binds tighter
        # than NOT, NOT than AND, AND than OR): the same condition, and dynalite, the bench's
        # emulator, parses each parenthesised group several times over (bench/write_cost.py).
        return NOT_TERMINAL
    if sources == set(TERMINAL):
        return "#status IN (:success, :failure, :revoked)"
    parts = []
    if NONE in sources:
        parts.append("attribute_not_exists(#status)")
    for state in (states.PENDING, states.RETRY, SCHEDULED, *TERMINAL):
        if state in sources:
            parts.append(f"#status = {_PLACEHOLDER[state]}")
    if REJECTED in sources and states.RETRY not in sources:
        parts.append(
            "(attribute_exists(#rejected) AND NOT (#status IN (:success, :failure, :revoked)))"
        )
    leftover = sources - {NONE, states.PENDING, states.RETRY, SCHEDULED, REJECTED, *TERMINAL}
    if leftover:
        raise ValueError(f"{name}: no condition for {sorted(leftover)}")
    return " OR ".join(parts)


# Written by the worker: anything but a terminal state may move on.
WORKER_CONDITION = status_condition("finish")
# Written by the gate: only where no worker has written.
GATE_CONDITION = status_condition("reject")


def allowed(name: str, state: str) -> bool:
    """Whether the transition may leave `state` (NONE for no record): the model's oracle."""
    return state in transition(name).sources


def render_table() -> str:
    """The table as Markdown, for docs/job-record.md (tests/test_transitions.py checks it)."""
    rows = [
        "| transition | written by | from | to | and only if |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in TRANSITIONS:
        sources = (
            "any non-terminal state"
            if set(t.sources) == set(NON_TERMINAL)
            else "any state"
            if set(t.sources) == set(ANY)
            else ", ".join(t.sources)
        )
        rows.append(f"| {t.name} | {t.writer} | {sources} | {t.target} | {t.guard or '-'} |")
    return "\n".join(rows)
