"""A table's end-to-end correction, its prediction intervals, and the closed loop that refits it.

The sum of an arch's op entries misses what happens between ops (allocation, layout changes, caches warm from the
previous op), so every measured table carries a linear correction fitted on whole archs timed end to end: its
*calibration points* (``LatencyTable.calibration``). Points come from the build (``source: build``) and, later, from
every ``nas search --verify``, ``nas lut validate`` and ``nas lut check``: a table improves with use.

The model: ``measured = drift[session] * (scale * raw + offset)``. A *session* is one run that measured points (the
build, one check, one validate); its factor absorbs how fast the machine was that day, so points of a slower day
refine ``scale`` and ``offset`` without biasing them, and predictions use the factor of the latest session with at
least ``MIN_SESSION_POINTS`` points (``nas lut check`` measures that many): a table recovers from drift without a
rebuild. Sessions with fewer points share the factor of the latest larger session before them.

Prediction intervals are split-conformal on the leave-one-out relative residuals ``measured / predicted - 1`` of
the points: with n residuals, the one-sided upper bound at coverage p is the ``ceil((n + 1) p)``-th smallest, which
covers a new exchangeable arch with probability >= p (``exact``); with too few points for p the largest residual is
used and ``exact`` is false. Per-op spread is not added: the residuals are of archs priced from the same entries, so
they already hold the entries' noise next to the op-sum's model error, which dominates it (``nas lut validate``
reports the empirical coverage). Estimated tables (``kind: estimated``) use the relative residuals of their cost
model's leave-one-family-out cross-validation on published networks.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.latency.fidelity import fidelity
from nas.space import Arch, SearchSpace

MIN_SESSION_POINTS = 3
DEFAULT_COVERAGE = 0.9
POINT_SOURCES = ("build", "ingest", "verify", "validate", "check", "adapt")


def new_session() -> str:
    """A session id: when the measuring run started (sortable)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def make_point(arch: Arch, measured_ms: float, source: str, session: str,
               timing: dict[str, Any] | None = None) -> dict[str, Any]:
    if source not in POINT_SOURCES:
        raise ValueError(f"point source {source!r}; allowed: {', '.join(POINT_SOURCES)}")
    point = {"arch_json": arch.to_json(), "measured_ms": float(measured_ms), "source": source, "session": session,
             "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if timing is not None:
        point["timing"] = timing
    return point


# ------------------------------------------------------------------------------------------------- fitting


def _linear(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y ~ scale * x + offset, least squares on relative error (rows weighted 1/y: every arch counts alike, as in
    the MAPE and the intervals), with offset >= 0: the time between ops adds, it never subtracts. Unconstrained,
    10 noisy points once gave offset -75 ms, and the fastest arch was predicted 2x too fast. Through 0 when fewer
    than 3 points or x constant."""
    w = 1.0 / y
    if len(x) >= 3 and np.ptp(x) > 0:
        a = np.stack([x * w, w], 1)
        (scale, offset), *_ = np.linalg.lstsq(a, np.ones_like(y), rcond=None)
        if offset >= 0 and scale > 0:     # a scale <= 0 (3 noisy points once gave -1.89) prints negative latencies
            return float(scale), float(offset)
    return float(np.sum(w * w * x * y) / np.sum(w * w * x * x)), 0.0


def _session_groups(sessions: Sequence[str]) -> list[str]:
    """Each point's drift group: its session if that has >= MIN_SESSION_POINTS points, else the latest such session
    before it (the first session when there is none)."""
    counts: dict[str, int] = {}
    for s in sessions:
        counts[s] = counts.get(s, 0) + 1
    ordered = sorted(counts)
    big = [s for s in ordered if counts[s] >= MIN_SESSION_POINTS] or ordered[:1]
    group = {}
    for s in ordered:
        before = [b for b in big if b <= s]
        group[s] = before[-1] if before else big[0]
    return [group[s] for s in sessions]


@dataclass
class CorrectionFit:
    scale: float
    offset_ms: float
    drift: dict[str, float]       # per drift group (session id), relative to the first
    current: str                  # the group predictions use: the latest
    residuals: list[float]        # leave-one-out relative residuals, measured / predicted - 1
    mape_before: float
    mape_after: float
    n: int
    note: str | None = None       # why the usual scale + offset was not kept

    @property
    def current_drift(self) -> float:
        return self.drift[self.current]

    def to_header(self, fitted_on: str) -> dict[str, Any]:
        return {"scale": self.scale * self.current_drift, "offset_ms": self.offset_ms * self.current_drift,
                "base_scale": self.scale, "base_offset_ms": self.offset_ms, "drift": self.current_drift,
                "drift_session": self.current, "drift_by_session": self.drift, "n": self.n,
                "mape_before": self.mape_before, "mape_after": self.mape_after,
                "residuals": sorted(self.residuals), "fitted_on": fitted_on,
                **({"note": self.note} if self.note else {})}


def fit_points(raw_ms: Sequence[float], measured_ms: Sequence[float], sessions: Sequence[str]) -> CorrectionFit:
    """Fit ``measured = drift[group] * (scale * raw + offset)`` by alternating least squares (scale and offset given
    the drifts, each drift as the median ratio of its group given them); the first group's drift is 1."""
    x, y = np.asarray(raw_ms, float), np.asarray(measured_ms, float)
    groups = _session_groups(sessions)
    names = sorted(set(groups))
    index = np.array([names.index(g) for g in groups])
    drift = np.ones(len(names))
    scale, offset = _linear(x, y)
    for _ in range(20):
        scale, offset = _linear(x, y / drift[index])
        base = scale * x + offset
        new = np.array([np.median(y[index == k] / base[index == k]) for k in range(len(names))])
        new = new / new[0]
        if np.allclose(new, drift, rtol=1e-6):
            break
        drift = new
    residuals = []
    for i in range(len(x)):          # leave-one-out with the drifts fixed: held-out residuals for the intervals
        keep = np.arange(len(x)) != i
        if keep.sum() == 0:
            break
        s, o = _linear(x[keep], (y / drift[index])[keep])
        residuals.append(float(y[i] / (drift[index[i]] * (s * x[i] + o)) - 1))
    fitted = drift[index] * (scale * x + offset)
    before, after = float(100 * np.mean(np.abs(x - y) / y)), float(100 * np.mean(np.abs(fitted - y) / y))
    # the alternative to a fitted line is the op sums themselves, each later session still at its own drift (a
    # check that found every arch 30% slow moves the predictions whether or not the build's points wanted a line)
    sums_drift = np.array([np.median(y[index == k] / x[index == k]) for k in range(len(names))])
    sums_drift = sums_drift / sums_drift[0]
    on_sums = sums_drift[index] * x
    baseline = float(100 * np.mean(np.abs(on_sums - y) / y))
    if after > baseline:    # the line makes its own points worse: keep none (the op sums), and say so
        return CorrectionFit(1.0, 0.0, {n: float(d) for n, d in zip(names, sums_drift)}, names[-1],
                             [float(v) for v in y / on_sums - 1], before, baseline, int(len(x)),
                             note=f"no correction kept: fitted on {len(x)} points it made them worse "
                                  f"(MAPE {baseline:.1f}% -> {after:.1f}%); predictions are the op sums")
    return CorrectionFit(scale, offset, {n: float(d) for n, d in zip(names, drift)}, names[-1], residuals,
                         before, after, int(len(x)))


def raw_sums(table: Any, space: SearchSpace) -> list[float]:
    """The op sum of each calibration point's arch (``KeyError`` names the first missing op)."""
    from nas.latency.ops import arch_ops

    return [float(sum(table.entries[op.key]["median_ms"] for op in arch_ops(Arch.from_json(c["arch_json"], space),
                                                                          space)))
            for c in table.calibration]


def refit(table: Any, space: SearchSpace, fitted_on: str) -> CorrectionFit | None:
    """Fit the correction on all the table's calibration points and put it in the header (nothing without points).
    Points written before sessions existed count as one session, the build."""
    if not table.calibration:
        return None
    sessions = [c.get("session", "") for c in table.calibration]
    fit = fit_points(raw_sums(table, space), [c["measured_ms"] for c in table.calibration], sessions)
    table.header["correction"] = fit.to_header(fitted_on)
    trust = fidelity(table.header, table.calibration)
    if trust:
        table.header["fidelity"] = trust
    else:
        table.header.pop("fidelity", None)
    if fit.note:
        import sys

        print(f"nas: note: {fit.note}", file=sys.stderr)
    return fit


# ------------------------------------------------------------------------------------------------ intervals


def _ceil(x: float) -> int:
    return math.ceil(round(x, 9))     # (19 + 1) * 0.95 is 19.000000000000004 in floating point, and means 19


def _floor(x: float) -> int:
    return math.floor(round(x, 9))


@dataclass(frozen=True)
class Residuals:
    """Relative residuals (measured / predicted - 1) a prediction's intervals are drawn from."""

    values: tuple[float, ...]      # sorted
    source: str                    # where they come from, in words

    @classmethod
    def of(cls, values: Sequence[float], source: str) -> Residuals:
        return cls(tuple(sorted(float(v) for v in values)), source)

    @property
    def n(self) -> int:
        return len(self.values)

    def _order_stat(self, rank: int) -> tuple[float, bool]:
        """The rank-th smallest (1-based), clipped to the sample; and whether no clipping was needed."""
        if rank > self.n:
            return self.values[-1], False
        if rank < 1:
            return self.values[0], False
        return self.values[rank - 1], True

    def upper(self, predicted_ms: float, coverage: float) -> tuple[float, bool]:
        """One-sided upper bound: P(measured <= bound) >= coverage for an exchangeable new arch (when exact)."""
        r, exact = self._order_stat(_ceil((self.n + 1) * coverage))
        return predicted_ms * (1 + r), exact

    def bounds(self, predicted_ms: float, coverage: float) -> tuple[float, float, bool]:
        """Two-sided interval at ``coverage``, (1 - coverage) / 2 in each tail."""
        tail = (1 - coverage) / 2
        lo, lo_exact = self._order_stat(_floor((self.n + 1) * tail))
        hi, hi_exact = self._order_stat(_ceil((self.n + 1) * (1 - tail)))
        return predicted_ms * (1 + lo), predicted_ms * (1 + hi), lo_exact and hi_exact

    def describe(self, coverage: float, two_sided: bool = True) -> str:
        need = _ceil((2 if two_sided else 1) / (1 - coverage)) - 1
        what = f"a two-sided {coverage:.0%} interval" if two_sided else f"a {coverage:.0%} upper bound"
        exact = "" if self.n >= need else f"; fewer than the {need} points {what} needs: widest residuals used, " \
                                          "coverage not guaranteed"
        return f"{self.n} {self.source}{exact}"


def table_residuals(table: Any, space: SearchSpace) -> Residuals | None:
    """The residuals a table's intervals come from: its correction's, or its cost model's cross-validation for an
    estimated table; ``None`` when it has neither (an old table without calibration points)."""
    header = table.header
    if header.get("kind") == "estimated":
        values = (header.get("estimate") or {}).get("lofo_relative_residuals")
        return Residuals.of(values, "leave-one-family-out residuals of the cost model on published networks") \
            if values else None
    correction = header.get("correction") or {}
    if correction.get("residuals"):
        return Residuals.of(correction["residuals"], "leave-one-out residuals of end-to-end calibration points")
    if len(table.calibration) >= 2:      # a table written before intervals existed: fit its points now
        fit = fit_points(raw_sums(table, space), [c["measured_ms"] for c in table.calibration],
                         [c.get("session", "") for c in table.calibration])
        return Residuals.of(fit.residuals, "leave-one-out residuals of end-to-end calibration points")
    return None
