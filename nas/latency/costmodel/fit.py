"""Fitting the cost model: weighted least squares on log(predicted / published), a Gaussian prior at 1 on the
multipliers' logs, a few deterministic restarts."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.latency.costmodel.model import MULTIPLIED, CostModel
from nas.latency.costmodel.published import Published
from nas.latency.trace import CATEGORIES, OpRecord

PRIOR_STRENGTH = 0.3


class OpArrays:
    """One model's ops as arrays, for fast evaluation inside the optimiser."""

    def __init__(self, records: Sequence[OpRecord]):
        kept = [r for r in records if r.category in CATEGORIES]
        self.category = np.array([CATEGORIES.index(r.category) for r in kept], dtype=np.int64)
        self.gflop = np.array([r.flops / 1e9 for r in kept])
        self.mb = np.array([r.bytes / 1e6 for r in kept])

    def predict(self, theta: np.ndarray) -> float:
        peak, bandwidth, per_op, fixed = np.exp(theta[:4])
        multiplier = np.exp(np.concatenate([[0.0], theta[4:]]))[self.category]  # CATEGORIES[0] is DENSE
        return fixed + float(np.sum(np.maximum(self.gflop / peak, self.mb * multiplier / bandwidth) + per_op))


_THETA0 = np.array([np.log(7.0), np.log(60.0), np.log(1e-3), np.log(0.2)] + [0.0] * len(MULTIPLIED))


def fit_theta(models: Sequence[OpArrays], latency: np.ndarray, weight: np.ndarray) -> np.ndarray:
    from scipy.optimize import least_squares

    def residuals(theta: np.ndarray) -> np.ndarray:
        predicted = np.array([m.predict(theta) for m in models])
        return np.concatenate([weight * np.log(predicted / latency), PRIOR_STRENGTH * theta[4:]])

    best = None
    for seed in range(4):  # a few deterministic restarts: the max() makes the loss piecewise smooth
        start = _THETA0 + (np.random.RandomState(seed).randn(len(_THETA0)) * 0.5 if seed else 0.0)
        result = least_squares(residuals, start)
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    return best.x


def model_from_theta(device: str, theta: np.ndarray, fit: dict[str, Any]) -> CostModel:
    peak, bandwidth, per_op, fixed = (float(v) for v in np.exp(theta[:4]))
    multipliers = {c: float(np.exp(t)) for c, t in zip(MULTIPLIED, theta[4:])}
    return CostModel(device, peak, bandwidth, per_op, fixed, multipliers, fit)


def fit_cost_model(device: str, rows: Sequence[Published], traces: Sequence[Sequence[OpRecord]],
                   fit_info: dict[str, Any] | None = None) -> CostModel:
    arrays = [OpArrays(t) for t in traces]
    theta = fit_theta(arrays, np.array([r.latency_ms for r in rows]), np.array([r.weight for r in rows]))
    return model_from_theta(device, theta, dict(fit_info or {}))
