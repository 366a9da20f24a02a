"""Timing statistics shared by every backend: warm-up, repeat until the median is stable, summarise.

Torch-free, so the Core ML measurement on a Mac uses the same rule as the local backends.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "n": self.n}


@dataclass(frozen=True)
class TimingPolicy:
    """When to stop repeating: after ``min_repeats`` and once two successive rounds move the median by less than
    ``rel_tol``, or at ``max_repeats`` / ``max_seconds``, whichever comes first."""

    # at least min_warmup calls and warmup_seconds: a table's ops run back to back in one busy process, so 3 calls
    # warm an op's primitives and caches; 0.05 s spent ~38 s of a 110 s build on ops of a few ms (issue #29)
    warmup_seconds: float = 0.02
    min_warmup: int = 3
    round_size: int = 10
    min_repeats: int = 20
    max_repeats: int = 400
    max_seconds: float = 1.5
    rel_tol: float = 0.01


def _quantile(sorted_values: list[float], q: float) -> float:
    i = q * (len(sorted_values) - 1)
    lo, hi = int(i), min(int(i) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (i - lo)


DEFAULT_POLICY = TimingPolicy()


def time_until_stable(run: Callable[[], float], policy: TimingPolicy = DEFAULT_POLICY,
                      samples_out: list[float] | None = None) -> Timing:
    """``run()`` executes once and returns its duration in seconds; ``samples_out`` receives the samples (ms)
    after warm-up (``benchmarks/timing_statistics.py`` compares statistics on them)."""
    start, n = time.perf_counter(), 0
    while n < policy.min_warmup or time.perf_counter() - start < policy.warmup_seconds:
        run()
        n += 1
    samples: list[float] = []
    previous = None
    start = time.perf_counter()
    while True:
        samples += [run() for _ in range(policy.round_size)]
        median = statistics.median(samples)
        stable = previous is not None and abs(median - previous) <= policy.rel_tol * median
        if (len(samples) >= policy.min_repeats and stable) or len(samples) >= policy.max_repeats \
                or time.perf_counter() - start > policy.max_seconds:
            break
        previous = median
    if samples_out is not None:
        samples_out.extend(1e3 * s for s in samples)
    return timing_of([1e3 * s for s in samples])


def timing_of(samples_ms: list[float]) -> Timing:
    """Median and 10th/90th percentiles of durations in milliseconds."""
    ordered = sorted(samples_ms)
    return Timing(statistics.median(ordered), _quantile(ordered, 0.1), _quantile(ordered, 0.9), len(ordered))
