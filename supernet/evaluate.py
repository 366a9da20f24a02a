"""Inherited accuracy, the one recipe: BatchNorm statistics re-estimated on training images, then top-1 on the
validation split. Training's per-epoch figures, the search objective, ``nas supernet eval`` and the benchmarks all
call ``evaluate_model`` / ``evaluate_subnet``, so their numbers are comparable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas.errors import UsageError
from nas.space import Arch, SearchSpace
from supernet.batchnorm import recalibrate_batchnorm
from supernet.config import EVAL_BN_IMAGES, EVAL_VAL_IMAGES
from supernet.supernet import Supernet


@torch.no_grad()
def evaluate_model(model: nn.Module, data: str | Path, input_size: int, val_images: int = EVAL_VAL_IMAGES,
                   bn_images: int = EVAL_BN_IMAGES, device: str = "cpu", split: str = "val") -> float:
    """Top-1 (%) of a plain model on ``data``'s validation split (or ``split``: 'test' for final figures), its
    BatchNorm re-estimated on ``bn_images`` images of the training split first (the one evaluation recipe of
    training, search, eval and benchmarks)."""
    from nas.data import image_batches

    model = model.to(device)
    bn_batches = image_batches(data, input_size, bn_images, seed=1, split="train")
    recalibrate_batchnorm(model, (x.to(device) for x in bn_batches))
    model.eval()
    correct = total = 0
    for images, labels in image_batches(data, input_size, val_images, with_labels=True, split=split):
        correct += int((model(images.to(device)).argmax(dim=1).cpu() == labels).sum())
        total += labels.numel()
    if total == 0:
        raise UsageError("the validation split has no images")
    return 100.0 * correct / total


def evaluate_subnet(net: Supernet, arch: Arch, data: str | Path, val_images: int = EVAL_VAL_IMAGES,
                    bn_images: int = EVAL_BN_IMAGES,
                    device: str = "cpu") -> float:
    """Top-1 (%) of ``arch`` with the supernet's inherited weights."""
    return evaluate_model(net.extract(arch), data, net.space.input_size, val_images, bn_images, device)


def ends_of_space(space: SearchSpace) -> dict[str, Arch]:
    """The subnets training reports after every epoch and ``nas supernet eval`` scores by default: the largest and
    the smallest, and in a space with several token mixers the largest with each other mixer too (``largest_cga``),
    so that every mixer's own weights are seen learning."""
    ends = {"largest": space.largest(), "smallest": space.smallest()}
    ends.update({f"largest_{mixer}": space.largest(mixer) for mixer in space.mixers[1:]})
    return ends


def evaluate_checkpoint(checkpoint: str | Path, data: str, archs: dict[str, Arch] | None = None,
                        val_images: int = EVAL_VAL_IMAGES, bn_images: int = EVAL_BN_IMAGES,
                        device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Top-1 of inherited weights for each of ``archs`` (default: ``ends_of_space`` and the space's presets),
    each with BatchNorm recalibrated on ``data``'s training split."""
    from nas.data import describe
    from supernet.checkpoint import load_supernet

    net, meta = load_supernet(checkpoint)
    net.to(device)
    space = net.space
    if archs is None:
        archs = {**ends_of_space(space), **{name: space.preset(name) for name in space.preset_names()}}
    for name, arch in archs.items():       # all refused before the first (minutes-long) evaluation
        if arch.space != space.name:
            raise UsageError(f"arch {name!r} is of space {arch.space!r}, the supernet {checkpoint} of {space.name!r}")
    from tqdm import tqdm

    rows = []
    bar = tqdm(archs.items(), desc="eval", unit="arch", disable=not progress, dynamic_ncols=True)
    for name, arch in bar:
        bar.set_postfix_str(name)
        top1 = evaluate_subnet(net, arch, data, val_images, bn_images, device)
        rows.append({"name": name, "top1": top1, "arch": arch.to_dict()})
    return {"supernet": str(checkpoint), "space": space.name, "data": str(data), "val": describe(data, "val"),
            "val_images": val_images, "bn_images": bn_images, "trained": meta.get("trained", {}), "archs": rows}
