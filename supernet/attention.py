"""EfficientFormer's multi-head self-attention (``mhsa``): the static module and its elastic twin.

The static ``Attention`` has timm's parameter names (``qkv``, ``proj``, ``attention_biases``), so timm's
EfficientFormer weights load into it unchanged. The elastic twin stores its weights per head so that the active
heads and key dim are leading slices.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.init import trunc_normal_

from nas.space import MixerChoices
from supernet.mixers import ElasticMixer, register_mixer


def relative_position_index(resolution: int) -> torch.Tensor:
    """[N, N] index into a [heads, N] bias table by (|dy|, |dx|), as in EfficientFormer and LeViT."""
    coords = torch.stack(torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).abs()
    return rel[0] * resolution + rel[1]


class Attention(nn.Module):
    """EfficientFormer's MHSA with a learned relative-position bias; qkv rows are head-interleaved [q|k|v]."""

    def __init__(self, dim: int, key_dim: int = 32, num_heads: int = 8, attn_ratio: int = 4, resolution: int = 7):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.val_dim = attn_ratio * key_dim
        self.scale = key_dim ** -0.5
        self.qkv = nn.Linear(dim, num_heads * (2 * key_dim + self.val_dim))
        self.proj = nn.Linear(num_heads * self.val_dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", relative_position_index(resolution))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, self.num_heads, -1).permute(0, 2, 1, 3)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.val_dim], dim=3)
        # (no class-level annotation of the buffer: TorchScript cannot resolve it under postponed annotations)
        bias = self.attention_biases[:, self.attention_bias_idxs]  # type: ignore[index]
        attn = (q @ k.transpose(-2, -1)) * self.scale + bias
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, self.num_heads * self.val_dim)
        return self.proj(x)


class ElasticAttention(ElasticMixer):
    """MHSA with elastic width, heads and key dim.

    Weights are stored per head: ``qkv_weight[h]`` holds that head's q rows (max key dim), then k rows, then v rows
    (attn_ratio * max key dim), so the active ``heads x key_dim`` is a leading slice of each part; the active
    weight is re-interleaved into timm's ``[q|k|v]``-per-head row order, so the static twin is a plain Linear.
    """

    attention_bias_idxs: torch.Tensor

    def __init__(self, max_dim: int, *, choices: MixerChoices, resolution: int):
        super().__init__()
        max_heads, max_key_dim, attn_ratio = max(choices.heads), max(choices.key_dims), choices.attn_ratio
        self.max_key_dim = max_key_dim
        self.attn_ratio = attn_ratio
        self.resolution = resolution
        rows = (2 + attn_ratio) * max_key_dim
        self.qkv_weight = nn.Parameter(torch.empty(max_heads, rows, max_dim))
        self.qkv_bias = nn.Parameter(torch.zeros(max_heads, rows))
        self.proj_weight = nn.Parameter(torch.empty(max_dim, max_heads, attn_ratio * max_key_dim))
        self.proj_bias = nn.Parameter(torch.zeros(max_dim))
        self.attention_biases = nn.Parameter(torch.zeros(max_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", relative_position_index(resolution))
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
    def to_static(self, dim: int, heads: int, key_dim: int) -> Attention:
        out = Attention(dim, key_dim, heads, self.attn_ratio, self.resolution)
        sd = out.state_dict(keep_vars=True)
        for name, t in self.active_weights(dim, heads, key_dim).items():
            sd[name].copy_(t)
        return out

    @torch.no_grad()
    def absorb(self, attn: nn.Module) -> None:
        assert isinstance(attn, Attention)
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


register_mixer("mhsa", Attention, ElasticAttention, knobs=("heads", "key_dims", "attn_ratio"),
               paper="EfficientFormer (Li et al., NeurIPS 2022): multi-head self-attention with a position bias",
               timm_family="efficientformer_l")
