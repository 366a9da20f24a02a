"""The reference workload: one fixed op a build times now and then, and ``nas lut check`` times again, so that a
table says how much the machine itself moved while it was measured, and how fast the machine is now."""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from nas.latency.ops import mb4d_op
from nas.space import SearchSpace


def reference_op(space: SearchSpace) -> str:
    """The widest MB4D block of the space's third stage (or last): a mid-sized op whose time moves with the
    machine's load, frequency and memory."""
    s = min(2, space.num_stages - 1)
    return mb4d_op(space, s, max(space.stages[s].widths), max(space.mlp_ratios)).key


def reference_summary(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a build's header says of its reference timings: the median and how far they moved during the build."""
    values = [s["median_ms"] for s in samples]
    med = statistics.median(values)
    return {"samples": list(samples), "median_ms": med, "spread_pct": 100 * (max(values) - min(values)) / med}
