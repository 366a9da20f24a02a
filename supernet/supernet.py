"""The weight-sharing supernet of a search space.

One module holds the largest weights of every block slot. ``set_active(arch)`` picks a point; ``forward`` runs it
by slicing; ``extract(arch)`` hands back a plain ``EfficientFormerNet`` with the slice's weights copied in, whose
output equals the supernet's for that arch.

Slots: stage ``s`` has one MB4D slot per position up to its largest depth; in the last stage, every position that
can hold an MB3D block also has an MB3D slot per token mixer (EfficientFormer's MetaPath {4D, 3D, I}). A block
uses the slot its arch gives (``Arch.slots``; by default block ``i`` uses slot ``i``), and the slots no block uses
are the identity. ``metapath`` holds the architecture logits α of Gumbel training (``supernet.metapath``; trained
by ``supernet.gumbel``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from nas.errors import ArchError
from nas.space import DEFAULT_SPACE, Arch, BlockSpec, SearchSpace, load_space
from supernet import static
from supernet.elastic import (
    ElasticBlock,
    ElasticDownsample,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticMB3D,
    ElasticMB4D,
    ElasticStem,
    grow_from,
    shrink_into,
)
from supernet.metapath import MetaPathLogits
from supernet.mixers import check_space


class SuperStage(nn.Module):
    def __init__(self, space: SearchSpace, s: int):
        super().__init__()
        width, depth = space.max_widths[s], space.max_depths[s]
        ratio = max(space.mlp_ratios)
        self.downsample = ElasticDownsample(space.max_widths[s - 1], width) if s > 0 else None
        self.blocks4d = nn.ModuleList(ElasticMB4D(width, ratio) for _ in range(depth))
        self.blocks3d = nn.ModuleDict()
        if s == space.num_stages - 1 and max(space.n3d) > 0:
            side = space.resolutions()[s]
            for i in space.positions_3d():
                for mixer in space.mixers:   # each mixer its own weights (EfficientFormer's MetaPath, widened)
                    self.blocks3d[_slot3d(i, mixer)] = ElasticMB3D(width, ratio, mixer, space.knobs(mixer),
                                                                   side)

    def block(self, b: BlockSpec) -> ElasticBlock:
        slot = self.blocks4d[b.slot] if b.kind == "4d" else self.blocks3d[_slot3d(b.slot, b.mixer)]
        assert isinstance(slot, ElasticBlock)
        return slot


def _slot3d(index: int, mixer: str) -> str:
    return f"{index}_{mixer}"


class Supernet(nn.Module):
    """Weight-sharing supernet over ``space`` (a ``SearchSpace`` or its name), with a head of ``num_classes``
    outputs (default: the space's; the data's classes when trained on data that has another number)."""

    def __init__(self, space: SearchSpace | str = DEFAULT_SPACE, num_classes: int | None = None):
        super().__init__()
        self.space = load_space(space) if isinstance(space, str) else space
        sp = self.space
        self.num_classes = num_classes or sp.num_classes
        check_space(sp)   # each mixer's knobs in the YAML are what its registration takes
        self.stem = ElasticStem(3, sp.max_widths[0])
        super_stages = tuple(SuperStage(sp, s) for s in range(sp.num_stages))
        self.stages = nn.ModuleList(super_stages)
        self._super_stages = super_stages   # a plain tuple attribute: nn.Module registers only modules
        self.norm = ElasticLayerNorm(sp.max_widths[-1])
        self.head = ElasticLinear(sp.max_widths[-1], self.num_classes)
        self.head_dist = ElasticLinear(sp.max_widths[-1], self.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.trunc_normal_(self.head_dist.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        nn.init.zeros_(self.head_dist.bias)
        self.metapath = MetaPathLogits(sp)   # α of Gumbel training (zeros: no importance learned)
        self.distilled_training = False
        self._active: Arch | None = None
        self._plan: list[list[tuple[ElasticBlock, BlockSpec]]] = []
        self.set_active(sp.largest())

    @property
    def super_stages(self) -> tuple[SuperStage, ...]:
        """``self.stages`` with their type (an ``nn.ModuleList`` only knows it holds modules); built once, as the
        forward pass reads it every step."""
        return self._super_stages

    # ---------------------------------------------------------------------------------------- choosing a subnet
    @property
    def active(self) -> Arch:
        assert self._active is not None
        return self._active

    def set_active(self, arch: Arch) -> None:
        """Run ``arch`` on the next forward passes (validated against this supernet's space)."""
        if arch.space != self.space.name:
            raise ArchError(f"arch field 'space' = {arch.space!r} does not match the supernet's space "
                            f"{self.space.name!r}")
        arch = self.space.validate(arch)
        plan: list[list[tuple[ElasticBlock, BlockSpec]]] = [[] for _ in arch.depths]
        for b in arch.blocks():
            plan[b.stage].append((self.super_stages[b.stage].block(b), b))
        self._active, self._plan = arch, plan

    # ---------------------------------------------------------------------------------------- running it
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        arch = self.active
        x = self.stem(x, arch.widths[0])
        for s, stage in enumerate(self.super_stages):
            if stage.downsample is not None:
                x = stage.downsample(x, arch.widths[s])
            for module, b in self._plan[s]:
                if b.kind == "3d" and x.dim() == 4:   # the one flatten, before the first MB3D block
                    x = x.flatten(2).transpose(1, 2)
                x = module(x, b)
        if x.dim() == 4:                         # an all-4D arch: flatten for the LayerNorm head
            x = x.flatten(2).transpose(1, 2)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> Any:
        x = x.mean(dim=1)
        n = self.num_classes
        x, x_dist = self.head(x, n), self.head_dist(x, n)
        if self.distilled_training and self.training:
            return x, x_dist
        return (x + x_dist) / 2

    def forward(self, x: torch.Tensor) -> Any:
        return self.forward_head(self.forward_features(x))

    # ---------------------------------------------------------------------------------------- static twins
    def static_model(self, arch: Arch) -> static.EfficientFormerNet:
        """A freshly initialised plain model of ``arch`` (no weights from the supernet)."""
        return static.EfficientFormerNet.from_arch(arch, self.space, self.num_classes)

    @torch.no_grad()
    def extract(self, arch: Arch | None = None) -> static.EfficientFormerNet:
        """A standalone plain model of ``arch`` (default: the active one) with the supernet's weights."""
        arch = self.space.validate(arch) if arch is not None else self.active
        net = self.static_model(arch)
        net.stem = self.stem.to_static(arch.widths[0])
        for s, (stage, net_stage) in enumerate(zip(self.super_stages, net.stage_list)):
            if stage.downsample is not None:
                net_stage.downsample = stage.downsample.to_static(arch.widths[s - 1], arch.widths[s])
            blocks = [m for m in net_stage.blocks if not isinstance(m, static.Flat)]
            for b, target in zip((b for b in arch.blocks() if b.stage == s), blocks):
                _replace(net_stage.blocks, target, stage.block(b).to_static(b))
        shrink_into(self, net, skip=("stem.", "stages."))   # norm, head, head_dist
        net.distilled_training = self.distilled_training
        return net.train(self.training)

    @torch.no_grad()
    def absorb(self, arch: Arch, net: static.EfficientFormerNet) -> None:
        """Write a plain model of ``arch`` into the supernet's slots (the inverse of ``extract``)."""
        arch = self.space.validate(arch)
        grow_from(net.stem, self.stem)
        for s, (stage, net_stage) in enumerate(zip(self.super_stages, net.stage_list)):
            if stage.downsample is not None:
                grow_from(net_stage.downsample, stage.downsample)
            blocks = [m for m in net_stage.blocks if not isinstance(m, static.Flat)]
            for b, block in zip((b for b in arch.blocks() if b.stage == s), blocks):
                stage.block(b).absorb(block)
        grow_from(net, self, skip=("stem.", "stages."))

    def load_timm(self, model_or_state_dict: nn.Module | dict[str, torch.Tensor]) -> Arch:
        """Start from timm's EfficientFormer weights (L1, L3, L7 or any other point of this space).

        Returns the arch the weights describe; ``extract`` of it reproduces the timm model's logits.
        """
        from supernet.timm_interop import static_from_timm
        arch, net = static_from_timm(model_or_state_dict, self.space)
        self.absorb(arch, net)
        return arch


def _replace(seq: nn.Sequential, old: nn.Module, new: nn.Module) -> None:
    for name, m in seq.named_children():
        if m is old:
            setattr(seq, name, new)
            return
    raise KeyError("block not found")  # pragma: no cover - extract builds both sides from one arch
