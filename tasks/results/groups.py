"""Group and chord items: a saved group's pages, a chord's counter, its parts and its claim.

A group's JSON is split over page items past GROUP_PAGE_CHARS. A chord has one small
counter item (`chord:<group_id>`: how many parts reported, the size Celery announced, the
lease of whoever is firing it, and when it fired) and one small item per reported part
(`chord:<group_id>:<part_id>`): no item grows with the number of parts. How a chord
completes from these is tasks.results.chords.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from botocore.exceptions import ClientError

from tasks.results.encoding import (
    Update,
    is_conditional_failure,
    item_num,
    item_str,
    n,
    s,
    utc_now,
)
from tasks.results.keys import (
    chord_item_id,
    chord_part_id,
    group_item_id,
    group_page_id,
    job_key,
)
from tasks.results.table import JobTable

log = logging.getLogger(__name__)

# One page of a saved group's JSON (10,000 members make ~540 KB: two pages).
GROUP_PAGE_CHARS = 300_000


@dataclass(frozen=True)
class ChordCount:
    """A chord's counter as one write left it."""

    done: int
    size: int | None  # announced by set_chord_size, else the header's number of results
    fired: bool
    lease_until: int | None
    duplicate: bool = False  # this part had reported before
    gone: bool = False  # the counter is gone: deleted with its group, or expired


def chord_count(item: dict, duplicate: bool = False) -> ChordCount:
    size = item_num(item, "chord_size")
    return ChordCount(
        item_num(item, "done") or 0,
        size if size is not None else item_num(item, "leaves"),
        "chord_fired_at" in item,
        item_num(item, "chord_lease"),
        duplicate,
        "kind" not in item,
    )


def split_pages(text: str) -> list[str]:
    """Cut `text` into pages an item can hold (a character is at most 4 bytes of UTF-8)."""
    size = GROUP_PAGE_CHARS if text.isascii() else GROUP_PAGE_CHARS // 4
    return [text[start : start + size] for start in range(0, len(text), size)] or [""]


class GroupRecords(JobTable):
    """The group and chord writes and reads of JobRecords."""

    def group_key(self, group_id: str) -> dict:
        return job_key(group_item_id(group_id))

    def chord_key(self, group_id: str) -> dict:
        return job_key(chord_item_id(group_id))

    def save_group(self, group_id: str, result_text: str) -> None:
        """Save a GroupResult's JSON, over several items if it is longer than one page.

        Pages are written before the group item that counts them, so a reader never finds
        the group naming a page that is not there yet."""
        pages = split_pages(result_text)
        expires_at = self.expires_at()
        for number, page in enumerate(pages[1:], start=1):
            item = {
                **job_key(group_page_id(group_id, number)),
                "kind": s("group_page"),
                "result": s(page),
            }
            if expires_at:
                item["expires_at"] = expires_at
            self.client.put_item(TableName=self.table, Item=item)
        update = Update()
        update.set("kind", s("group"))
        update.set("result", s(pages[0]))
        update.set("pages", n(len(pages)))
        update.set("created_at", s(utc_now()), if_absent=True)
        if expires_at:
            update.set("expires_at", expires_at)
        self.client.update_item(
            TableName=self.table,
            Key=self.group_key(group_id),
            UpdateExpression=update.expression(),
            ExpressionAttributeNames=update.names,
            ExpressionAttributeValues=update.values,
        )

    def read_group(self, group_id: str) -> tuple[str, str | None] | None:
        """A saved group's JSON, its pages put back together, and when it was saved;
        None if it is not there, or a page is gone."""
        item = self.read(group_item_id(group_id))
        if "result" not in item:
            return None
        pages = item_num(item, "pages") or 1
        ids = [group_page_id(group_id, number) for number in range(1, pages)]
        found = self.read_many(ids) if ids else {}
        texts = [item_str(item, "result") or ""]
        for page_id in ids:
            if page_id not in found:
                log.warning("group %s: page %s is gone", group_id, page_id)
                return None
            texts.append(item_str(found[page_id], "result") or "")
        return "".join(texts), item_str(item, "created_at")

    def delete_group(self, group_id: str) -> None:
        """Delete a group, its pages and its chord counter (the chord can no longer fire)."""
        old = (
            self.client.delete_item(
                TableName=self.table, Key=self.group_key(group_id), ReturnValues="ALL_OLD"
            ).get("Attributes")
            or {}
        )
        for number in range(1, item_num(old, "pages") or 1):
            self.client.delete_item(
                TableName=self.table, Key=job_key(group_page_id(group_id, number))
            )
        self.client.delete_item(TableName=self.table, Key=self.chord_key(group_id))

    # --- chords -------------------------------------------------------------------
    def create_chord(self, group_id: str, leaves: int | None) -> bool:
        """The chord's counter, before any header task is sent. `leaves` (the header's
        results) is the size used until Celery announces one with set_chord_size.

        False if the chord exists: a frozen chord applied again reuses its ids, and
        its parts then report as duplicates, so its body is sent once only."""
        item = {
            **self.chord_key(group_id),
            "kind": s("chord"),
            "done": n(0),
            "created_at": s(utc_now()),
        }
        if leaves is not None:
            item["leaves"] = n(leaves)
        expires_at = self.expires_at()
        if expires_at:
            item["expires_at"] = expires_at
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(job_id)"
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                log.warning("chord %s exists already: its body is sent once only", group_id)
                return False
            raise
        return True

    def set_chord_size(self, group_id: str, size: int) -> bool:
        """Record how many parts will report (Celery's set_chord_size). False when no chord
        has this id: Celery also announces the sizes of groups that end a chain in a
        header, whose parts report to the enclosing chord."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self.chord_key(group_id),
                UpdateExpression="SET #size = :size",
                ConditionExpression="attribute_exists(#kind)",
                ExpressionAttributeNames={"#size": "chord_size", "#kind": "kind"},
                ExpressionAttributeValues={":size": n(size)},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def read_chord(self, group_id: str) -> ChordCount | None:
        """The chord's counter as it is now; None if it is gone."""
        item = self.read(chord_item_id(group_id))
        return chord_count(item) if item else None

    def reported_parts(self, group_id: str, part_ids: list[str]) -> set[str]:
        """Which of `part_ids` have reported their end to the chord."""
        found = self.read_many([chord_part_id(group_id, i) for i in part_ids])
        return {i for i in part_ids if chord_part_id(group_id, i) in found}

    def report_chord_part(self, group_id: str, part_id: str, state: str) -> ChordCount:
        """Count a finished part: two small writes, whatever the chord's size.

        The part's own item (written if absent) tells a duplicate report from a first one
        and shows, when the chord fires, which parts have reported. The counter is then
        incremented even for a duplicate: a part that crashed between the two writes must
        still be counted when its message comes back. The counter may therefore run
        ahead, never behind; it only says when to look, and the body is sent only once
        every member's record is finished (tasks.results.chords)."""
        part = {
            **job_key(chord_part_id(group_id, part_id)),
            "kind": s("chord_part"),
            "part_state": s(state),
            "reported_at": s(utc_now()),
        }
        expires_at = self.expires_at()
        if expires_at:
            part["expires_at"] = expires_at
        duplicate = False
        try:
            self.client.put_item(
                TableName=self.table, Item=part, ConditionExpression="attribute_not_exists(job_id)"
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            duplicate = True
        try:
            attributes = self.client.update_item(
                TableName=self.table,
                Key=self.chord_key(group_id),
                UpdateExpression="ADD #done :one",
                ConditionExpression="attribute_exists(#kind)",
                ExpressionAttributeNames={"#done": "done", "#kind": "kind"},
                ExpressionAttributeValues={":one": n(1)},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if is_conditional_failure(exc):  # deleted, or expired: the chord is gone
                return ChordCount(
                    0, None, fired=False, lease_until=None, duplicate=duplicate, gone=True
                )
            raise
        return chord_count(attributes, duplicate=duplicate)

    def claim_chord(self, group_id: str, lease_seconds: int, token: str) -> bool:
        """Take the right to send a chord's body (or its error) for `lease_seconds`.

        The body is sent (with its pre-assigned id) before `chord_fired`; a
        claimer that crashes in between leaves a lease that expires, so the
        next redelivered part sends it: the body is never lost, and at most
        re-sent under its own id. Claiming a chord whose counter is gone leaves
        a marker, so that its error is reported once. The caller's `token` is in the
        condition: a claim whose first attempt was applied but answered with an error
        (botocore then retries it) still succeeds for its own caller."""
        now = int(time.time())
        values = {":until": n(now + lease_seconds), ":now": n(now), ":token": s(token)}
        expression = "SET #lease = :until, #claim = :token"
        expires_at = self.expires_at()
        if expires_at:
            values[":expires"] = expires_at
            expression += ", #expires = if_not_exists(#expires, :expires)"
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self.chord_key(group_id),
                UpdateExpression=expression,
                ConditionExpression=(
                    "attribute_not_exists(#fired) AND "
                    "(attribute_not_exists(#lease) OR #lease < :now"
                    " OR #claim = :token)"
                ),
                ExpressionAttributeNames={
                    "#fired": "chord_fired_at",
                    "#lease": "chord_lease",
                    "#claim": "chord_claim",
                    **({"#expires": "expires_at"} if expires_at else {}),
                },
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def release_chord(self, group_id: str, token: str) -> bool:
        """Give a claim back (the chord was not complete after all); only the claimer's."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self.chord_key(group_id),
                UpdateExpression="SET #lease = :zero",
                ConditionExpression="#claim = :token AND attribute_not_exists(#fired)",
                ExpressionAttributeNames={
                    "#lease": "chord_lease",
                    "#claim": "chord_claim",
                    "#fired": "chord_fired_at",
                },
                ExpressionAttributeValues={":zero": n(0), ":token": s(token)},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def mark_chord_fired(self, group_id: str) -> None:
        self.client.update_item(
            TableName=self.table,
            Key=self.chord_key(group_id),
            UpdateExpression="SET #fired = :now REMOVE #lease",
            ExpressionAttributeNames={"#fired": "chord_fired_at", "#lease": "chord_lease"},
            ExpressionAttributeValues={":now": s(utc_now())},
        )
