"""The latency goal's split at STARTED (bench.report): a poll sees STARTED only where
STARTED to SUCCESS outlasts it, so a split over few of a kind's jobs is over its slowest
ones and must not be read as where the p50 difference lies. Pure functions, no emulator."""

from __future__ import annotations

from bench import report


def _series(kind: str, run: int, p50: float, started: float, success: float, seen: int) -> dict:
    return {
        "kind": kind,
        "run": run,
        "via": "delay()",
        "n": 200,
        "p50_ms": p50,
        "p95_ms": p50 * 2,
        "p99_ms": p50 * 3,
        "mean_ms": p50,
        "p50_to_started_ms": started,
        "p50_started_to_success_ms": success,
        "started_seen": seen,
    }


# The three series of each kind in bench/results/2026-12-06.md (its latest.json).
RUN_2026_12_06 = [
    _series("stock", 0, 8.24, 5.63, 4.64, 72),
    _series("ours", 0, 10.04, 6.79, 2.95, 155),
    _series("stock", 1, 5.97, 6.36, 2.95, 21),
    _series("ours", 1, 8.58, 5.80, 2.93, 130),
    _series("stock", 2, 5.76, 6.05, 2.88, 12),
    _series("ours", 2, 8.58, 5.71, 2.88, 168),
]


def _summary(rows: list[dict]) -> dict[str, dict]:
    return {r["kind"]: r for r in report.summaries({"latency": rows})["latency_summary"]}


def test_a_split_over_few_jobs_is_not_read_as_where_the_difference_lies():
    rows = _summary(RUN_2026_12_06)
    assert rows["stock"]["started_seen"] == 21  # the median series: 21 of 200
    why = report._latency_why(rows["ours"], rows["stock"])
    assert "stock saw STARTED in 21 of 200 jobs" in why
    assert "does not compare the two kinds" in why
    assert "the difference is mostly in" not in why


def test_a_split_over_most_jobs_still_says_where_the_difference_lies():
    rows = [
        {**r, "started_seen": 190, "p50_to_started_ms": r["p50_to_started_ms"] - 1}
        if r["kind"] == "stock"
        else r
        for r in RUN_2026_12_06
    ]
    summary = _summary(rows)
    why = report._latency_why(summary["ours"], summary["stock"])
    assert "the difference is mostly in" in why
    assert "does not compare" not in why


def test_the_latency_table_shows_how_many_jobs_the_split_covers():
    machine = dict.fromkeys(("date", "cpu", "cores", "python", "celery", "kombu", "boto3"), "x")
    results = {"machine": {**machine, "node": "x"}, "settings": {"runs": 3}}
    results["latency"] = RUN_2026_12_06
    results.update(report.summaries(results))
    text = report.markdown(results)
    assert "| STARTED seen |" in text
    assert "| 21 of 200 |" in text and "| 155 of 200 |" in text
