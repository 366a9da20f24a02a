"""Rank statistics on constructed cases whose answers are known by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nas.ranking.stats import agreement, default_top_k, kendall_tau, noise_ceiling, spearman_rho, top_k_overlap


def test_one_swapped_pair_of_five():
    score, truth = [1, 2, 3, 4, 5], [1, 2, 3, 5, 4]
    assert kendall_tau(score, truth) == pytest.approx(0.8)          # 9 concordant pairs, 1 discordant, of 10
    assert spearman_rho(score, truth) == pytest.approx(0.9)         # 1 - 6 * (1 + 1) / (5 * 24)
    assert top_k_overlap(score, truth, 2) == 1.0                    # the best two are the same two
    assert top_k_overlap(score, truth, 1) == 0.0                    # but not the best one
    assert kendall_tau(score, [5, 4, 3, 2, 1]) == pytest.approx(-1.0)


def test_intervals_hold_the_value_and_shrink_with_more_archs():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=40)
    score = truth + rng.normal(scale=0.5, size=40)
    wide, narrow = agreement(score[:10], truth[:10], draws=500), agreement(score, truth, draws=500)
    for a in (wide, narrow):
        for i in (a.kendall_tau, a.spearman_rho, a.top_k_overlap):
            assert i.low <= i.value <= i.high
    assert narrow.kendall_tau.high - narrow.kendall_tau.low < wide.kendall_tau.high - wide.kendall_tau.low
    perfect = agreement(truth, truth, draws=200)
    assert perfect.kendall_tau.value == pytest.approx(1.0) and perfect.kendall_tau.low == pytest.approx(1.0)
    assert perfect.top_k_overlap.value == 1.0
    assert agreement(score, truth, draws=200, seed=3) == agreement(score, truth, draws=200, seed=3)


def test_the_noise_ceiling_falls_as_seed_noise_grows():
    truth = np.linspace(40, 70, 20)
    assert noise_ceiling(truth, 0.0) == 1.0
    quiet, loud = noise_ceiling(truth, 0.5), noise_ceiling(truth, 10.0)
    assert 0.9 < quiet <= 1.0 and loud < 0.6


def test_constant_truth_gives_nan_not_a_crash():
    a = agreement([1.0, 2.0, 3.0], [5.0, 5.0, 5.0], draws=100)
    assert math.isnan(a.kendall_tau.value)


def test_default_top_k_is_a_quarter_at_least_two():
    assert default_top_k(3) == 2 and default_top_k(12) == 3 and default_top_k(20) == 5
