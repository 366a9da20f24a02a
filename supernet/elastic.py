"""Elastic layers: the largest weights, run at any smaller size by slicing leading channels (and heads).

Each elastic block (``ElasticBlock``) mirrors a static block of ``supernet/static.py`` with the same parameter
names, runs the ``BlockSpec`` it is given, and can
- ``to_static(spec)``: hand back its static twin with the active slice of its weights copied in, and
- ``absorb(block)``: write a static block's weights into its leading slice (used to start from timm weights).

For most layers "leading slice" is literally ``w[:out, :in]``; token mixers (``supernet/mixers.py``) slice their
own way, behind the same three methods.
"""
from __future__ import annotations

import abc
from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.space import BlockSpec, MixerChoices
from supernet import static
from supernet.mixers import ElasticMixer, get_mixer


def _leading(t: torch.Tensor, shape: Iterable[int]) -> torch.Tensor:
    return t[tuple(slice(0, n) for n in shape)]


@torch.no_grad()
def shrink_into(big: nn.Module, small: nn.Module, skip: tuple[str, ...] = ()) -> None:
    """Copy the leading slice of each of ``big``'s tensors into ``small``'s tensor of the same name."""
    big_sd = big.state_dict(keep_vars=True)
    for name, t in small.state_dict(keep_vars=True).items():
        if not name.startswith(skip):
            t.copy_(_leading(big_sd[name], t.shape))


@torch.no_grad()
def grow_from(small: nn.Module, big: nn.Module, skip: tuple[str, ...] = ()) -> None:
    """Inverse of ``shrink_into``: write ``small``'s tensors into the leading slices of ``big``'s."""
    big_sd = big.state_dict(keep_vars=True)
    for name, t in small.state_dict(keep_vars=True).items():
        if not name.startswith(skip):
            _leading(big_sd[name], t.shape).copy_(t)


# ------------------------------------------------------------------------------------------------ plain layers


class ElasticConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:  # type: ignore[override]
        bias = self.bias[:out_channels] if self.bias is not None else None
        return F.conv2d(x, self.weight[:out_channels, : x.shape[1]], bias, self.stride, self.padding)


class ElasticLinear(nn.Linear):
    def forward(self, x: torch.Tensor, out_features: int) -> torch.Tensor:  # type: ignore[override]
        bias = self.bias[:out_features] if self.bias is not None else None
        return F.linear(x, self.weight[:out_features, : x.shape[-1]], bias)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the active leading channels; running statistics of the slice are updated in place.

    Statistics shared across widths are only approximately right for any one subnet: recalibrate them on data
    for the arch before evaluating it (as Once-for-All and BigNAS do).
    """

    # Set by ``supernet.syncbn.enable_sync_batchnorm`` on data-parallel workers: training statistics are then
    # those of the global batch (every worker's shard), not of this worker's shard.
    sync_batch_stats: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        momentum = 0.0 if self.momentum is None else self.momentum
        assert self.running_mean is not None and self.running_var is not None   # built with tracked statistics
        if self.training and self.track_running_stats:
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            if self.momentum is None:   # cumulative moving average, used for BN recalibration
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats and self.sync_batch_stats:
            from supernet.syncbn import global_batch_norm

            return global_batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c],
                                     self.bias[:c], momentum, self.eps)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            use_batch_stats, momentum, self.eps)


class ElasticLayerNorm(nn.LayerNorm):
    """LayerNorm whose statistics are taken over the active channels only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        return F.layer_norm(x, (c,), self.weight[:c], self.bias[:c], self.eps)


class ElasticLayerScale(static.LayerScale):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[: x.shape[-1]]


class ElasticLayerScale2d(static.LayerScale):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[: x.shape[1]].view(1, -1, 1, 1)


# ------------------------------------------------------------------------------------------------ stem, embeddings


class ElasticStem(nn.Module):
    """Stem4 with elastic output width (mid width = width // 2, as in EfficientFormer)."""

    def __init__(self, in_chs: int, max_width: int):
        super().__init__()
        self.conv1 = ElasticConv2d(in_chs, max_width // 2, 3, stride=2, padding=1)
        self.norm1 = ElasticBatchNorm2d(max_width // 2)
        self.conv2 = ElasticConv2d(max_width // 2, max_width, 3, stride=2, padding=1)
        self.norm2 = ElasticBatchNorm2d(max_width)

    def forward(self, x: torch.Tensor, width: int) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x, width // 2)))
        return F.relu(self.norm2(self.conv2(x, width)))

    def to_static(self, width: int) -> static.Stem4:
        out = static.Stem4(self.conv1.in_channels, width)
        shrink_into(self, out)
        return out


class ElasticDownsample(nn.Module):
    def __init__(self, max_in: int, max_out: int):
        super().__init__()
        self.conv = ElasticConv2d(max_in, max_out, 3, stride=2, padding=1)
        self.norm = ElasticBatchNorm2d(max_out)

    def forward(self, x: torch.Tensor, width: int) -> torch.Tensor:
        return self.norm(self.conv(x, width))

    def to_static(self, width_in: int, width: int) -> static.Downsample:
        out = static.Downsample(width_in, width)
        shrink_into(self, out)
        return out


# ------------------------------------------------------------------------------------------------ blocks


class ElasticConvMlp(nn.Module):
    def __init__(self, max_dim: int, max_hidden: int):
        super().__init__()
        self.fc1 = ElasticConv2d(max_dim, max_hidden, 1)
        self.norm1 = ElasticBatchNorm2d(max_hidden)
        self.fc2 = ElasticConv2d(max_hidden, max_dim, 1)
        self.norm2 = ElasticBatchNorm2d(max_dim)

    def forward(self, x: torch.Tensor, hidden: int) -> torch.Tensor:
        h = F.gelu(self.norm1(self.fc1(x, hidden)))
        return self.norm2(self.fc2(h, x.shape[1]))


class ElasticBlock(nn.Module, metaclass=abc.ABCMeta):
    """The seam of a supernet block slot: run, hand back, or take in the block a ``BlockSpec`` describes."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, spec: BlockSpec) -> torch.Tensor:
        """Run the active block ``spec`` (its width is the input's)."""

    @abc.abstractmethod
    def to_static(self, spec: BlockSpec) -> nn.Module:
        """The plain block of ``spec`` with the active slice of the weights copied in."""

    @abc.abstractmethod
    def absorb(self, block: nn.Module) -> None:
        """Write a plain block's weights into the leading slice (the inverse of ``to_static``)."""


class ElasticMB4D(ElasticBlock):
    def __init__(self, max_dim: int, max_ratio: int, ls_init: float = 1e-5):
        super().__init__()
        self.token_mixer = static.Pooling(3)
        self.ls1 = ElasticLayerScale2d(max_dim, ls_init)
        self.mlp = ElasticConvMlp(max_dim, max_dim * max_ratio)
        self.ls2 = ElasticLayerScale2d(max_dim, ls_init)

    def forward(self, x: torch.Tensor, spec: BlockSpec) -> torch.Tensor:
        x = x + self.ls1(self.token_mixer(x))
        return x + self.ls2(self.mlp(x, x.shape[1] * spec.mlp_ratio))

    def to_static(self, spec: BlockSpec) -> static.MetaBlock2d:
        out = static.MetaBlock2d(spec.width, spec.mlp_ratio)
        shrink_into(self, out)
        return out

    def absorb(self, block: nn.Module) -> None:
        grow_from(block, self)


class ElasticMlp(nn.Module):
    def __init__(self, max_dim: int, max_hidden: int):
        super().__init__()
        self.fc1 = ElasticLinear(max_dim, max_hidden)
        self.fc2 = ElasticLinear(max_hidden, max_dim)

    def forward(self, x: torch.Tensor, hidden: int) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x, hidden)), x.shape[-1])


class ElasticMB3D(ElasticBlock):
    """MB3D with elastic width and MLP ratio, and the elastic knobs of its one token mixer (``choices``)."""

    def __init__(self, max_dim: int, max_ratio: int, mixer: str, choices: MixerChoices, resolution: int,
                 ls_init: float = 1e-5):
        super().__init__()
        self.mixer, self.attn_ratio, self.resolution = mixer, choices.attn_ratio, resolution
        self.norm1 = ElasticLayerNorm(max_dim)
        self.token_mixer: ElasticMixer = get_mixer(mixer).elastic_cls(max_dim, choices=choices,
                                                                      resolution=resolution)
        self.ls1 = ElasticLayerScale(max_dim, ls_init)
        self.norm2 = ElasticLayerNorm(max_dim)
        self.mlp = ElasticMlp(max_dim, max_dim * max_ratio)
        self.ls2 = ElasticLayerScale(max_dim, ls_init)

    def forward(self, x: torch.Tensor, spec: BlockSpec) -> torch.Tensor:
        x = x + self.ls1(self.token_mixer(self.norm1(x), spec.heads, spec.key_dim))
        return x + self.ls2(self.mlp(self.norm2(x), x.shape[-1] * spec.mlp_ratio))

    def to_static(self, spec: BlockSpec) -> static.MetaBlock1d:
        out = static.MetaBlock1d(spec.width, spec.mlp_ratio, spec.heads, spec.key_dim, self.mixer, self.attn_ratio,
                                 self.resolution)
        shrink_into(self, out, skip=("token_mixer.",))
        out.token_mixer = self.token_mixer.to_static(spec.width, spec.heads, spec.key_dim)
        return out

    def absorb(self, block: nn.Module) -> None:
        assert isinstance(block, static.MetaBlock1d)
        grow_from(block, self, skip=("token_mixer.",))
        self.token_mixer.absorb(block.token_mixer)
