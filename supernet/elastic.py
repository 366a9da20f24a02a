"""Elastic layers: the largest weights, run at any smaller size by slicing leading channels (and heads).

Each elastic block mirrors a static block of ``supernet/static.py`` with the same parameter names, and can
- ``to_static(...)``: hand back its static twin with the active slice of its weights copied in, and
- ``absorb(static)``: write a static block's weights into its leading slice (used to start from timm weights).

For most layers "leading slice" is literally ``w[:out, :in]``; attention stores its weights per head so that the
active heads and key dims are a leading slice too.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.init import trunc_normal_

from supernet import static


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
    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        bias = self.bias[:out_channels] if self.bias is not None else None
        return F.conv2d(x, self.weight[:out_channels, : x.shape[1]], bias, self.stride, self.padding)


class ElasticLinear(nn.Linear):
    def forward(self, x: torch.Tensor, out_features: int) -> torch.Tensor:
        bias = self.bias[:out_features] if self.bias is not None else None
        return F.linear(x, self.weight[:out_features, : x.shape[-1]], bias)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the active leading channels; running statistics of the slice are updated in place.

    Statistics shared across widths are only approximately right for any one subnet: recalibrate them on data
    for the arch before evaluating it (as Once-for-All and BigNAS do).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:   # cumulative moving average, used for BN recalibration
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or not self.track_running_stats
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


class ElasticMB4D(nn.Module):
    def __init__(self, max_dim: int, max_ratio: int, ls_init: float = 1e-5):
        super().__init__()
        self.token_mixer = static.Pooling(3)
        self.ls1 = ElasticLayerScale2d(max_dim, ls_init)
        self.mlp = ElasticConvMlp(max_dim, max_dim * max_ratio)
        self.ls2 = ElasticLayerScale2d(max_dim, ls_init)

    def forward(self, x: torch.Tensor, mlp_ratio: int) -> torch.Tensor:
        x = x + self.ls1(self.token_mixer(x))
        return x + self.ls2(self.mlp(x, x.shape[1] * mlp_ratio))

    def to_static(self, width: int, mlp_ratio: int) -> static.MetaBlock2d:
        out = static.MetaBlock2d(width, mlp_ratio)
        shrink_into(self, out)
        return out

    def absorb(self, block: static.MetaBlock2d) -> None:
        grow_from(block, self)


class ElasticAttention(nn.Module):
    """MHSA with elastic width, heads and key dim.

    Weights are stored per head: ``qkv_weight[h]`` holds that head's q rows (max key dim), then k rows, then v rows
    (attn_ratio * max key dim), so the active ``heads x key_dim`` is a leading slice of each part; the active
    weight is re-interleaved into timm's ``[q|k|v]``-per-head row order, so the static twin is a plain Linear.
    """

    def __init__(self, max_dim: int, max_heads: int, max_key_dim: int, attn_ratio: int, resolution: int):
        super().__init__()
        self.max_key_dim = max_key_dim
        self.attn_ratio = attn_ratio
        self.resolution = resolution
        rows = (2 + attn_ratio) * max_key_dim
        self.qkv_weight = nn.Parameter(torch.empty(max_heads, rows, max_dim))
        self.qkv_bias = nn.Parameter(torch.zeros(max_heads, rows))
        self.proj_weight = nn.Parameter(torch.empty(max_dim, max_heads, attn_ratio * max_key_dim))
        self.proj_bias = nn.Parameter(torch.zeros(max_dim))
        self.attention_biases = nn.Parameter(torch.zeros(max_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", static.relative_position_index(resolution))
        trunc_normal_(self.qkv_weight, std=0.02)
        trunc_normal_(self.proj_weight, std=0.02)

    def _row_slices(self, key_dim: int) -> list[slice]:
        kd, val = self.max_key_dim, self.attn_ratio * key_dim
        return [slice(0, key_dim), slice(kd, kd + key_dim), slice(2 * kd, 2 * kd + val)]

    def active_weights(self, dim: int, heads: int, key_dim: int) -> dict[str, torch.Tensor]:
        """The active slice as the static ``Attention``'s tensors (views where possible)."""
        rows = self._row_slices(key_dim)
        if key_dim == self.max_key_dim:
            qkv_w, qkv_b = self.qkv_weight[:heads, :, :dim], self.qkv_bias[:heads]
        else:
            qkv_w = torch.cat([self.qkv_weight[:heads, r, :dim] for r in rows], dim=1)
            qkv_b = torch.cat([self.qkv_bias[:heads, r] for r in rows], dim=1)
        val = self.attn_ratio * key_dim
        return {
            "qkv.weight": qkv_w.reshape(-1, dim),
            "qkv.bias": qkv_b.reshape(-1),
            "proj.weight": self.proj_weight[:dim, :heads, :val].reshape(dim, heads * val),
            "proj.bias": self.proj_bias[:dim],
            "attention_biases": self.attention_biases[:heads],
        }

    def forward(self, x: torch.Tensor, heads: int, key_dim: int) -> torch.Tensor:
        B, N, C = x.shape
        w = self.active_weights(C, heads, key_dim)
        val = self.attn_ratio * key_dim
        qkv = F.linear(x, w["qkv.weight"], w["qkv.bias"]).reshape(B, N, heads, -1).permute(0, 2, 1, 3)
        q, k, v = qkv.split([key_dim, key_dim, val], dim=3)
        attn = (q @ k.transpose(-2, -1)) * key_dim ** -0.5 + w["attention_biases"][:, self.attention_bias_idxs]
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, heads * val)
        return F.linear(x, w["proj.weight"], w["proj.bias"])

    @torch.no_grad()
    def to_static(self, dim: int, heads: int, key_dim: int) -> static.Attention:
        out = static.Attention(dim, key_dim, heads, self.attn_ratio, self.resolution)
        sd = out.state_dict(keep_vars=True)
        for name, t in self.active_weights(dim, heads, key_dim).items():
            sd[name].copy_(t)
        return out

    @torch.no_grad()
    def absorb(self, attn: static.Attention) -> None:
        heads, key_dim = attn.num_heads, attn.key_dim
        dim = attn.qkv.in_features
        w = attn.qkv.weight.view(heads, -1, dim)
        b = attn.qkv.bias.view(heads, -1)
        start = 0
        for r in self._row_slices(key_dim):
            n = r.stop - r.start
            self.qkv_weight[:heads, r, :dim].copy_(w[:, start:start + n])
            self.qkv_bias[:heads, r].copy_(b[:, start:start + n])
            start += n
        val = self.attn_ratio * key_dim
        self.proj_weight[:dim, :heads, :val].copy_(attn.proj.weight.view(dim, heads, val))
        self.proj_bias[:dim].copy_(attn.proj.bias)
        self.attention_biases[:heads].copy_(attn.attention_biases)


# Elastic twins of static.MIXERS, by the same names.
ELASTIC_MIXERS: dict[str, type[nn.Module]] = {"mhsa": ElasticAttention}


class ElasticMlp(nn.Module):
    def __init__(self, max_dim: int, max_hidden: int):
        super().__init__()
        self.fc1 = ElasticLinear(max_dim, max_hidden)
        self.fc2 = ElasticLinear(max_hidden, max_dim)

    def forward(self, x: torch.Tensor, hidden: int) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x, hidden)), x.shape[-1])


class ElasticMB3D(nn.Module):
    """MB3D with elastic width, MLP ratio, heads and key dim, for one token mixer type."""

    def __init__(self, max_dim: int, max_ratio: int, mixer: str, max_heads: int, max_key_dim: int,
                 attn_ratio: int, resolution: int, ls_init: float = 1e-5):
        super().__init__()
        self.mixer = mixer
        self.norm1 = ElasticLayerNorm(max_dim)
        self.token_mixer = ELASTIC_MIXERS[mixer](max_dim, max_heads, max_key_dim, attn_ratio, resolution)
        self.ls1 = ElasticLayerScale(max_dim, ls_init)
        self.norm2 = ElasticLayerNorm(max_dim)
        self.mlp = ElasticMlp(max_dim, max_dim * max_ratio)
        self.ls2 = ElasticLayerScale(max_dim, ls_init)

    def forward(self, x: torch.Tensor, mlp_ratio: int, heads: int, key_dim: int) -> torch.Tensor:
        x = x + self.ls1(self.token_mixer(self.norm1(x), heads, key_dim))
        return x + self.ls2(self.mlp(self.norm2(x), x.shape[-1] * mlp_ratio))

    def to_static(self, width: int, mlp_ratio: int, heads: int, key_dim: int) -> static.MetaBlock1d:
        tm: ElasticAttention = self.token_mixer  # type: ignore[assignment]
        out = static.MetaBlock1d(width, mlp_ratio, heads, key_dim, self.mixer, tm.attn_ratio, tm.resolution)
        shrink_into(self, out, skip=("token_mixer.",))
        out.token_mixer = tm.to_static(width, heads, key_dim)
        return out

    def absorb(self, block: static.MetaBlock1d) -> None:
        grow_from(block, self, skip=("token_mixer.",))
        self.token_mixer.absorb(block.token_mixer)
