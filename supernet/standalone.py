"""One arch trained alone, from scratch, with the supernet's recipe: the reference inherited accuracy is held
against (``nas supernet rank``).

"The same recipe" is ``supernet.recipe`` and ``supernet.batches``, the code supernet training runs: the same
images in the same order for the same seed, timm's optimizer and warmup + cosine schedule over the same number of
steps, label smoothing, mixup/cutmix, mixed precision, gradient accumulation, clipping, EMA and a teacher where the
supernet's configuration has them. The model learns from the labels, as the supernet's largest subnet does; it
starts from random weights (never from ``--init-timm``: the point is what the arch reaches on its own).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn as nn

from nas.space import Arch, SearchSpace
from supernet.batches import StepBatches
from supernet.config import TrainConfig
from supernet.recipe import (
    autocast,
    check_config,
    label_loss,
    load_teacher,
    make_mixup,
    make_optimizer,
    make_scheduler,
    mix_batch,
    mixing_seed,
)
from supernet.static import EfficientFormerNet

CHANNELS_LAST = torch.channels_last


def standalone_config(cfg: TrainConfig, seed: int, epochs: int | None = None) -> TrainConfig:
    """``cfg`` (a supernet's training configuration) as a stand-alone training of ``seed``: no supernet-only
    settings (Gumbel α, timm initialisation), the epochs given or the supernet's."""
    return dataclasses.replace(cfg, seed=seed, epochs=epochs or cfg.epochs, gumbel=False, init_timm=None)


def train_standalone(arch: Arch, space: SearchSpace, cfg: TrainConfig, num_classes: int, device: str = "cpu",
                     on_step: Callable[[int, int], None] | None = None) -> nn.Module:
    """``arch`` of ``space`` trained from scratch by ``cfg`` (use ``standalone_config``); ``on_step(step, total)``
    is called after every optimiser step. Returns the trained model (the EMA's weights with ``ema_decay``)."""
    check_config(cfg, device)
    torch.manual_seed(cfg.seed)              # the initial weights are part of what the seed reproduces
    # channels-last: the same arithmetic, 25-30% faster training steps on CPU for these nets (1 thread, batch 64,
    # tiny and tiny_hybrid archs measured side by side), as timm's --channels-last does on GPUs
    model = EfficientFormerNet.from_arch(arch, space, num_classes).to(device).to(memory_format=CHANNELS_LAST).train()
    batches = StepBatches(cfg, space.input_size)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, batches.steps_per_epoch, batches.total_steps)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    ema = None
    if cfg.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.ema_decay)
    mixup, teacher = make_mixup(cfg, num_classes), load_teacher(cfg, num_classes, device)
    for step, (images, labels) in enumerate(batches.loader(0)):
        scheduler.step_update(step + 1)
        optimizer.zero_grad(set_to_none=True)
        images = images.to(device, memory_format=CHANNELS_LAST)
        for micro, (x, y) in enumerate(zip(images.chunk(cfg.accum_steps),
                                           labels.to(device).chunk(cfg.accum_steps))):
            targets = None
            if mixup is not None:
                x, targets = mix_batch(mixup, x, y, mixing_seed(cfg, step, 0, micro))
            with autocast(cfg, device):
                logits = model(x).float()
            loss = label_loss(cfg, logits, y, targets, teacher, x, device) / cfg.accum_steps
            (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if ema is not None:
            ema.update(model, step=step)
        if on_step is not None:
            on_step(step + 1, batches.total_steps)
    return (ema.module if ema is not None else model).eval()
