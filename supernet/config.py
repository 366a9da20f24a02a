"""Training settings and the evaluation recipe's sizes: torch-free, so the command line reads its defaults here.

``TrainConfig`` is what a checkpoint records and a resume must match; each field's default is the command's.
"""
from __future__ import annotations

import dataclasses
from typing import Any

# The inherited-accuracy recipe (``supernet.evaluate``): validation images scored, and training images BatchNorm
# statistics are re-estimated on first. Training, search, ``nas supernet eval`` and the benchmarks all use these.
EVAL_VAL_IMAGES = 1000
EVAL_BN_IMAGES = 256


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    space: str
    data: str
    epochs: int
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    num_random: int = 2
    label_smoothing: float = 0.1
    max_train_images: int | None = None
    val_images: int = EVAL_VAL_IMAGES
    bn_images: int = EVAL_BN_IMAGES
    seed: int = 0
    init_timm: str | None = None   # a timm EfficientFormer state dict to start from (safetensors or torch file)
    gumbel: bool = False           # also learn EfficientFormer's MetaPath importances α (supernet.gumbel)
    tau_start: float = 5.0         # Gumbel-softmax temperature, annealed exponentially from start to end
    tau_end: float = 0.5
    alpha_lr: float = 3e-3         # Adam learning rate of α (constant)
    # timm's training pipeline (supernet.train): each default is off / today's recipe
    opt: str = "adamw"             # timm.optim.create_optimizer_v2 name
    mixup: float = 0.0             # timm.data.Mixup alphas for the largest subnet's labels (0: off)
    cutmix: float = 0.0
    auto_augment: str | None = None   # timm RandAugment policy for ImageFolder data, e.g. rand-m9-mstd0.5-inc1
    reprob: float = 0.0            # timm random-erasing probability (ImageFolder data)
    ema_decay: float = 0.0         # timm.utils.ModelEmaV3 of the supernet weights, evaluated and exported (0: off)
    amp: str = "none"              # autocast: bf16 (CPU or CUDA) or fp16 (CUDA, with a grad scaler)
    accum_steps: int = 1           # micro-batches per optimiser step (gradient accumulation)
    sync_bn: bool = False          # BatchNorm statistics of the global batch on data-parallel workers
    teacher: str | None = None     # timm model name for hard distillation of the largest subnet (DeiT-style)
    teacher_weights: str | None = None   # its state dict (.safetensors / weights-only .pth); nothing is downloaded
    num_classes: int | None = None    # outputs of the head; None: the data's number of classes
    kd: str = "kl"                 # how students learn from the largest subnet (supernet.distill: kl, alpha)
    sampling: str = "uniform"      # how a step's random subnets are drawn (supernet.sampling: uniform, complexity)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field ``name`` (the command line's default for the same flag)."""
        return cls.__dataclass_fields__[name].default
