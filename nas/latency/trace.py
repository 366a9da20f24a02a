"""Trace a torch model into the ops a mobile runtime executes, with their FLOPs and bytes moved.

The cost model (``nas.latency.costmodel``) predicts latency from these records, so this module decides what an op
*is* on a phone rather than in PyTorch eager:

- it intercepts every aten op (``TorchDispatchMode``), after PyTorch has decomposed ``linear``, ``reshape`` etc.;
- ops on constants only (weights, cached attention biases) are folded by the converter and cost nothing;
- BatchNorm after a convolution and an activation after a convolution/matmul are fused into it, as Core ML does;
- views that only split/merge leading dimensions or add/remove size-1 dimensions are free (Core ML's linear takes
  ``[B, N, C]`` directly), while real layout changes (a transpose, a reshape that moves the channel axis) cost a
  copy: EfficientFormer's observation that reshapes, not FLOPs, dominate on phones.

Bytes are counted in fp16 (the Core ML compute precision), activations in and out plus the weights a dense op reads.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

BYTES_PER_ELEMENT = 2  # fp16 on device

# op categories the cost model knows (one coefficient family each, see costmodel.FEATURES)
DENSE = "dense"          # convolutions (not depthwise) and matmuls: compute-bound
DEPTHWISE = "depthwise"  # depthwise convolutions: memory-bound
ELEMENTWISE = "elementwise"  # add, mul, unfused BN/activations, pooling, reductions
NORM = "norm"            # LayerNorm / GroupNorm: statistics at inference
SOFTMAX = "softmax"
LAYOUT = "layout"        # transposes, channel-moving reshapes, slices, concatenations
COMPOSITE_ACT = "composite_act"  # SiLU, HardSwish, Mish...: no fused Core ML activation, lowered to several ops
FUSED = "fused"          # folded into the producer (BN after conv, activation after conv/matmul)
FREE = "free"            # views that do not move data, ops on constants

CATEGORIES = (DENSE, DEPTHWISE, ELEMENTWISE, NORM, SOFTMAX, LAYOUT, COMPOSITE_ACT)

_MATMULS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addbmm"}
_NORMS = {"native_layer_norm", "native_group_norm", "layer_norm", "group_norm", "rms_norm", "_fused_rms_norm"}
_BATCH_NORMS = {"_native_batch_norm_legit_no_training", "native_batch_norm", "_native_batch_norm_legit",
                "batch_norm", "cudnn_batch_norm"}
# activations Core ML fuses into the preceding convolution / matmul
_ACTIVATIONS = {"relu", "relu_", "gelu", "gelu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "leaky_relu", "leaky_relu_",
                "hardtanh", "hardtanh_", "clamp", "clamp_", "clamp_min", "clamp_min_", "elu"}
# activations it lowers to a chain of elementwise ops (x * sigmoid(x), x * relu6(x + 3) / 6, ...)
_COMPOSITE_ACTIVATIONS = {"silu", "silu_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "mish", "mish_"}
_SOFTMAX = {"_softmax", "softmax", "_log_softmax", "log_softmax", "_safe_softmax"}
_VIEWS = {"view", "_unsafe_view", "reshape", "_reshape_alias", "flatten", "unflatten", "unsqueeze", "squeeze",
          "expand", "alias", "detach", "lift_fresh", "as_strided"}
_TRANSPOSES = {"permute", "transpose", "t", "swapaxes", "movedim", "pixel_shuffle", "pixel_unshuffle", "im2col",
               "col2im", "roll"}
_SLICES = {"slice", "select", "split", "split_with_sizes", "unbind", "chunk", "narrow", "cat", "stack",
           "index", "gather", "index_select", "constant_pad_nd", "pad"}
_COPIES = {"clone", "contiguous", "_to_copy", "copy_", "to"}  # the layout op that needed the copy is counted already
_FUSE_INTO = {DENSE, DEPTHWISE}


@dataclass(frozen=True)
class OpRecord:
    name: str         # the aten op, e.g. "convolution"
    category: str     # one of CATEGORIES, FUSED or FREE
    flops: float      # multiply-adds count twice
    bytes: float      # activations in + out (+ weights for dense ops), fp16


def _numel(t: torch.Tensor) -> int:
    return t.numel()


def _drop_ones(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(s) for s in shape if s != 1)


def _is_free_view(src: torch.Tensor, out: torch.Tensor) -> bool:
    """True if a view keeps the memory order a channel-last runtime sees: same shape without size-1 dims, or only the
    leading dimensions merged/split with the last dimension unchanged."""
    if _drop_ones(src.shape) == _drop_ones(out.shape):
        return True
    return src.dim() >= 1 and out.dim() >= 1 and src.shape[-1] == out.shape[-1]


def _is_free_transpose(src: torch.Tensor, out: torch.Tensor) -> bool:
    """A permutation that only moves size-1 dimensions moves no data: the other dims keep their sizes and strides
    in the same order."""
    if not isinstance(out, torch.Tensor):
        return False
    keep = lambda t: [(s, st) for s, st in zip(t.shape, t.stride()) if s != 1]  # noqa: E731
    return keep(src) == keep(out)


def _matmul_flops(name: str, tensors: list[torch.Tensor], out: torch.Tensor) -> float:
    """2 * output elements * reduction length (the first operand's last dim; addmm-style ops take a bias first)."""
    a = tensors[1] if name in ("addmm", "baddbmm", "addbmm") else tensors[0]
    return 2.0 * out.numel() * a.shape[-1]


class _Recorder(TorchDispatchMode):
    """Records each aten op on activations. Activations are the model input and everything computed from it."""

    def __init__(self, inputs: list[torch.Tensor]):
        super().__init__()
        self.records: list[OpRecord] = []
        self.producer: dict[int, str] = {id(t): "input" for t in inputs}  # id(activation) -> category that made it
        self._keep: list[torch.Tensor] = list(inputs)  # keep activations alive so their ids are not reused

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        acts = [t for t in tensors if id(t) in self.producer]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not acts:  # weights, buffers, cached biases: constant-folded by the converter
            return out
        if "scaled_dot_product" in name:  # fused attention, counted as what it runs: q k^T, softmax, A v
            self._record_attention(args, outs)
            return out
        category, flops = self._classify(name, tensors, acts, outs, args)
        act_bytes = sum(map(_numel, acts)) + sum(map(_numel, outs))
        if category in (DENSE, DEPTHWISE):  # weights are read once per inference
            act_bytes += sum(_numel(t) for t in tensors if id(t) not in self.producer)
        nbytes = BYTES_PER_ELEMENT * act_bytes
        self.records.append(OpRecord(name, category, flops, nbytes if category not in (FREE, FUSED) else 0.0))
        for t in outs:
            # a view or fused op passes its input's producer on, so that e.g. conv -> BN -> ReLU fuses as one kernel
            self.producer[id(t)] = self.producer[id(acts[0])] if category in (FREE, FUSED) else category
            self._keep.append(t)
        return out

    def _record_attention(self, args: Any, outs: list[torch.Tensor]) -> None:
        q, k, v = args[0], args[1], args[2]
        scores = q.shape[:-1].numel() * k.shape[-2]  # B * H * L * S
        qk_bytes = BYTES_PER_ELEMENT * (q.numel() + k.numel() + scores)
        av_bytes = BYTES_PER_ELEMENT * (scores + v.numel() + outs[0].numel())
        self.records += [OpRecord("attention.qk", DENSE, 2.0 * scores * q.shape[-1], qk_bytes),
                         OpRecord("attention.softmax", SOFTMAX, 0.0, 2 * BYTES_PER_ELEMENT * scores),
                         OpRecord("attention.av", DENSE, 2.0 * scores * v.shape[-1], av_bytes)]
        for t in outs:
            self.producer[id(t)] = DENSE
            self._keep.append(t)

    def _classify(self, name: str, tensors: list[torch.Tensor], acts: list[torch.Tensor], outs: list[torch.Tensor],
                  args: Any) -> tuple[str, float]:
        out: Any = outs[0] if outs else None
        if name == "convolution":
            x, w = args[0], args[1]
            groups = args[8] if len(args) > 8 else 1
            flops = 2.0 * out.numel() * (w.shape[1] * math.prod(w.shape[2:]))
            depthwise = groups > 1 and groups == x.shape[1]
            return (DEPTHWISE if depthwise else DENSE), flops
        if name in _MATMULS:
            return DENSE, _matmul_flops(name, tensors, out)
        if name in _BATCH_NORMS:
            return (FUSED if self.producer.get(id(acts[0])) in _FUSE_INTO else ELEMENTWISE), 0.0
        if name in _ACTIVATIONS:
            return (FUSED if self.producer.get(id(acts[0])) in _FUSE_INTO else ELEMENTWISE), 0.0
        if name in _COMPOSITE_ACTIVATIONS:
            return COMPOSITE_ACT, 0.0
        if name in _NORMS:
            return NORM, 0.0
        if name in _SOFTMAX:
            return SOFTMAX, 0.0
        if name in _VIEWS:
            return (FREE if out is None or _is_free_view(acts[0], out) else LAYOUT), 0.0
        if name in _TRANSPOSES:
            return (FREE if _is_free_transpose(acts[0], out) else LAYOUT), 0.0
        if name in _SLICES:
            return LAYOUT, 0.0
        if name in _COPIES:
            return FREE, 0.0
        return ELEMENTWISE, 0.0


@torch.no_grad()
def trace_ops(model: nn.Module, example: torch.Tensor) -> list[OpRecord]:
    """The ops ``model`` runs on ``example`` (eval mode), as a phone runtime would execute them."""
    was_training = model.training
    model.eval()
    try:
        with _Recorder([example]) as recorder:
            model(example)
    finally:
        model.train(was_training)
    return recorder.records


def summarize(records: Sequence[OpRecord]) -> dict[str, float]:
    """Totals per category: ``<cat>_mb``, ``<cat>_gflop`` (dense/depthwise), ``<cat>_ops``, and ``macs_g``."""
    out: dict[str, float] = {}
    counts = Counter(r.category for r in records)
    for cat in CATEGORIES:
        rs = [r for r in records if r.category == cat]
        out[f"{cat}_mb"] = sum(r.bytes for r in rs) / 1e6
        out[f"{cat}_ops"] = float(counts[cat])
        out[f"{cat}_gflop"] = sum(r.flops for r in rs) / 1e9
    out["macs_g"] = sum(r.flops for r in records) / 2e9
    out["kernels"] = float(sum(counts[c] for c in CATEGORIES))
    return out
