"""How well one score ranks archs the way another does (torch-free): Kendall's τ, Spearman's ρ and top-k overlap,
each with a bootstrap 95% interval over the archs, and the τ that measurement noise alone allows.

The intervals resample archs with replacement (``bootstrap`` draws, a fixed seed, so a report is reproducible)
and take the 2.5th and 97.5th percentiles: with 12-30 archs a τ of 0.6 can mean anything from 0.3 to 0.85, and a
report that prints the point alone invites reading noise as a verdict.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nas.correlation import kendall_tau, spearman_rho

BOOTSTRAP_DRAWS = 2000
CONFIDENCE = 0.95


def top_k_overlap(score: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray, k: int) -> float:
    """The share of the ``k`` best archs by ``truth`` that are also among the ``k`` best by ``score`` (ties broken
    by position, the same way on both sides)."""
    s, t = np.asarray(score, float), np.asarray(truth, float)
    k = min(k, len(t))
    best = set(np.argsort(-t, kind="stable")[:k].tolist())
    return len(best & set(np.argsort(-s, kind="stable")[:k].tolist())) / k


def default_top_k(n: int) -> int:
    """A quarter of the archs, at least 2: the winners a search would keep."""
    return max(2, round(n / 4))


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


@dataclass(frozen=True)
class Agreement:
    """How ``score`` ranks ``n`` archs against the truth (stand-alone top-1)."""

    n: int
    top_k: int
    kendall_tau: Interval
    spearman_rho: Interval
    top_k_overlap: Interval

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentiles(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    tail = 100 * (1 - CONFIDENCE) / 2
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def agreement(score: Sequence[float], truth: Sequence[float], top_k: int | None = None,
              draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> Agreement:
    """τ, ρ and top-k overlap of ``score`` against ``truth``, each with its bootstrap 95% interval."""
    s, t = np.asarray(score, float), np.asarray(truth, float)
    if len(s) != len(t) or len(t) < 3:
        raise ValueError(f"agreement needs two scores of the same >= 3 archs (got {len(s)} and {len(t)})")
    k = top_k or default_top_k(len(t))
    rng = np.random.default_rng(seed)
    taus, rhos, tops = [], [], []
    for _ in range(draws):             # a draw of few distinct archs can be constant: its NaN is skipped below
        i = rng.integers(0, len(t), len(t))
        taus.append(kendall_tau(s[i], t[i]))
        rhos.append(spearman_rho(s[i], t[i]))
        tops.append(top_k_overlap(s[i], t[i], k))
    return Agreement(n=len(t), top_k=k,
                     kendall_tau=Interval(kendall_tau(s, t), *_percentiles(taus)),
                     spearman_rho=Interval(spearman_rho(s, t), *_percentiles(rhos)),
                     top_k_overlap=Interval(top_k_overlap(s, t, k), *_percentiles(tops)))


def noise_ceiling(truth: Sequence[float], noise_std: float, draws: int = 1000, seed: int = 0) -> float:
    """The τ a perfect predictor would be measured at when the truth itself carries seed-to-seed noise of
    ``noise_std``: the median τ between the measured stand-alone top-1 and a re-draw of it with that noise. A
    report's τ is read against this, not against 1."""
    t = np.asarray(truth, float)
    if noise_std <= 0:
        return 1.0
    rng = np.random.default_rng(seed)
    return float(np.median([kendall_tau(t, t + rng.normal(0, noise_std, len(t))) for _ in range(draws)]))
