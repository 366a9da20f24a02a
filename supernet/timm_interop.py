"""Reading timm's EfficientFormer weights.

The arch is inferred from the tensors' shapes (not from the model's name), so any timm EfficientFormer whose
shape is a point of the space loads, and one that is not is refused with the field that does not fit. The
weights are then loaded with ``strict=True`` into the plain twin, which has timm's state-dict keys.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn

from nas.errors import UsageError
from nas.space import Arch, SearchSpace
from supernet.static import EfficientFormerNet

_BLOCK = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.")


def timm_state_dict(model_or_state_dict: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else dict(model_or_state_dict)
    if "stem.conv1.weight" not in sd and any(k.startswith("patch_embed") for k in sd):
        # An original snap-research checkpoint: timm's own remapping turns it into timm's keys.
        from timm.models.efficientformer import checkpoint_filter_fn
        sd = checkpoint_filter_fn(sd, None)
    if "stem.conv1.weight" not in sd:
        raise UsageError("not an EfficientFormer state dict: no 'stem.conv1.weight' (expected timm's "
                         "efficientformer_l1/l3/l7 keys)")
    return sd


def arch_from_timm(sd: dict[str, torch.Tensor], space: SearchSpace) -> Arch:
    """The arch whose plain model has exactly these tensors."""
    n_stages = 1 + max(int(m.group(1)) for k in sd if (m := _BLOCK.match(k)))
    widths = [sd["stem.conv2.weight"].shape[0]] + [sd[f"stages.{s}.downsample.conv.weight"].shape[0]
                                                     for s in range(1, n_stages)]
    depths, ratios, heads, key_dims = [], [], [], []
    n3d = 0
    for s in range(n_stages):
        indices = sorted({int(m.group(2)) for k in sd if (m := _BLOCK.match(k)) and int(m.group(1)) == s})
        depths.append(len(indices))
        stage_ratios = []
        for j in indices:
            p = f"stages.{s}.blocks.{j}."
            stage_ratios.append(sd[p + "mlp.fc1.weight"].shape[0] // widths[s])
            if p + "token_mixer.qkv.weight" in sd:
                h = sd[p + "token_mixer.attention_biases"].shape[0]
                rows = sd[p + "token_mixer.qkv.weight"].shape[0]
                heads.append(h)
                key_dims.append(rows // (h * (2 + space.attn_ratio)))
                n3d += 1
        ratios.append(stage_ratios)
    classes = sd["head.weight"].shape[0]
    if classes != space.num_classes:
        raise UsageError(f"the timm model has {classes} classes, the space {space.name!r} has {space.num_classes}; "
                         f"use a model created with num_classes={space.num_classes}")
    return space.arch_from_dict({"space": space.name, "widths": widths, "depths": depths, "n3d": n3d,
                                 "mlp_ratios": ratios, "heads": heads, "key_dims": key_dims,
                                 "mixers": ["mhsa"] * n3d})


def static_from_timm(model_or_state_dict: nn.Module | dict[str, torch.Tensor],
                     space: SearchSpace) -> tuple[Arch, EfficientFormerNet]:
    sd = timm_state_dict(model_or_state_dict)
    arch = arch_from_timm(sd, space)
    net = EfficientFormerNet.from_arch(arch, space)
    net.load_state_dict(sd, strict=True)
    return arch, net
