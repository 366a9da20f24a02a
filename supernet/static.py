"""Plain (non-elastic) EfficientFormer-family model: what ``Supernet.extract`` returns and what export writes.

Module names and state-dict keys mirror timm's ``timm/models/efficientformer.py``, so a timm EfficientFormer state
dict loads into the matching ``EfficientFormerNet`` with ``strict=True`` and parameter counts agree by
construction. Unlike timm's, every block takes its own MLP ratio and every MB3D block its own heads, key dim and
token mixer, which is what a searched subnet needs.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torch.nn.init import trunc_normal_

from nas.space import block_layout, first_3d_index, stage_sides
from supernet.mixers import build_static


class Stem4(nn.Sequential):
    """Two 3x3 stride-2 Conv-BN-ReLU: the latency-friendly stem of EfficientFormer's observation 1."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.add_module("conv1", nn.Conv2d(in_chs, out_chs // 2, 3, stride=2, padding=1))
        self.add_module("norm1", nn.BatchNorm2d(out_chs // 2))
        self.add_module("act1", nn.ReLU())
        self.add_module("conv2", nn.Conv2d(out_chs // 2, out_chs, 3, stride=2, padding=1))
        self.add_module("norm2", nn.BatchNorm2d(out_chs))
        self.add_module("act2", nn.ReLU())


class Downsample(nn.Module):
    """Stage embedding: 3x3 stride-2 conv + BN, no activation."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Flat(nn.Module):
    """The one 4D -> 3D reshape of the network: [B, C, H, W] -> [B, N, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class Pooling(nn.Module):
    """PoolFormer token mixer: avgpool(x) - x (the residual adds x back)."""

    def __init__(self, pool_size: int = 3):
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class LayerScale2d(LayerScale):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1)


class ConvMlpWithNorm(nn.Module):
    """1x1 Conv-BN-GELU-1x1 Conv-BN on 4D tensors (BN folds into the convs at inference)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.norm2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.fc2(self.act(self.norm1(self.fc1(x)))))


class Mlp(nn.Module):
    """Linear-GELU-Linear on [B, N, C] tokens."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MetaBlock2d(nn.Module):
    """MB4D: pool token mixer + Conv-BN MLP, each residual with layer scale."""

    def __init__(self, dim: int, mlp_ratio: int, pool_size: int = 3, ls_init: float = 1e-5, drop_path: float = 0.0):
        super().__init__()
        self.token_mixer = Pooling(pool_size)
        self.ls1 = LayerScale2d(dim, ls_init)
        self.drop_path1 = _drop_path(drop_path)
        self.mlp = ConvMlpWithNorm(dim, dim * mlp_ratio)
        self.ls2 = LayerScale2d(dim, ls_init)
        self.drop_path2 = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.token_mixer(x)))
        return x + self.drop_path2(self.ls2(self.mlp(x)))


class MetaBlock1d(nn.Module):
    """MB3D: LayerNorm + token mixer, LayerNorm + Linear MLP, each residual with layer scale."""

    def __init__(self, dim: int, mlp_ratio: int, num_heads: int, key_dim: int, mixer: str = "mhsa",
                 attn_ratio: int = 4, resolution: int = 7, ls_init: float = 1e-5, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixer = build_static(mixer, dim, num_heads, key_dim, attn_ratio, resolution)
        self.ls1 = LayerScale(dim, ls_init)
        self.drop_path1 = _drop_path(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.ls2 = LayerScale(dim, ls_init)
        self.drop_path2 = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.token_mixer(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class DropPath(nn.Module):
    """Stochastic depth (timm's ``DropPath``, written here so that this module does not import timm, ~1 s): while
    training, a sample's residual branch is zeroed with probability ``rate`` and the kept ones scaled up."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


def _drop_path(rate: float) -> nn.Module:
    """Stochastic depth for fine-tuning (timm's ``drop_path_rate``); an identity, with no tensors, at rate 0, so
    exported and searched models are unchanged."""
    return DropPath(rate) if rate > 0 else nn.Identity()


class EfficientFormerStage(nn.Module):
    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class DistilledHead(nn.Module):
    """The network's tail: LayerNorm, token mean, class and distillation heads averaged (DeiT-style).

    ``EfficientFormerNet`` is one (its ``norm``/``head``/``head_dist`` keep timm's state-dict keys at the top
    level), and the latency tables' ``head`` op is one on its own, so both run the same code.
    """

    def _build_head(self, dim: int, num_classes: int, drop_rate: float = 0.0) -> None:
        self.distilled_training = False
        self.global_pool = "avg"            # timm's name: "avg" (token mean) or "" (tokens as they are)
        self.norm = nn.LayerNorm(dim)
        self.head_drop = nn.Dropout(drop_rate)
        # no class heads (num_classes 0): forward gives the pooled features, as timm's models do
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.head_dist = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> Any:
        """Tokens already normalised (``[B, N, C]``) to logits; both heads' logits while distillation-training;
        the pooled features with ``pre_logits`` (timm's contract)."""
        if self.global_pool == "avg":
            x = x.mean(dim=1)
        x = self.head_drop(x)
        if pre_logits:
            return x
        x, x_dist = self.head(x), self.head_dist(x)
        if self.distilled_training and self.training and not torch.jit.is_scripting():
            return x, x_dist
        return (x + x_dist) / 2


class Head(DistilledHead):
    """The tail as one module on ``[B, N, C]`` tokens (the latency tables' ``head`` op)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self._build_head(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.norm(x))


class EfficientFormerNet(DistilledHead):
    """An EfficientFormer-family network with per-block choices (one point of a search space).

    Keyword arguments are the arch's fields plus the space's ``num_classes``, ``img_size`` and ``attn_ratio``,
    so the model can be recreated from JSON alone (``arch_config``).
    """

    def __init__(self, widths: Sequence[int], depths: Sequence[int], n3d: int,
                 mlp_ratios: Sequence[Sequence[int]], heads: Sequence[int] = (), key_dims: Sequence[int] = (),
                 mixers: Sequence[str] = (), num_classes: int = 1000, img_size: int | Sequence[int] = 224,
                 attn_ratio: int = 4, in_chans: int = 3, space: str = "", drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, global_pool: str = "avg"):
        super().__init__()
        if not isinstance(img_size, int):   # timm's saved model_args hold (h, w)
            if len(img_size) != 2 or img_size[0] != img_size[1]:
                raise ValueError(f"img_size {tuple(img_size)}: this family takes square inputs")
            img_size = int(img_size[0])
        self.arch_config: dict[str, Any] = dict(
            space=space, widths=list(widths), depths=list(depths), n3d=n3d,
            mlp_ratios=[list(r) for r in mlp_ratios], heads=list(heads), key_dims=list(key_dims),
            mixers=list(mixers), num_classes=num_classes, img_size=img_size, attn_ratio=attn_ratio)
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = widths[-1]   # timm's names, used by its export helpers
        # what timm's features_only / forward_intermediates report: one map per stage, stride 4, 8, 16, 32
        self.feature_info = [dict(num_chs=w, reduction=2 ** (s + 2), module=f"stages.{s}")
                             for s, w in enumerate(widths)]
        self.stem = Stem4(in_chans, widths[0])
        sides = stage_sides(img_size, len(depths))
        layout = block_layout(depths, n3d)
        # stochastic depth grows linearly with the block's position in the network, as in timm
        drop_paths = iter(torch.linspace(0, drop_path_rate, len(layout)).tolist())
        stages = []
        for s in range(len(depths)):
            # modules are created in forward order (a stage's embedding before its blocks): the random
            # initialisation for a seed depends on it
            down = Downsample(widths[s - 1], widths[s]) if s > 0 else nn.Identity()
            blocks: list[nn.Module] = []
            for _, i, kind in (b for b in layout if b[0] == s):
                drop_path = next(drop_paths)
                if kind == "4d":
                    blocks.append(MetaBlock2d(widths[s], mlp_ratios[s][i], drop_path=drop_path))
                    continue
                j = i - first_3d_index(depths, n3d, s)
                if j == 0:   # the one flatten, just before the first MB3D block
                    blocks.append(Flat())
                blocks.append(MetaBlock1d(widths[s], mlp_ratios[s][i], heads[j], key_dims[j], mixers[j],
                                          attn_ratio, sides[s], drop_path=drop_path))
            if s == len(depths) - 1 and n3d == 0:   # an all-4D network still hands tokens to the LayerNorm head
                blocks.append(Flat())
            stages.append(EfficientFormerStage(down, blocks))
        self.stages = nn.Sequential(*stages)
        self._build_head(widths[-1], num_classes, drop_rate)
        self.apply(_init_weights)
        if global_pool != "avg":
            self.reset_classifier(num_classes, global_pool)

    @classmethod
    def from_arch(cls, arch: Any, space: Any, num_classes: int | None = None) -> EfficientFormerNet:
        """A freshly initialised model of ``arch`` (a ``nas.space.Arch`` of ``space``) with ``num_classes``
        outputs (default: the space's)."""
        return cls(arch.widths, arch.depths, arch.n3d, arch.mlp_ratios, arch.heads, arch.key_dims, arch.mixers,
                   num_classes=num_classes or space.num_classes, img_size=space.input_size, attn_ratio=space.attn_ratio,
                   space=space.name)

    __jit_unused_properties__ = ["stage_list"]   # Python-side typing help, not part of the scripted model

    @property
    def stage_list(self) -> list[EfficientFormerStage]:
        """``self.stages`` with their type (an ``nn.Sequential`` only knows it holds modules)."""
        return [s for s in self.stages if isinstance(s, EfficientFormerStage)]

    # ---- timm's model API (what timm.create_model, its train.py and features_only call) ----

    @torch.jit.ignore
    def get_classifier(self) -> tuple[nn.Module, nn.Module]:
        return self.head, self.head_dist

    @torch.jit.ignore
    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New class and distillation heads for ``num_classes`` (0: none, ``forward`` gives pooled features)."""
        if global_pool is not None and global_pool not in ("", "avg"):
            raise ValueError(f"global_pool {global_pool!r}: this family pools by token mean ('avg') or not at all ('')")
        self.global_pool = self.global_pool if global_pool is None else global_pool
        self.num_classes = num_classes
        self.arch_config["num_classes"] = num_classes
        like = next(self.parameters())     # the device and dtype of the new heads
        for name in ("head", "head_dist"):
            new: nn.Module = nn.Identity()
            if num_classes > 0:
                new = nn.Linear(self.num_features, num_classes, device=like.device, dtype=like.dtype)
                _init_weights(new)
            setattr(self, name, new.train(self.training))

    @torch.jit.ignore
    def set_distilled_training(self, enable: bool = True) -> None:
        self.distilled_training = enable

    @torch.jit.ignore
    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> Any:
        """timm's feature API: the feature maps of the stages in ``indices`` (NCHW; the last stage's tokens are
        folded back into a map), and with them the final features unless ``intermediates_only``."""
        from timm.models._features import feature_take_indices

        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt {output_fmt!r}: only 'NCHW' is supported")
        take, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stage_list[:max_index + 1] if stop_early else self.stage_list
        intermediates = []
        x = self.stem(x)
        last = len(self.feature_info) - 1
        for i, stage in enumerate(stages):
            x = stage.downsample(x)
            b, _, h, w = x.shape
            x = stage.blocks(x)
            if i in take:
                if i == last:   # tokens [B, N, C] -> [B, C, H, W]
                    tokens = self.norm(x) if norm else x
                    intermediates.append(tokens.reshape(b, h, w, -1).permute(0, 3, 1, 2))
                else:
                    intermediates.append(x)
        if intermediates_only:
            return intermediates
        if len(stages) == last + 1:
            x = self.norm(x)
        return x, intermediates

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop what the features in ``indices`` do not need (timm's ``features_only`` calls this)."""
        from timm.models._features import feature_take_indices

        take, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        if prune_norm or prune_end:
            self.norm = nn.Identity()   # type: ignore[assignment]
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = int(self.feature_info[max_index]["num_chs"])
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return list(take)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> Any:
        return self.forward_head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    """timm's EfficientFormer init: truncated normal (0.02) for Linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
