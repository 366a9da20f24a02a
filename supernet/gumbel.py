"""EfficientFormer's MetaPath importance (paper §4.3, shared SEEDS.md §1.4): Gumbel-softmax architecture logits α
over what each block position of the supernet can be, trained with the weights, read as importances by slimming.

The paths of a position and α itself are ``supernet.metapath``'s (the supernet holds α; this module trains and
reads it).

One training step (``sample_paths`` then ``forward_sampled``) draws one path per position with straight-through
Gumbel-softmax: the forward runs only the drawn path (memory stays at one path, as in GDAS), at the supernet's
largest widths, MLP ratio and each mixer's largest knobs (V1 slims a single-width supernet). A block is a residual
``x + Δ(x)``; the drawn path's Δ is scaled by its straight-through weight (1 in value, the soft probability's
gradient), so α of a path rises when more of that path's Δ would lower the loss and does not move for a path whose
Δ is zero. The identity has no Δ: it learns through the softmax it shares with the others. Why this form and not
the paper's (Σ softmax · path, every path run): that runs all paths per position (3 to 5x the memory and time), and
the paper's "ε ~ U(0,1)" is ambiguous; Gumbel noise (−log(−log U)) makes a draw follow softmax(α), which is what
makes α a selection probability.

Importance (V1): s = p(4D) / p(I) where only 4D is possible, (Σ p(3D) + p(4D)) / p(I) where 3D is, p = softmax(α);
a stage's importance is the sum of its positions'. α sits in the supernet's state dict (``metapath.*``), so a
checkpoint carries it and loads weights-only; a checkpoint without it (trained without ``--gumbel``) has none.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from nas.space import BlockSpec, SearchSpace
from supernet.metapath import IDENTITY, MB4D, MetaPathLogits, metapaths, path_3d
from supernet.supernet import Supernet

__all__ = ["IDENTITY", "MB4D", "Draw", "Importance", "MetaPathLogits", "forward_sampled", "has_importance",
           "metapaths", "path_3d", "sample_paths", "tau_at"]

@dataclass(frozen=True)
class Draw:
    path: str
    weight: torch.Tensor    # 1 in value; carries the soft probability's gradient to α (straight-through)


def sample_paths(logits: MetaPathLogits, tau: float, generator: torch.Generator) -> dict[tuple[int, int], Draw]:
    """One straight-through Gumbel-softmax draw per position (deterministic for a generator state)."""
    draws = {}
    for (s, i), paths in logits.paths.items():
        alpha = logits.alpha(s, i)
        u = torch.rand(len(paths), generator=generator).clamp_(1e-9, 1 - 1e-9).to(alpha.device)
        soft = ((alpha - torch.log(-torch.log(u))) / tau).softmax(dim=0)
        k = int(soft.argmax())
        draws[(s, i)] = Draw(paths[k], 1.0 - soft[k].detach() + soft[k])
    return draws


def _spec(space: SearchSpace, stage: int, position: int, path: str) -> BlockSpec:
    width, ratio = space.max_widths[stage], max(space.mlp_ratios)
    if path == MB4D:
        return BlockSpec(stage, position, "4d", width, ratio, slot=position)
    mixer = path[len("3d_"):]
    knobs = space.knobs(mixer)
    return BlockSpec(stage, position, "3d", width, ratio, max(knobs.allowed_heads), max(knobs.allowed_key_dims),
                     mixer, position)


def forward_sampled(net: Supernet, x: torch.Tensor, draws: Mapping[tuple[int, int], Draw]) -> Any:
    """The supernet at its largest widths with each position on its drawn path. Any path may follow any other
    here (an MB4D block after an MB3D one), so the layout follows each block: tokens for MB3D, maps for MB4D."""
    space = net.space
    x = net.stem(x, space.max_widths[0])
    for s, stage in enumerate(net.super_stages):
        if stage.downsample is not None:   # MB3D paths exist only in the last stage: x is a map here
            x = stage.downsample(x, space.max_widths[s])
        side = (x.shape[2], x.shape[3])
        for i in range(space.max_depths[s]):
            draw = draws[(s, i)]
            if draw.path == IDENTITY:
                continue
            b = _spec(space, s, i, draw.path)
            if b.kind == "3d" and x.dim() == 4:
                x = x.flatten(2).transpose(1, 2)
            elif b.kind == "4d" and x.dim() == 3:
                x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *side)
            x = x + draw.weight * (stage.block(b)(x, b) - x)
    if x.dim() == 4:
        x = x.flatten(2).transpose(1, 2)
    return net.forward_head(net.norm(x))


def tau_at(step: int, total: int, start: float, end: float) -> float:
    """Temperature of ``step``: exponential annealing from ``start`` to ``end`` over training."""
    return start * (end / start) ** (step / max(1, total - 1))


# ----------------------------------------------------------------------------------------------- importance


def has_importance(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a supernet's α moved away from uniform (it was trained with ``--gumbel``)."""
    return any(k.startswith("metapath.") and bool(v.abs().sum() > 0) for k, v in state_dict.items())


@dataclass(frozen=True)
class Importance:
    """MetaPath and stage importances of a trained supernet (V1's s_i)."""

    space: str
    probabilities: dict[tuple[int, int], dict[str, float]]   # softmax(α) per position
    metapath: dict[tuple[int, int], float]                    # s_i per position

    @classmethod
    def of(cls, net: Supernet) -> Importance:
        probs, scores = {}, {}
        for (s, i), paths in net.metapath.paths.items():
            p = net.metapath.alpha(s, i).detach().float().softmax(dim=0).tolist()
            probs[(s, i)] = dict(zip(paths, p))
            keep = sum(v for path, v in zip(paths, p) if path != IDENTITY)
            scores[(s, i)] = keep / max(probs[(s, i)][IDENTITY], 1e-12)
        return cls(net.space.name, probs, scores)

    def stage(self, stage: int, positions: Any = None) -> float:
        """Stage importance: the sum of its positions' (only ``positions``, e.g. the slots an arch keeps, if
        given)."""
        return sum(v for (s, i), v in self.metapath.items() if s == stage and (positions is None or i in positions))

    def stages(self) -> list[float]:
        return [self.stage(s) for s in sorted({s for s, _ in self.metapath})]

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space,
                "positions": [{"stage": s, "position": i, "importance": self.metapath[(s, i)],
                               "log_importance": math.log(max(self.metapath[(s, i)], 1e-12)),
                               "probabilities": self.probabilities[(s, i)]} for (s, i) in sorted(self.metapath)],
                "stages": self.stages()}
