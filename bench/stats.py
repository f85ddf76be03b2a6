"""Medians, spreads and paired ratios over repeated runs.

A timed figure is measured in several runs, the kinds alternating within each run
(stock, ours, floor, stock, ours, floor, ...), so a machine that slows down mid-bench
slows every kind alike. A ratio is taken pair by pair within a run, then the median of
those ratios is reported: it is steadier than the ratio of two medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def spread(values: Iterable[float]) -> dict:
    """median, min, max and n of `values` (at least one)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


def width(s: dict) -> float:
    return s["max"] - s["min"]


def median_row(rows: list[dict], key: str) -> dict:
    """The run whose `key` is the median one (the lower of the two middle ones for an
    even count): its other figures stay those of one real run."""
    ordered = sorted(rows, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def paired_ratios(
    rows: list[dict], key: str, mine: str, base: str, run_key: str = "run"
) -> dict | None:
    """Spread of mine[key] / base[key] taken run by run (rows of one group, tagged with
    `kind` and `run_key`); None when no run has both with a non-zero base."""
    by_run: dict = {}
    for row in rows:
        by_run.setdefault(row[run_key], {})[row["kind"]] = row
    ratios = [
        pair[mine][key] / pair[base][key]
        for pair in by_run.values()
        if mine in pair and base in pair and pair[base][key]
    ]
    return spread(ratios) if ratios else None


def spread_note(mine: dict, base: dict) -> str | None:
    """A warning when either kind's spread (max - min over runs) is wider than the
    difference between their medians: that difference may be the machine's noise."""
    difference = abs(mine["median"] - base["median"])
    wider = max(width(mine), width(base))
    if wider > difference:
        return f"spread {wider:.3g} wider than the difference {difference:.3g}"
    return None


def number(value: float) -> str:
    """3 significant digits, whole numbers with thousands separators from 100 up."""
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def fmt(s: dict | None, digits: str | None = None, suffix: str = "") -> str:
    """'median (min..max)', or the median alone for a single run; `digits` is a format
    spec (".2f"), else `number`."""
    if s is None:
        return "-"

    def show(v: float) -> str:
        return number(v) if digits is None else format(v, digits)

    med = show(s["median"]) + suffix
    if s["n"] < 2:
        return med
    return f"{med} ({show(s['min'])}..{show(s['max'])}{suffix})"
