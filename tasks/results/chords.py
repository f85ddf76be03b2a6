"""How a chord completes, on the record's group and chord items (tasks.results.groups).

Every part that ends counts itself with two small writes (JobRecords.report_chord_part);
the part that brings the counter to the chord's size (Celery announces it with
set_chord_size) claims the chord, reads every member's record with BatchGetItem, and sends
the body with their results, or fails it with a ChordError. Nothing waits on a result it
polls for, so no chord shape can hold a worker process: the longest wait is
chord_join_bound(). The result backend (tasks.results.backend) takes these methods in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from celery import states
from celery.canvas import maybe_signature
from celery.exceptions import ChordError
from celery.result import AsyncResult, ResultSet
from kombu.utils.uuid import uuid

from tasks.results.groups import ChordCount

log = logging.getLogger(__name__)

# How long one caller may hold the right to send a chord's body before another may:
# this plus the join bound (reading 10,000 records takes 100 BatchGetItem calls).
CHORD_LEASE_SECONDS = 30
# The join bound when result_chord_join_timeout is unset: Celery's own default.
DEFAULT_CHORD_JOIN_SECONDS = 3.0


class ChordBackend:
    """The chord part of DynamoDBJobBackend (it provides `app`, `records`, `read_metas`,
    `restore_group` and Celery's BaseBackend methods)."""

    app: Any
    records: Any

    def apply_chord(self, header_result_args, body, **kwargs) -> None:
        self.ensure_chords_allowed()
        header_result = self.app.GroupResult(*header_result_args)
        header_result.save(backend=self)
        self.records.create_chord(header_result.id, len(chord_leaves(header_result)))

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        # Celery calls this before it sends the header's last task, so the part that
        # ends last always sees the size. It also calls it for a group that ends a chain
        # in a header: that group is no chord (its parts report to the enclosing one).
        if not self.records.set_chord_size(group_id, int(chord_size)):
            log.debug("set_chord_size(%s, %s): no chord with that id", group_id, chord_size)

    def chord_join_bound(self) -> float:
        """The longest a chord's completion waits for a member's record: Celery's
        result_chord_join_timeout (3 s by default), never unbounded."""
        timeout = self.app.conf.result_chord_join_timeout
        return float(timeout) if timeout and timeout > 0 else DEFAULT_CHORD_JOIN_SECONDS

    def chord_lease_seconds(self) -> int:
        return int(self.chord_join_bound()) + CHORD_LEASE_SECONDS

    def on_chord_part_return(self, request, state, result, **kwargs) -> None:
        group_id = getattr(request, "group", None)
        if not group_id or not getattr(request, "chord", None):
            return
        callback = maybe_signature(request.chord, app=self.app)
        count = self.records.report_chord_part(group_id, request.id, state)
        if count.gone:
            self.end_chord(
                group_id,
                callback,
                ChordError(
                    f"chord {group_id} can no longer complete: its record is gone (its "
                    "GroupResult was deleted, or it expired after result_expires)"
                ),
            )
            return
        if count.fired:
            return
        if state in states.PROPAGATE_STATES:
            # Fail the body at once (Celery names the member that failed first in time),
            # going by the member's record: a duplicate delivery cannot change its outcome.
            meta = self.get_task_meta(request.id, cache=False)
            if meta["status"] in states.PROPAGATE_STATES:
                if not self.end_chord(
                    group_id,
                    callback,
                    dependency_error(request.id, self.exception_to_python(meta["result"])),
                ):
                    self.complete_chord(group_id, callback, count)
                return
        if count.size is not None and count.done >= count.size:
            self.complete_chord(group_id, callback, count)

    def end_chord(self, group_id: str, callback, error: ChordError) -> bool:
        """Fail the body with `error` unless someone else holds or has fired the chord."""
        if not self.records.claim_chord(group_id, self.chord_lease_seconds(), uuid()):
            return False
        self.finish_chord(group_id, callback, None, error)
        return True

    def complete_chord(self, group_id: str, callback, seen: ChordCount) -> None:
        """Claim the chord and send its body, or its error, if every member has ended."""
        token = uuid()
        lease = self.chord_lease_seconds()
        if not self.records.claim_chord(group_id, lease, token):
            # Someone holds it. A live holder looks at the counter again after it lets go,
            # so it sees this part; but a duplicate may be the redelivery of a holder that
            # died, whose lease nobody else would wait out.
            if not seen.duplicate or not self.await_chord_lease(group_id, lease):
                return
            if not self.records.claim_chord(group_id, lease, token):
                return
        done = seen.done
        while True:
            outcome = self.chord_outcome(group_id)
            if outcome is not None:
                self.finish_chord(group_id, callback, *outcome)
                return
            # The counter ran ahead of the members (a duplicate report counts again):
            # let go, and look again only if a part reported meanwhile.
            self.records.release_chord(group_id, token)
            now = self.records.read_chord(group_id)
            if now is None or now.fired or now.done <= done:
                return
            done = now.done
            if not self.records.claim_chord(group_id, lease, token):
                return

    def chord_outcome(self, group_id: str) -> tuple[list | None, ChordError | None] | None:
        """(values, None) when every member succeeded, (None, error) when the chord cannot
        complete, None while a member has not ended yet. Bounded: BatchGetItem of the
        members' records, and at most chord_join_bound() of waiting for records that their
        members reported finished."""
        header = self.restore_group(group_id, cache=False)
        if header is None:
            return None, ChordError(f"GroupResult {group_id} no longer exists")
        ids = [leaf.id for leaf in chord_leaves(header)]
        metas = self.read_metas(ids)
        unfinished = [i for i in ids if metas[i]["status"] not in states.READY_STATES]
        if unfinished and not self.failed_members(ids, metas):
            if len(self.records.reported_parts(group_id, unfinished)) < len(unfinished):
                return None
            # Each reported its end after its record was written: wait a little, then
            # give up on records that are gone (forgotten, expired, or never stored).
            deadline = time.monotonic() + self.chord_join_bound()
            while unfinished and time.monotonic() < deadline:
                time.sleep(min(0.25, max(deadline - time.monotonic(), 0)))
                metas.update(self.read_metas(unfinished))
                unfinished = [
                    i for i in unfinished if metas[i]["status"] not in states.READY_STATES
                ]
            if unfinished and not self.failed_members(ids, metas):
                member = unfinished[0]
                return None, ChordError(
                    f"Dependency {member} ended but its result record is "
                    f"{'missing' if metas[member]['status'] == states.PENDING else 'unfinished'}"
                    f" after {self.chord_join_bound():g}s (chord members must not ignore "
                    f"their results; {len(unfinished)} of {len(ids)} members affected)"
                )
        failed = self.failed_members(ids, metas)
        if failed:
            first = min(failed, key=lambda meta: meta.get("date_done") or "")
            return None, dependency_error(
                first["task_id"], self.exception_to_python(first["result"])
            )
        return chord_values(header.results, metas), None

    @staticmethod
    def failed_members(ids: list[str], metas: dict[str, dict]) -> list[dict]:
        return [metas[i] for i in ids if metas[i]["status"] in states.PROPAGATE_STATES]

    def await_chord_lease(self, group_id: str, lease: int) -> bool:
        """Wait (at most `lease` seconds) for another's claim to lapse; False if it fired."""
        deadline = time.monotonic() + lease + 1
        while time.monotonic() < deadline:
            now = self.records.read_chord(group_id)
            if now is None or now.fired:
                return False
            if not now.lease_until or now.lease_until < time.time():
                return True
            time.sleep(1.0)
        return False

    def finish_chord(
        self, group_id: str, callback, values: list | None, error: ChordError | None
    ) -> None:
        if error is None:
            try:
                # The body keeps the id Celery gave it when the chord was built: sent
                # before the chord is marked fired, so a crash in between re-sends it
                # under the same id instead of losing it.
                self.send_chord_body(callback, values)
            except Exception as exc:
                error = ChordError(f"Callback error: {exc!r}")
                error.__cause__ = exc
        if error is not None:
            log.warning("chord %s failed: %s", group_id, error)
            try:
                raise error  # Celery stores the error with the traceback of the stack
            except ChordError as exc:
                self.chord_error_from_stack(callback, exc)
        self.records.mark_chord_fired(group_id)

    def send_chord_body(self, callback, values: list) -> None:
        callback.delay(values)


def chord_leaves(header: ResultSet) -> list[AsyncResult]:
    """The results a chord waits for, in order: a group that ends a chain in the header
    is one result holding its members' results (Celery does not unroll it)."""
    leaves: list[AsyncResult] = []
    for node in header.results:
        if isinstance(node, ResultSet):
            leaves.extend(chord_leaves(node))
        else:
            leaves.append(node)
    return leaves


def chord_values(nodes: Iterable, metas: dict[str, dict]) -> list:
    """The body's argument: each header result's value, a nested group's as a list."""
    return [
        chord_values(node.results, metas)
        if isinstance(node, ResultSet)
        else metas[node.id]["result"]
        for node in nodes
    ]


def dependency_error(task_id: str, exc: Any) -> ChordError:
    """Celery's wording: `Dependency <id> raised <exc!r>`, the member's error as the cause."""
    error = ChordError(f"Dependency {task_id} raised {exc!r}")
    if isinstance(exc, BaseException):
        error.__cause__ = exc
    return error
