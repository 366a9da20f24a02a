"""How the students of a sandwich step learn from the largest subnet's predictions (in-place distillation).

- ``kl`` (BigNAS, Once-for-All; the default): KL(teacher || student) of the softmax outputs.
- ``alpha`` (AlphaNet, Wang et al., ICML 2021): the adaptive α-divergence, per image the larger of the
  divergences at α = -1 and α = +1, so a student is pushed both to cover the teacher's modes and not to put mass
  where the teacher has none; importance ratios clipped at ``IW_CLIP`` as in the paper's code. Its gradient is
  taken through the surrogate the paper derives (the divergence itself is returned for the log).

Each loss is ``(student_logits, teacher_logits) -> (loss to backpropagate, value to log)``; the teacher's logits
are detached by the caller.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nas import registry

IW_CLIP = 5.0          # AlphaNet's clip of the importance weights p / q
ALPHA_RANGE = (-1.0, 1.0)

Distillation = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
DISTILLATIONS: dict[str, Distillation] = {}


def distillation(name: str) -> Callable[[Distillation], Distillation]:
    def register(fn: Distillation) -> Distillation:
        return registry.add(DISTILLATIONS, name, fn, "distillation")

    return register


@distillation("kl")
def kl(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loss = F.kl_div(student.log_softmax(dim=-1), teacher.softmax(dim=-1), reduction="batchmean")
    return loss, loss


def _f_divergence(student: torch.Tensor, teacher: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: D_alpha(teacher || student) and AlphaNet's surrogate whose gradient is the divergence's."""
    q, p = student.softmax(dim=1).detach(), teacher.softmax(dim=1).detach()
    log_q = student.log_softmax(dim=1)          # the only path gradients take
    ratio = p / q
    if abs(alpha) < 1e-3:
        ratio = ratio.clamp(0, IW_CLIP)
        f, base, rho = -ratio.log(), 0.0, ratio.log() - 1.0
    elif abs(alpha - 1.0) < 1e-3:
        f, base, rho = ratio * ratio.log(), 0.0, ratio
    else:
        weight = ratio.pow(alpha).clamp(0, IW_CLIP)
        base = 1.0 / alpha / (alpha - 1.0)
        f, rho = weight / alpha / (alpha - 1.0), weight / alpha + base
    return (q * (f - base)).sum(dim=1), -(q * rho * log_q).sum(dim=1)


@distillation("alpha")
def alpha_divergence(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    low, low_grad = _f_divergence(student, teacher, ALPHA_RANGE[0])
    high, high_grad = _f_divergence(student, teacher, ALPHA_RANGE[1])
    pick = low > high
    return torch.where(pick, low_grad, high_grad).mean(), torch.where(pick, low, high).mean()
