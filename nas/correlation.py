"""Rank correlations (torch-free), one definition for every report that orders archs: the ranking check
(``nas.ranking.stats``, with intervals), the latency tables' validation and the benchmarks."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np


def kendall_tau(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Kendall's τ-b (ties counted as scipy does; NaN, silently, when either side is constant)."""
    from scipy.stats import kendalltau

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(a, b).statistic)


def spearman_rho(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's ρ (NaN, silently, when either side is constant)."""
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)
