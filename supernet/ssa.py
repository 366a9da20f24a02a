"""MobileViTv2's separable self-attention (``ssa``, Mehta & Rastegari 2022) as an MB3D token mixer.

On ``[B, N, C]`` tokens it is the paper's equation over all N tokens (timm's ``LinearSelfAttention`` with one pixel
per patch, which is what a 7x7 grid allows: MobileViTv2's 2x2 patches need an even grid):

    q, k, v = x W_qkv  (rows [1 | C | C]: one latent-token score, keys, values)
    y = (ReLU(v) * sum_n softmax_n(q) k_n) W_out

Linear in N, no N x N matrix, no heads or key dim: the width is its only elastic knob. There is no norm inside
(MobileViTv2's GroupNorm sits in its own block; here the MB3D block's LayerNorm comes before the mixer).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.init import trunc_normal_

from nas.space import MixerChoices
from supernet.mixers import ElasticMixer, register_mixer


class SeparableSelfAttention(nn.Module):
    """Static SSA; ``qkv_proj``/``out_proj`` are timm's 1x1 convs of ``LinearSelfAttention`` as Linears.

    ``num_heads``, ``key_dim``, ``attn_ratio`` and ``resolution`` are taken for the mixers' common signature and
    unused: SSA has none of these knobs and works at any number of tokens."""

    def __init__(self, dim: int, num_heads: int = 0, key_dim: int = 0, attn_ratio: int = 0, resolution: int = 7):
        super().__init__()
        self.dim = dim
        self.qkv_proj = nn.Linear(dim, 1 + 2 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_proj(x).split([1, self.dim, self.dim], dim=-1)
        scores = q.softmax(dim=1)                              # over the tokens: the latent token's attention
        context = (k * scores).sum(dim=1, keepdim=True)        # [B, 1, C]
        return self.out_proj(F.relu(v) * context)


class ElasticSSA(ElasticMixer):
    """SSA with elastic width: query, key and value are stored apart so that each is a leading slice (the static
    twin re-concatenates them in timm's ``[query(1) | key(C) | value(C)]`` row order)."""

    def __init__(self, max_dim: int, *, choices: MixerChoices, resolution: int):
        super().__init__()
        self.q_weight = nn.Parameter(torch.empty(1, max_dim))
        self.q_bias = nn.Parameter(torch.zeros(1))
        self.k_weight = nn.Parameter(torch.empty(max_dim, max_dim))
        self.k_bias = nn.Parameter(torch.zeros(max_dim))
        self.v_weight = nn.Parameter(torch.empty(max_dim, max_dim))
        self.v_bias = nn.Parameter(torch.zeros(max_dim))
        self.out_weight = nn.Parameter(torch.empty(max_dim, max_dim))
        self.out_bias = nn.Parameter(torch.zeros(max_dim))
        for w in (self.q_weight, self.k_weight, self.v_weight, self.out_weight):
            trunc_normal_(w, std=0.02)

    def active_weights(self, dim: int) -> dict[str, torch.Tensor]:
        return {
            "qkv_proj.weight": torch.cat([self.q_weight[:, :dim], self.k_weight[:dim, :dim],
                                          self.v_weight[:dim, :dim]]),
            "qkv_proj.bias": torch.cat([self.q_bias, self.k_bias[:dim], self.v_bias[:dim]]),
            "out_proj.weight": self.out_weight[:dim, :dim],
            "out_proj.bias": self.out_bias[:dim],
        }

    def forward(self, x: torch.Tensor, heads: int, key_dim: int) -> torch.Tensor:
        c = x.shape[-1]
        w = self.active_weights(c)
        q, k, v = F.linear(x, w["qkv_proj.weight"], w["qkv_proj.bias"]).split([1, c, c], dim=-1)
        context = (k * q.softmax(dim=1)).sum(dim=1, keepdim=True)
        return F.linear(F.relu(v) * context, w["out_proj.weight"], w["out_proj.bias"])

    @torch.no_grad()
    def to_static(self, dim: int, heads: int, key_dim: int) -> SeparableSelfAttention:
        out = SeparableSelfAttention(dim)
        sd = out.state_dict(keep_vars=True)
        for name, t in self.active_weights(dim).items():
            sd[name].copy_(t)
        return out

    @torch.no_grad()
    def absorb(self, static: nn.Module) -> None:
        assert isinstance(static, SeparableSelfAttention)
        c = static.dim
        q, k, v = static.qkv_proj.weight.split([1, c, c])
        qb, kb, vb = static.qkv_proj.bias.split([1, c, c])
        self.q_weight[:, :c].copy_(q)
        self.q_bias.copy_(qb)
        self.k_weight[:c, :c].copy_(k)
        self.k_bias[:c].copy_(kb)
        self.v_weight[:c, :c].copy_(v)
        self.v_bias[:c].copy_(vb)
        self.out_weight[:c, :c].copy_(static.out_proj.weight)
        self.out_bias[:c].copy_(static.out_proj.bias)


register_mixer("ssa", SeparableSelfAttention, ElasticSSA, knobs=(),
               paper="MobileViTv2 (Mehta & Rastegari, 2022): separable self-attention, linear in tokens",
               timm_family="mobilevitv2_")
