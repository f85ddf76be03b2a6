"""bench/waiting_cost.py: the cost of a waiting job per hour, by path (issue 20)."""

from __future__ import annotations

import pytest

from bench import waiting_cost


def test_each_path_costs_what_its_requests_say():
    held, requeue, schedule = waiting_cost.rows(wait_hours=2.0, visibility_timeout=300)
    # A beat every 100 s (a third of 300 s): 36 ChangeMessageVisibilityBatch per hour.
    assert held["requests_per_hour"] == 36
    assert held["dollars_per_hour"] == pytest.approx(36 * 0.40e-6)
    # Four hops an hour, each a receive, a send and a delete.
    assert requeue["requests_per_hour"] == 12
    # Once per job: a 1 KB record write, an invocation, a SendMessage; spread over 2 hours.
    assert schedule["dollars_per_hour"] == pytest.approx((0.625e-6 + 1.0e-6 + 0.40e-6) / 2)
    assert schedule["keeps_running"] == "nothing"


def test_the_schedule_is_the_cheapest_past_25_minutes_and_gets_cheaper_with_the_wait():
    # Break-even with re-enqueueing: ~$2.0e-6 once against $4.8e-6 an hour, about 25 minutes.
    held, requeue, schedule = waiting_cost.rows(wait_hours=0.25)
    assert requeue["dollars_per_hour"] < schedule["dollars_per_hour"] < held["dollars_per_hour"]
    for hours in (0.5, 2, 240):
        held, requeue, schedule = waiting_cost.rows(wait_hours=hours)
        assert schedule["dollars_per_hour"] < requeue["dollars_per_hour"]
        assert schedule["dollars_per_hour"] < held["dollars_per_hour"]
    table = waiting_cost.markdown_table(2.0)
    assert table.count("\n| ") == 5 and "one-time schedule" in table  # header, rule, 3 rows
