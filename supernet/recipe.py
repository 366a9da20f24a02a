"""The training recipe both supernet and stand-alone training follow: timm's optimizer and cosine schedule,
mixed precision, mixup/cutmix, hard distillation from a timm teacher, and the settings checks that refuse, before
any work, what cannot work together. One place, so that "trained alone with the same recipe as the supernet"
(``nas supernet rank``) means the same code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas.errors import UsageError
from supernet.config import TrainConfig


def load_state_dict_file(path: str | Path, flag: str = "--init-timm",
                         expected: str = "a timm EfficientFormer state dict") -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a weights-only torch file (a bare state dict, or one under 'model' /
    'state_dict' as training scripts save them); never unpickles code."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{flag} {path}: no such file ({expected}, .safetensors or .pth)")
    from safetensors import SafetensorError

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{flag} {path} is not a readable weights-only state dict ({first})") from None
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UsageError(f"{flag} {path}: not a state dict of tensors")
    return sd


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """timm's ``create_optimizer_v2`` (``cfg.opt``, AdamW by default) with weight decay on weights only (not on
    norms, biases and layer scales: timm's own filter). The architecture logits α (``metapath.*``) are trained only
    with ``--gumbel``, in their own group: at ``alpha_lr``, no decay, no schedule (DARTS' and GDAS' practice: α's
    steps do not follow the weights' warmup and cosine)."""
    from timm.optim import create_optimizer_v2

    named = [(n, p) for n, p in model.named_parameters() if not n.startswith("metapath.")]
    groups: list[dict[str, Any]] = [
        {"params": [p for _, p in named if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for _, p in named if p.ndim <= 1], "weight_decay": 0.0}]
    if cfg.gumbel:
        alphas = [p for n, p in model.named_parameters() if n.startswith("metapath.")]
        groups.append({"params": alphas, "weight_decay": 0.0, "lr": cfg.alpha_lr, "fixed_lr": True})
    return create_optimizer_v2(groups, opt=cfg.opt, lr=cfg.lr)    # cfg.opt was checked by check_config


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, total_steps: int):
    """timm's cosine schedule with a linear warmup of ``warmup_epochs``, stepped every optimiser step. It is a pure
    function of the step (``step_update(step + 1)`` gives lr × (step + 1) / warmup, then the cosine to 0), which is
    what makes resuming exact without scheduler state."""
    from timm.scheduler import CosineLRScheduler

    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warmup), lr_min=0.0, warmup_t=warmup,
                             warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)


def check_config(cfg: TrainConfig, device: str, world: int = 1) -> None:
    """Refuse settings that cannot work together, in one line, before any work."""
    per_worker, rest = divmod(cfg.batch_size, world)
    if rest:
        raise UsageError(f"--batch-size {cfg.batch_size} does not split over --num-workers {world}; use a multiple "
                         f"of {world} (the batch size is the global one, whatever the number of workers)")
    if per_worker % cfg.accum_steps:
        raise UsageError(f"--accum-steps {cfg.accum_steps} does not divide the {per_worker} images per worker and "
                         f"step; use a divisor of {per_worker}")
    if (cfg.mixup or cfg.cutmix) and (per_worker // cfg.accum_steps) % 2:
        raise UsageError(f"--mixup/--cutmix mix pairs within a micro-batch of {per_worker // cfg.accum_steps} "
                         "images; make it even (--batch-size / --num-workers / --accum-steps)")
    if cfg.amp not in AMP_DTYPES:
        raise UsageError(f"--amp {cfg.amp}: not one of {', '.join(AMP_DTYPES)}")
    if cfg.amp == "fp16" and device != "cuda":
        raise UsageError("--amp fp16 needs --torch-device cuda (float16 matmuls on CPU are slow and need loss "
                         "scaling); use --amp bf16 on CPU")
    if bool(cfg.teacher) != bool(cfg.teacher_weights):
        raise UsageError("--teacher and --teacher-weights go together: a timm model name and its weights file "
                         "(nothing is downloaded)")
    from supernet.distill import DISTILLATIONS
    from supernet.sampling import SAMPLERS

    if cfg.kd not in DISTILLATIONS:
        raise UsageError(f"--kd {cfg.kd}: not a distillation; accepted: {', '.join(DISTILLATIONS)}")
    if cfg.sampling not in SAMPLERS:
        raise UsageError(f"--sampling {cfg.sampling}: not a subnet sampler; accepted: {', '.join(SAMPLERS)}")
    from timm.optim import get_optimizer_info

    try:       # timm's own parse: an optional prefix such as lookahead_, then the optimizer's registered name
        get_optimizer_info(cfg.opt.lower().split("_")[-1])
    except ValueError:
        raise UsageError(f"--opt {cfg.opt}: not an optimizer timm knows; e.g. adamw, sgd, lamb "
                         "(timm.optim.list_optimizers() lists them)") from None





def head_classes(cfg: TrainConfig) -> int:
    """The head's outputs: ``--num-classes``, else the data's number of classes (a folder's class folders, a
    built-in dataset's classes), so the head follows the data rather than the space's YAML. Fewer outputs than the
    data has classes cannot learn them and is refused."""
    from nas.data import num_classes

    found = num_classes(cfg.data)
    if cfg.num_classes is not None and cfg.num_classes < found:
        raise UsageError(f"--num-classes {cfg.num_classes}: {cfg.data} has {found} classes; give at least {found} "
                         "(or leave it out: the head then has the data's number)")
    return cfg.num_classes or found


AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(cfg: TrainConfig, device: str):
    dtype = AMP_DTYPES[cfg.amp]
    return torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None)


def make_mixup(cfg: TrainConfig, num_classes: int) -> Any:
    """timm's ``Mixup`` when ``--mixup``/``--cutmix`` are on, else None."""
    if not (cfg.mixup or cfg.cutmix):
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                 num_classes=num_classes)


def load_teacher(cfg: TrainConfig, num_classes: int, device: str) -> nn.Module | None:
    """The frozen timm teacher of ``--teacher`` with its ``--teacher-weights`` (None without one)."""
    if not cfg.teacher:
        return None
    import timm

    assert cfg.teacher_weights
    try:
        teacher = timm.create_model(cfg.teacher, pretrained=False, num_classes=num_classes)
    except RuntimeError as exc:   # timm: "Unknown model (...)"
        raise UsageError(f"--teacher {cfg.teacher}: {exc}; see timm.list_models()") from None
    weights = load_state_dict_file(cfg.teacher_weights, "--teacher-weights", f"{cfg.teacher}'s weights")
    fits = f"--teacher-weights {cfg.teacher_weights} does not fit {cfg.teacher} with {num_classes} classes"
    try:
        missing, unexpected = teacher.load_state_dict(weights, strict=False)
    except RuntimeError as exc:   # a tensor of another shape
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), "")
        raise UsageError(f"{fits} ({detail or 'tensor shapes differ'})") from None
    if missing or unexpected:
        raise UsageError(f"{fits} (e.g. {(missing or unexpected)[0]})")
    return teacher.to(device).eval().requires_grad_(False)


def mixing_seed(cfg: TrainConfig, step: int, rank: int = 0, micro: int = 0) -> int:
    """The seed of one micro-batch's mixup draws: a function of (seed, step, worker, micro-batch)."""
    return (cfg.seed * 1_000_003 + step) * 1_000_003 + rank * cfg.accum_steps + micro


def mix_batch(mixup: Any, images: torch.Tensor, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, Any]:
    """Mixup/cutmix of a batch with its draws (numpy's and torch's) seeded by ``seed``, so a resumed run mixes the
    same way."""
    import numpy as np

    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return mixup(images, labels)


def label_loss(cfg: TrainConfig, logits: torch.Tensor, labels: torch.Tensor, mixed_targets: Any = None,
               teacher: nn.Module | None = None, images: torch.Tensor | None = None, device: str = "cpu"
               ) -> torch.Tensor:
    """The loss of a model learning from labels: cross-entropy with label smoothing (or soft targets after
    mixup), half replaced by the teacher's top class with ``--teacher`` (DeiT's hard distillation)."""
    import torch.nn.functional as F

    if mixed_targets is not None:
        from timm.loss import SoftTargetCrossEntropy

        loss = SoftTargetCrossEntropy()(logits, mixed_targets)
    else:
        loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
    if teacher is not None:
        assert images is not None
        with torch.no_grad(), autocast(cfg, device):
            hard = teacher(images).argmax(dim=-1)
        loss = 0.5 * loss + 0.5 * F.cross_entropy(logits, hard)
    return loss
