"""The paths each block position of the supernet can take (EfficientFormer's MetaPaths) and their architecture
logits α, which the supernet holds in its state dict (``metapath.*``) so that a checkpoint carries them.

Paths of a position (``metapaths``): ``4d`` and ``identity`` everywhere; where the space allows an MB3D block (the
last stage's ``positions_3d``) also ``3d_<mixer>`` for each token mixer, so the hybrid space's importances cover
every attention it can choose. How α is trained and read is ``supernet.gumbel``'s; this module is what the
supernet itself needs, so that the supernet does not import its own trainer."""
from __future__ import annotations

import torch
import torch.nn as nn

from nas.space import SearchSpace

IDENTITY = "identity"
MB4D = "4d"


def path_3d(mixer: str) -> str:
    return f"3d_{mixer}"


def metapaths(space: SearchSpace) -> list[tuple[int, int, tuple[str, ...]]]:
    """``(stage, position, paths)`` of every position of the supernet, in forward order."""
    out = []
    last = space.num_stages - 1
    allows_3d = set(space.positions_3d()) if max(space.n3d) > 0 else set()
    for s in range(space.num_stages):
        for i in range(space.max_depths[s]):
            paths: tuple[str, ...] = (MB4D,)
            if s == last and i in allows_3d:
                paths += tuple(path_3d(m) for m in space.mixers)
            out.append((s, i, paths + (IDENTITY,)))
    return out


def _key(stage: int, position: int) -> str:
    return f"s{stage}_p{position}"


class MetaPathLogits(nn.Module):
    """α: one logit vector per position (zeros, i.e. uniform, until Gumbel training moves them)."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.paths = {(s, i): paths for s, i, paths in metapaths(space)}
        self.logits = nn.ParameterDict({_key(s, i): nn.Parameter(torch.zeros(len(p)))
                                        for (s, i), p in self.paths.items()})

    def alpha(self, stage: int, position: int) -> torch.Tensor:
        return self.logits[_key(stage, position)]
