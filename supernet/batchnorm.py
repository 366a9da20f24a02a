"""BatchNorm recalibration of an extracted subnet.

A subnet slice of a supernet inherits running statistics that were accumulated over many different subnets,
which do not match its own activations; Once-for-All and EfficientFormer's slimming re-estimate them on a few
thousand training images before evaluating (OFA's ``set_running_statistics``). Weights are untouched.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm's running mean/var by their exact average over ``images`` (batches); returns the
    number of images seen. The model's train/eval mode is restored afterwards."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None          # cumulative moving average: every batch weighs the same
    was_training = model.training
    model.train()
    seen = 0
    try:
        for batch in images:
            model(batch)
            seen += batch.shape[0]
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    if seen == 0:
        raise ValueError("no images to recalibrate BatchNorm with")
    return seen
