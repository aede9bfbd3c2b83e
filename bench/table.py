"""Printing benchmark rows as an aligned table or as JSON."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable


def print_rows(rows: list[dict], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps({"benchmark": title, "rows": rows}))
        return
    columns = list(rows[0])
    width = {c: max(len(c), *(len(fmt(r[c])) for r in rows)) for c in columns}
    print(title)
    print("  ".join(c.rjust(width[c]) for c in columns))
    for row in rows:
        print("  ".join(fmt(row[c]).rjust(width[c]) for c in columns))


def fmt(value) -> str:
    if value is None:  # not applicable (e.g. a peer without that variant)
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_best_seconds(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """The fastest of `repeats` calls of each function, called in turn (a, b, c, a, b, c, ...).

    For side-by-side comparisons on a shared machine: its speed drifts between minutes, and
    taking turns gives every contender the same drift; the best call is the one least disturbed
    by the neighbours, where a median of back-to-back calls still carries the minute's drift.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
