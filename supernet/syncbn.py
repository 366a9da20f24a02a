"""Synchronised BatchNorm for data-parallel supernet training, on any backend (gloo on CPU, NCCL on GPUs).

On N workers each holding a shard of the global batch, plain BatchNorm normalises each shard by its own statistics,
so N workers do not train the same function as one process with the whole batch. Here the per-channel sums of
x and x² (and the count) are summed over the workers with an autograd-aware all-reduce, so both the forward pass
and the gradients are those of BatchNorm over the global batch. torch's ``nn.SyncBatchNorm`` does the same but
only on GPUs and only for full-width layers; the supernet's BatchNorms are elastic (a leading slice of channels).

Sums are taken in float64: the single-pass variance E[x²] - E[x]² then loses nothing that float32 BatchNorm keeps.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def enable_sync_batchnorm(model: nn.Module) -> int:
    """Switch every elastic BatchNorm of ``model`` to global-batch statistics; returns how many. Needs an
    initialised ``torch.distributed`` process group when training."""
    norms = [m for m in model.modules() if hasattr(m, "sync_batch_stats")]
    for m in norms:
        setattr(m, "sync_batch_stats", True)   # noqa: B010 - the attribute of ElasticBatchNorm2d, set by name
    plain = [type(m).__name__ for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and not hasattr(m, "sync_batch_stats")]
    if plain:
        raise TypeError(f"sync BatchNorm covers elastic BatchNorms only; this model also has {plain[0]}")
    return len(norms)


def global_batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                      weight: torch.Tensor, bias: torch.Tensor, momentum: float, eps: float) -> torch.Tensor:
    """Training-mode BatchNorm of ``x`` ([B, C, ...]) with the statistics of every worker's ``x`` together; the
    running statistics (views into the module's buffers) are updated in place as ``F.batch_norm`` would."""
    import warnings

    import torch.distributed as dist
    from torch.distributed.nn.functional import all_reduce

    c = x.shape[1]
    dims = [0] + list(range(2, x.dim()))
    x64 = x.double()
    local = torch.cat([x64.sum(dims), (x64 * x64).sum(dims),
                       torch.tensor([x.numel() / c], dtype=torch.float64, device=x.device)])
    total = local
    if dist.is_available() and dist.is_initialized():
        with warnings.catch_warnings():   # deprecated for a private module (_functional_collectives); still works
            warnings.simplefilter("ignore", FutureWarning)
            total = all_reduce(local)
    count = total[-1]
    mean = total[:c] / count
    var = (total[c:2 * c] / count - mean * mean).clamp_min(0)
    shape = [1, c] + [1] * (x.dim() - 2)
    scale = (torch.rsqrt(var + eps) * weight.double()).view(shape)
    out = (x64 - mean.view(shape)) * scale + bias.double().view(shape)
    with torch.no_grad():
        n = float(count)
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        running_var.mul_(1 - momentum).add_((var * n / max(n - 1, 1)).to(running_var.dtype), alpha=momentum)
    return out.to(x.dtype)
