"""EfficientViT's cascaded group attention (``cga``, Liu et al., CVPR 2023) as an MB3D token mixer.

Each head attends over its own share of the channels, and each head's output is added to the next head's input
(the cascade), so later heads refine what earlier ones found. Per head j (timm's ``CascadedGroupAttention``):

    feat = split_j (+ out_{j-1});  q, k, v = BN(W_j feat)             # v has width / heads channels
    q = BN(DWConv_kj(q))                                             # a depthwise conv on q only, kernel per head
    out_j = v softmax(q^T k / sqrt(kd) + bias_j)^T
    y = BN(W_proj ReLU(cat_j out_j))

Choices made here, before any weight is trained (see ``docs/space.md``):

- **strided heads**: residual channel ``c`` goes to head ``c % h`` (timm's module takes contiguous chunks). With
  chunks, which head sees a channel changes with the active width, so one weight would multiply different
  channels at different widths; with strides a channel keeps its head and its column at every width. It is timm's
  module on permuted input channels, which the equivalence test checks.
- the value dim per head is tied to ``width // heads`` (the cascade adds a head's output to the next split), so
  CGA has no ``attn_ratio``; heads and key dim are its knobs.
- heads share poorly (``width / heads`` changes every head's input and which channels it sees), so the elastic
  slot keeps **one weight set per head count**, and slices width and key dim inside it.
- the per-head q kernels are EfficientViT's ``(7, 5, 3, 3)`` (M1, M2, M4, M5), cycled over the heads.
- the projection BN starts at gamma = 1, not EfficientViT's 0: MB3D's layer scale already starts the branch near 0,
  and two zero-ish factors in series would barely train.

Every BN follows a convolution, so all fold at export; tokens are ``[B, N, C]`` in and out, with one layout copy
each way (tokens to per-head channel-major, and back).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.init import trunc_normal_

from nas.errors import ArchError
from nas.space import MixerChoices
from supernet.attention import relative_position_index
from supernet.elastic import ElasticBatchNorm2d
from supernet.mixers import ElasticMixer, register_mixer

Q_KERNELS = (7, 5, 3, 3)   # EfficientViT-M1/M2/M4/M5's per-head depthwise kernels on q, cycled over the heads


def q_kernel(head: int) -> int:
    return Q_KERNELS[head % len(Q_KERNELS)]


class ConvNorm1d(nn.Sequential):
    """1x1 convolution (no bias) + BatchNorm on channel-major tokens ``[B, C, N]``."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv = nn.Conv1d(in_chs, out_chs, 1, bias=False)
        self.bn = nn.BatchNorm1d(out_chs)


class DWConvNorm(nn.Sequential):
    """Depthwise k x k convolution (no bias) + BatchNorm on a ``[B, C, H, W]`` grid."""

    def __init__(self, chs: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(chs, chs, kernel, padding=kernel // 2, groups=chs, bias=False)
        self.bn = nn.BatchNorm2d(chs)


class CascadedGroupAttention(nn.Module):
    """Static CGA on ``[B, N, C]`` tokens of a ``resolution x resolution`` grid (strided heads, see the module)."""

    def __init__(self, dim: int, num_heads: int = 4, key_dim: int = 16, attn_ratio: int = 0, resolution: int = 7):
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ArchError(f"cascaded group attention: width {dim} is not divisible by {num_heads} heads; accepted: "
                            "a head count dividing the width")
        self.num_heads, self.key_dim, self.val_dim = num_heads, key_dim, dim // num_heads
        self.resolution = resolution
        self.scale = key_dim ** -0.5
        self.qkvs = nn.ModuleList(ConvNorm1d(self.val_dim, 2 * key_dim + self.val_dim) for _ in range(num_heads))
        self.dws = nn.ModuleList(DWConvNorm(key_dim, q_kernel(j)) for j in range(num_heads))
        self.proj = ConvNorm1d(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", relative_position_index(resolution))

    @torch.jit.unused
    def head_layers(self, j: int) -> tuple[ConvNorm1d, DWConvNorm]:
        """Head ``j``'s qkv projection and q depthwise conv, typed (a ModuleList only knows it holds modules)."""
        qkv, dw = self.qkvs[j], self.dws[j]
        assert isinstance(qkv, ConvNorm1d) and isinstance(dw, DWConvNorm)
        return qkv, dw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        kd, dv, r = self.key_dim, self.val_dim, self.resolution
        splits = x.reshape(B, N, dv, self.num_heads).permute(0, 3, 2, 1)        # [B, h, C/h, N]; channel c -> c % h
        bias = self.attention_biases[:, self.attention_bias_idxs]  # type: ignore[index]
        outs = []
        feat = splits[:, 0]
        for j, (qkv, dw) in enumerate(zip(self.qkvs, self.dws)):
            if j > 0:
                feat = feat + splits[:, j]                                     # the cascade
            q, k, v = qkv(feat).split([kd, kd, dv], dim=1)
            q = dw(q.reshape(B, kd, r, r)).flatten(2)
            attn = ((q * self.scale).transpose(-2, -1) @ k + bias[j]).softmax(dim=-1)
            feat = v @ attn.transpose(-2, -1)                                  # [B, C/h, N]
            outs.append(feat)
        return self.proj(F.relu(torch.cat(outs, dim=1))).transpose(1, 2)


# ------------------------------------------------------------------------------------------------ elastic twin


class _HeadCountWeights(nn.Module):
    """The weights of one head count at the largest width and key dim. q, k and v are stored apart (with their
    BatchNorms) so that the active key dim and width are leading slices of each."""

    def __init__(self, max_dim: int, heads: int, max_key_dim: int, resolution: int):
        super().__init__()
        dv = max_dim // heads
        self.q_weight = nn.Parameter(torch.empty(heads, max_key_dim, dv))
        self.k_weight = nn.Parameter(torch.empty(heads, max_key_dim, dv))
        self.v_weight = nn.Parameter(torch.empty(heads, dv, dv))
        self.q_bn = nn.ModuleList(ElasticBatchNorm2d(max_key_dim) for _ in range(heads))
        self.k_bn = nn.ModuleList(ElasticBatchNorm2d(max_key_dim) for _ in range(heads))
        self.v_bn = nn.ModuleList(ElasticBatchNorm2d(dv) for _ in range(heads))
        self.dws = nn.ModuleList(nn.Conv2d(max_key_dim, max_key_dim, q_kernel(j), groups=max_key_dim, bias=False)
                                 for j in range(heads))
        self.dw_bn = nn.ModuleList(ElasticBatchNorm2d(max_key_dim) for _ in range(heads))
        self.proj_weight = nn.Parameter(torch.empty(max_dim, heads, dv))
        self.proj_bn = ElasticBatchNorm2d(max_dim)
        self.attention_biases = nn.Parameter(torch.zeros(heads, resolution * resolution))
        for w in (self.q_weight, self.k_weight, self.v_weight, self.proj_weight):
            trunc_normal_(w, std=0.02)

    def dw(self, j: int) -> nn.Conv2d:
        conv = self.dws[j]
        assert isinstance(conv, nn.Conv2d)
        return conv


def _bn_tensors(bns: list[nn.Module], sizes: list[int]) -> dict[str, torch.Tensor]:
    """The leading ``sizes`` of several BatchNorms, concatenated (one static BN over q, k and v rows)."""
    names = ("weight", "bias", "running_mean", "running_var")
    return {n: torch.cat([getattr(bn, n)[:size] for bn, size in zip(bns, sizes)]) for n in names}


class ElasticCGA(ElasticMixer):
    """CGA with elastic width and key dim, one weight set per head count of the space."""

    attention_bias_idxs: torch.Tensor

    def __init__(self, max_dim: int, *, choices: MixerChoices, resolution: int):
        super().__init__()
        self.max_key_dim, self.resolution = max(choices.key_dims), resolution
        self.per_heads = nn.ModuleDict({str(h): _HeadCountWeights(max_dim, h, self.max_key_dim, resolution)
                                        for h in choices.heads})
        self.register_buffer("attention_bias_idxs", relative_position_index(resolution))

    def weights(self, heads: int) -> _HeadCountWeights:
        w = self.per_heads[str(heads)]
        assert isinstance(w, _HeadCountWeights)
        return w

    def forward(self, x: torch.Tensor, heads: int, key_dim: int) -> torch.Tensor:
        B, N, C = x.shape
        w, kd, dv, r = self.weights(heads), key_dim, C // heads, self.resolution
        splits = x.reshape(B, N, dv, heads).permute(0, 3, 2, 1)
        bias = w.attention_biases[:, self.attention_bias_idxs]
        outs = []
        feat = splits[:, 0]
        for j in range(heads):
            if j > 0:
                feat = feat + splits[:, j]
            q = w.q_bn[j](w.q_weight[j, :kd, :dv] @ feat)
            k = w.k_bn[j](w.k_weight[j, :kd, :dv] @ feat)
            v = w.v_bn[j](w.v_weight[j, :dv, :dv] @ feat)
            dw = w.dw(j)
            q = F.conv2d(q.reshape(B, kd, r, r), dw.weight[:kd], None, 1, dw.kernel_size[0] // 2, 1, kd)
            q = w.dw_bn[j](q).flatten(2)
            attn = ((q * kd ** -0.5).transpose(-2, -1) @ k + bias[j]).softmax(dim=-1)
            feat = v @ attn.transpose(-2, -1)
            outs.append(feat)
        proj = w.proj_weight[:C, :heads, :dv].reshape(C, C)
        return w.proj_bn(proj @ F.relu(torch.cat(outs, dim=1))).transpose(1, 2)

    @torch.no_grad()
    def to_static(self, dim: int, heads: int, key_dim: int) -> CascadedGroupAttention:
        out = CascadedGroupAttention(dim, heads, key_dim, resolution=self.resolution)
        w, kd, dv = self.weights(heads), key_dim, dim // heads
        for j in range(heads):
            qkv, dws = out.head_layers(j)
            qkv.conv.weight[:, :, 0].copy_(torch.cat([w.q_weight[j, :kd, :dv], w.k_weight[j, :kd, :dv],
                                                      w.v_weight[j, :dv, :dv]]))
            for name, t in _bn_tensors([w.q_bn[j], w.k_bn[j], w.v_bn[j]], [kd, kd, dv]).items():
                getattr(qkv.bn, name).copy_(t)
            dws.conv.weight.copy_(w.dw(j).weight[:kd])
            for name, t in _bn_tensors([w.dw_bn[j]], [kd]).items():
                getattr(dws.bn, name).copy_(t)
        out.proj.conv.weight[:, :, 0].copy_(w.proj_weight[:dim, :heads, :dv].reshape(dim, dim))
        for name, t in _bn_tensors([w.proj_bn], [dim]).items():
            getattr(out.proj.bn, name).copy_(t)
        out.attention_biases.copy_(w.attention_biases)
        return out

    @torch.no_grad()
    def absorb(self, static: nn.Module) -> None:
        assert isinstance(static, CascadedGroupAttention)
        heads, kd, dv = static.num_heads, static.key_dim, static.val_dim
        dim, w = heads * dv, self.weights(static.num_heads)
        for j in range(heads):
            qkv, dws = static.head_layers(j)
            q, k, v = qkv.conv.weight[:, :, 0].split([kd, kd, dv])
            w.q_weight[j, :kd, :dv].copy_(q)
            w.k_weight[j, :kd, :dv].copy_(k)
            w.v_weight[j, :dv, :dv].copy_(v)
            for name in ("weight", "bias", "running_mean", "running_var"):
                for bn, part in zip((w.q_bn[j], w.k_bn[j], w.v_bn[j]), getattr(qkv.bn, name).split([kd, kd, dv])):
                    getattr(bn, name)[:part.shape[0]].copy_(part)
                getattr(w.dw_bn[j], name)[:kd].copy_(getattr(dws.bn, name))
            w.dw(j).weight[:kd].copy_(dws.conv.weight)
        w.proj_weight[:dim, :heads, :dv].copy_(static.proj.conv.weight[:, :, 0].view(dim, heads, dv))
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(w.proj_bn, name)[:dim].copy_(getattr(static.proj.bn, name))
        w.attention_biases.copy_(static.attention_biases)


register_mixer("cga", CascadedGroupAttention, ElasticCGA, knobs=("heads", "key_dims"), heads_split_width=True,
               paper="EfficientViT (Liu et al., CVPR 2023): cascaded group attention",
               timm_family="efficientvit_m")
