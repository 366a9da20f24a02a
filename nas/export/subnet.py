"""The subnet to export: an arch with its weights (inherited from a supernet, or fresh), and the check every
writer runs (its reloaded output against PyTorch's on one fixed random batch)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nas.errors import UsageError
from nas.space import Arch, SearchSpace, load_space
from supernet.static import EfficientFormerNet

TOLERANCE = 1e-4                  # TorchScript, ONNX Runtime, timm reload: max |difference| of the logits
CHECK_BATCH = 2                   # != 1, so a format that baked the batch size in fails its check
CHECK_SEED = 0


@dataclass
class Subnet:
    """The model to export and where its weights came from."""
    arch: Arch
    space: SearchSpace
    model: EfficientFormerNet
    weights: dict[str, Any] = field(default_factory=dict)   # provenance, for the card and export_check.json

    @property
    def data(self) -> str | None:
        """The ``--data`` BatchNorm was recalibrated on (its training images calibrate an int8 export's ranges,
        its validation images check it), or None."""
        return (self.weights.get("batchnorm") or {}).get("recalibrated_on")


# --------------------------------------------------------------------------------------------- the subnet


def build_subnet(arch: Arch, supernet: str | Path | None = None, data: str | Path | None = None,
                 bn_images: int = 1024, space: SearchSpace | None = None) -> Subnet:
    """``arch`` of ``space`` with the supernet checkpoint's weights (or a fresh initialisation), BatchNorm
    recalibrated on ``data`` when given. ``space`` is the arch's (a search passes its own); without it, the space
    the arch names is loaded (an arch read from a file)."""
    from supernet.checkpoint import file_digest, load_supernet

    if space is None:
        space = load_space(arch.space)
    elif space.name != arch.space:
        raise ValueError(f"an arch of space {arch.space!r} given with space {space.name!r}")
    if supernet is None:
        model = EfficientFormerNet.from_arch(arch, space)
        weights: dict[str, Any] = {"source": "fresh initialisation (no --supernet): right for latency, deployment "
                                             "plumbing and fine-tuning, not for accuracy"}
    else:
        net, meta = load_supernet(supernet)
        if net.space.name != space.name:
            raise UsageError(f"the arch is of space {space.name!r}, the supernet {supernet} of {net.space.name!r}")
        model = net.extract(arch)
        weights = {"source": "inherited from a supernet", "supernet": str(supernet),
                   "supernet_sha256": file_digest(supernet), "supernet_meta": meta}
    if data is not None:
        from nas.data import image_batches
        from supernet.batchnorm import recalibrate_batchnorm

        seen = recalibrate_batchnorm(model, image_batches(data, space.input_size, bn_images))
        weights["batchnorm"] = {"recalibrated_on": str(data), "images": seen}
    return Subnet(arch, space, model.eval(), weights)


def check_input(space: SearchSpace, batch: int = CHECK_BATCH) -> torch.Tensor:
    g = torch.Generator().manual_seed(CHECK_SEED)
    return torch.randn(batch, 3, space.input_size, space.input_size, generator=g)


def compare(reference: torch.Tensor, got: Any, tolerance: float = TOLERANCE) -> dict[str, Any]:
    got = torch.as_tensor(got, dtype=torch.float32)
    if got.shape != reference.shape:
        return {"ok": False, "detail": f"output shape {list(got.shape)}, expected {list(reference.shape)}"}
    diff = float((got - reference).abs().max())
    return {"ok": diff <= tolerance, "max_abs_diff": diff, "tolerance": tolerance}


