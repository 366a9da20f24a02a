"""Placeholder weights for timed networks (``nas.latency.weights.pooled_init``): same shapes and magnitudes as a
real initialisation, finite outputs, and no random numbers drawn."""
from __future__ import annotations

import math

import pytest
import torch

from nas.latency.ops import space_ops
from nas.latency.weights import _POOL_SIZE, pooled_init
from supernet.static import EfficientFormerNet


def test_a_timed_network_has_real_shapes_sane_values_and_draws_no_random_numbers(tiny):
    arch = tiny.largest()
    real = EfficientFormerNet.from_arch(arch, tiny)
    rng = torch.get_rng_state()
    with pooled_init():
        pooled = EfficientFormerNet.from_arch(arch, tiny)
    assert torch.equal(torch.get_rng_state(), rng), "a fill went to the global generator"
    real_params, pooled_params = dict(real.named_parameters()), dict(pooled.named_parameters())
    assert {k: v.shape for k, v in real_params.items()} == {k: v.shape for k, v in pooled_params.items()}
    for name, p in pooled_params.items():
        r = real_params[name]
        if r.min() < r.max():     # a random init: the pool gives the same spread (a uniform of the same std)
            assert p.std().item() == pytest.approx(r.std().item(), rel=0.35), name
            assert not torch.equal(p, r)
        else:               # constants (zeros, ones, layer scales) are set as they are
            assert torch.equal(p, r), name
    # buffers the forward needs (attention bias indices, BatchNorm statistics) are the real ones
    for (name, b), (_, rb) in zip(pooled.named_buffers(), real.named_buffers()):
        assert torch.equal(b, rb), name
    with torch.no_grad():
        out = pooled.eval()(torch.randn(2, 3, tiny.input_size, tiny.input_size))
    assert torch.isfinite(out).all()


def test_every_op_kind_builds_under_pooled_init(tiny):
    for op in {op.kind: op for op in space_ops(tiny)}.values():
        with pooled_init():
            module, x = op.build(1)
        with torch.no_grad():
            assert torch.isfinite(module(x)).all(), op.key


def test_a_tensor_larger_than_the_pool_is_filled_everywhere_within_the_range():
    t = torch.full((_POOL_SIZE + 12_345,), math.nan)
    with pooled_init():
        torch.nn.init.uniform_(t, -0.5, 0.25)
        u = torch.empty(1000).normal_(3.0, 0.1)
    assert torch.isfinite(t).all() and t.min() >= -0.5 and t.max() <= 0.25
    assert u.mean().item() == pytest.approx(3.0, abs=0.02) and u.std().item() == pytest.approx(0.1, rel=0.1)
