"""Which random subnets a sandwich step trains besides the largest and the smallest.

- ``uniform`` (the default): each drawn uniformly from the space (BigNAS, Once-for-All).
- ``complexity`` (after ElasticViT's complexity-aware sampling, Tang et al., 2023): subnets of similar size in
  adjacent steps, sweeping the whole size range over the run. The space's archs are binned by size (``BINS``
  quantile bins of their approximate parameter count over a seeded pool); the bin of step ``t`` walks up and down
  the bins one at a time, ``STEPS_PER_BIN`` steps each, and the step's students are drawn from its bin. Large
  size jumps between steps pull the shared weights in conflicting directions, which is what it avoids.

Both are functions of (seed, step), as a resumed run requires.
"""
from __future__ import annotations

import random
from collections.abc import Callable

from nas import registry
from nas.space import Arch, SearchSpace

BINS = 8
STEPS_PER_BIN = 10
POOL = 2000

Sampler = Callable[[SearchSpace, int, int, int], list[Arch]]   # (space, seed, step, n) -> archs
SAMPLERS: dict[str, Sampler] = {}


def sampler(name: str) -> Callable[[Sampler], Sampler]:
    def register(fn: Sampler) -> Sampler:
        return registry.add(SAMPLERS, name, fn, "subnet sampler")

    return register


def _rng(seed: int, step: int) -> random.Random:
    return random.Random(seed * 1_000_003 + step)


@sampler("uniform")
def uniform(space: SearchSpace, seed: int, step: int, n: int) -> list[Arch]:
    rng = _rng(seed, step)
    return [space.sample(rng=rng) for _ in range(n)]


def approx_params(arch: Arch) -> float:
    """An arch's size for binning: the weights of its blocks' MLPs (2 w^2 r each) plus 4 w^2 per attention block
    (its projections), which is what the parameter count grows with (exact counts live with the latency ops)."""
    total = 0.0
    for b in arch.blocks():
        w = b.width
        total += 2 * w * w * b.mlp_ratio + (4 * w * w if b.kind == "3d" else 0)
    return total


_BINS: dict[tuple[str, int], list[list[Arch]]] = {}


def _size_bins(space: SearchSpace, seed: int) -> list[list[Arch]]:
    key = (space.name, seed)
    if key not in _BINS:
        rng = random.Random(seed * 7_919 + 17)
        pool = sorted((space.sample(rng=rng) for _ in range(POOL)), key=approx_params)
        _BINS[key] = [pool[i * POOL // BINS:(i + 1) * POOL // BINS] for i in range(BINS)]
    return _BINS[key]


@sampler("complexity")
def complexity(space: SearchSpace, seed: int, step: int, n: int) -> list[Arch]:
    bins = _size_bins(space, seed)
    phase = (step // STEPS_PER_BIN) % (2 * BINS - 2)        # 0 1 .. BINS-1 .. 1 0 1 ..
    index = phase if phase < BINS else 2 * BINS - 2 - phase
    rng = _rng(seed, step)
    return [rng.choice(bins[index]) for _ in range(n)]
