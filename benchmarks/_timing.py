"""Timing helper shared by the benchmarks: the median of repeated runs after one warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def seconds(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls; the first (allocator, thread pool, lazy init) is untimed."""
    fn()
    return statistics.median(seconds(fn) for _ in range(repeats))
