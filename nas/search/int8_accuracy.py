"""Top-1 after int8 post-training quantisation, through the graph the int8 table priced (issue #28).

The subnet gets the one evaluation recipe of ``supernet.evaluate`` (BatchNorm re-estimated on training images),
is exported to ONNX, quantised by the table's recipe (``nas.latency.quantize``: the op types that run in int8 on
the machine, per-channel S8 weights, U8 activations) with its activation ranges calibrated on *training* images,
and scored by ONNX Runtime on the validation split. The float top-1 of the same model on the same images comes
with it, so the drop is measured on one set of images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from nas.latency.quantize import (
    CALIBRATION_IMAGES,
    CALIBRATION_SEED,
    Int8Recipe,
    onnx_bytes,
    quantize_onnx,
    score_against_float,
    session,
)


@torch.no_grad()
def int8_top1(model: nn.Module, data: str | Path, input_size: int, recipe: Int8Recipe, val_images: int,
              bn_images: int, calibration_images: int = CALIBRATION_IMAGES, split: str = "val") -> dict[str, Any]:
    """``{"top1": int8 top-1 %, "float_top1": float top-1 % on the same images, "agreement": % of images whose
    int8 and float top-1 agree, "images": n}``."""
    from nas.data import image_batches
    from supernet.batchnorm import recalibrate_batchnorm

    recalibrate_batchnorm(model, image_batches(data, input_size, bn_images, seed=1, split="train"))
    model.eval()
    x = torch.zeros(1, 3, input_size, input_size)
    feeds = [{"x": np.ascontiguousarray(images.numpy())}
             for images in image_batches(data, input_size, calibration_images, seed=CALIBRATION_SEED, split="train")]
    int8 = session(quantize_onnx(onnx_bytes(model, x, dynamic_batch=True), recipe, feeds), threads=1)
    return score_against_float(int8, model, data, input_size, val_images, split)
