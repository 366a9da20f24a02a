"""The zero-cost proxies: every registered one scores a real network of the space, the same for the same seed."""
from __future__ import annotations

import math

import pytest

from nas.search.zero_cost import ZERO_COST, score, zero_cost


@pytest.fixture(scope="module")
def batch(tiny):
    from nas.data import image_batches

    return next(iter(image_batches("builtin:digits", tiny.input_size, 16, batch_size=16, with_labels=True)))


@pytest.mark.parametrize("name", sorted(ZERO_COST))
def test_each_proxy_is_finite_and_repeats_for_a_seed(name, tiny, tiny_hybrid, batch):
    images, labels = batch
    for space in (tiny, tiny_hybrid):
        for arch in (space.smallest(), space.largest()):
            value = score(name, arch, space, images, labels)
            assert math.isfinite(value), (name, space.name)
            assert score(name, arch, space, images, labels) == value


def test_networks_with_more_paths_have_more_synaptic_flow(tiny, batch):
    images, labels = batch
    assert score("synflow", tiny.largest(), tiny, images, labels) > score("synflow", tiny.smallest(), tiny, images,
                                                                          labels)


def test_a_proxy_name_registers_once():
    with pytest.raises(ValueError, match="already registered"):
        zero_cost("naswot")(lambda model, images, labels: 0.0)
