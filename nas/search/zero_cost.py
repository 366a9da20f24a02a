"""Training-free ("zero-cost") proxies of an arch's accuracy, computed on its randomly initialised network: the
published alternatives the capacity proxy is held against (``nas supernet rank``, ``benchmarks/ranking.py``).

Each proxy is a function ``(model, images, labels) -> float`` (higher predicts better) registered by name with
``@zero_cost(name)``; ``score(name, arch, space, images, labels)`` builds the network from a fixed seed and calls
it. Implemented after the papers' reference code:

- ``synflow`` (Tanaka et al., NeurIPS 2020; as a NAS proxy, Abdelfattah et al., ICLR 2021): weights made
  positive, an all-ones input in float64, the output summed and backpropagated; the sum over conv and linear
  weights of |θ · ∂R/∂θ| (reported as its natural log). BatchNorm runs on its running statistics, as the
  reference's BN-free variant.
- ``naswot`` (Mellor et al., ICML 2021): the binary activation codes of a batch of real images at every
  non-linearity (GELU here: the sign of its input); the log-determinant of the codes' Hamming-similarity kernel.
- ``zico`` (Li et al., ICLR 2023): gradients of the loss on two half-batches; per layer, the log of the sum over
  its weights of mean |g| / std g.
- ``grad_norm`` (Abdelfattah et al., ICLR 2021): the sum over conv and linear weights of the gradient's L2 norm on
  one batch.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from nas import registry

Proxy = Callable[[Any, Any, Any], float]
ZERO_COST: dict[str, Proxy] = {}


def zero_cost(name: str) -> Callable[[Proxy], Proxy]:
    def register(fn: Proxy) -> Proxy:
        return registry.add(ZERO_COST, name, fn, "zero-cost proxy")

    return register


PROXY_IMAGES = 64       # training images a proxy sees, one batch


def proxy_batch(data: Any, input_size: int, images: int = PROXY_IMAGES) -> tuple[Any, Any]:
    """The (images, labels) every arch is scored on: ``images`` training images of ``data``, the same for a seed."""
    from nas.data import image_batches

    return next(iter(image_batches(data, input_size, images, batch_size=images, seed=2, with_labels=True,
                                   split="train")))


def _weighted_layers(model: Any) -> list[Any]:
    import torch.nn as nn

    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]


@zero_cost("synflow")
def synflow(model: Any, images: Any, labels: Any) -> float:
    import torch

    model = model.double().eval()
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    model.zero_grad()
    ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64)
    model(ones).sum().backward()
    total = sum(float((m.weight * m.weight.grad).detach().abs().sum()) for m in _weighted_layers(model)
                if m.weight.grad is not None)
    return math.log(total) if total > 0 else -math.inf


@zero_cost("naswot")
def naswot(model: Any, images: Any, labels: Any) -> float:
    import torch
    import torch.nn as nn

    n = images.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64)

    def count(module: Any, inputs: Any, output: Any) -> None:
        codes = (inputs[0].reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.t() + (1 - codes) @ (1 - codes).t())

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.GELU, nn.ReLU))]
    try:
        with torch.no_grad():
            model.train()(images)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])


def _loss(model: Any, images: Any, labels: Any) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy(model.train()(images), labels)


@zero_cost("zico")
def zico(model: Any, images: Any, labels: Any) -> float:
    layers = _weighted_layers(model)
    grads: list[list[np.ndarray]] = [[] for _ in layers]
    for half in (slice(0, len(labels) // 2), slice(len(labels) // 2, len(labels))):
        model.zero_grad()
        _loss(model, images[half], labels[half]).backward()
        for store, m in zip(grads, layers):
            if m.weight.grad is not None:
                store.append(m.weight.grad.detach().reshape(-1).double().numpy())
    score = 0.0
    for store in grads:
        if len(store) < 2:
            continue
        g = np.stack(store)
        std = g.std(axis=0)
        nonzero = std > 0
        total = float(np.sum(np.abs(g).mean(axis=0)[nonzero] / std[nonzero]))
        if total > 0:
            score += math.log(total)
    return score


@zero_cost("grad_norm")
def grad_norm(model: Any, images: Any, labels: Any) -> float:
    model.zero_grad()
    _loss(model, images, labels).backward()
    return sum(float(m.weight.grad.norm()) for m in _weighted_layers(model) if m.weight.grad is not None)


def score(name: str, arch: Any, space: Any, images: Any, labels: Any, num_classes: int | None = None,
          seed: int = 0) -> float:
    """Proxy ``name`` of ``arch``'s network, initialised from ``seed``, on a batch of (images, labels)."""
    import torch

    from supernet.static import EfficientFormerNet

    torch.manual_seed(seed)
    model = EfficientFormerNet.from_arch(arch, space, num_classes)
    return ZERO_COST[name](model, images, labels)
