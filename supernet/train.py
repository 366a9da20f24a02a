"""Train the weight-sharing supernet once, so that any subnet's inherited weights rank it (``nas supernet train``).

Each step follows the sandwich rule with in-place distillation (BigNAS / Once-for-All's progressive setting,
AutoFormer): on one batch,

- the **largest** subnet learns from the labels (cross-entropy with label smoothing), and its softened predictions
  become the teacher for the others;
- the **smallest** subnet and ``num_random`` random subnets learn from that teacher (KL divergence);
- in a space with several token mixers, the largest and smallest subnets use each mixer in turn (step by step),
  and random subnets draw their blocks' mixers, so every mixer's own weights are trained at both extremes;

gradients of all of them are summed into the shared weights before one optimiser step. Training the extremes every
step keeps the small end of the space from being starved, which is what makes inherited accuracy usable for the
search. BatchNorm statistics are shared across subnets while training and re-estimated per subnet before every
evaluation (``supernet.batchnorm``).

Resuming: the checkpoint holds the optimiser state and the step reached; the initial weights, batch order, each
image's augmentation and the random subnets are functions of (seed, step), so a run killed and resumed gives the
same weights as one that was not, with any number of loader workers.
Checkpoints are written atomically every ``save_every`` steps and at each epoch's end.
"""
from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.errors import UsageError
from nas.plots import plot_history
from nas.space import Arch
from supernet.config import TrainConfig
from supernet.evaluate import ends_of_space, evaluate_subnet
from supernet.gumbel import forward_sampled, sample_paths, tau_at
from supernet.supernet import Supernet

TRAINING_FORMAT = "nas-supernet-training/1"


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a weights-only torch file (a bare state dict, or one under 'model' /
    'state_dict' as training scripts save them); never unpickles code."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--init-timm {path}: no such file (a timm EfficientFormer state dict, .safetensors or .pth)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--init-timm {path} is not a readable weights-only state dict ({first})") from None
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UsageError(f"--init-timm {path}: not a state dict of tensors")
    return sd


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on weights only (not on norms, biases and layer scales). The architecture logits α
    (``metapath.*``) are trained only with ``--gumbel``, in their own group: Adam at ``alpha_lr``, no decay, no
    schedule (DARTS' and GDAS' practice: α's steps do not follow the weights' warmup and cosine)."""
    named = [(n, p) for n, p in model.named_parameters() if not n.startswith("metapath.")]
    groups = [{"params": [p for _, p in named if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for _, p in named if p.ndim <= 1], "weight_decay": 0.0}]
    if cfg.gumbel:
        alphas = [p for n, p in model.named_parameters() if n.startswith("metapath.")]
        groups.append({"params": alphas, "weight_decay": 0.0, "lr": cfg.alpha_lr, "fixed_lr": True})
    return torch.optim.AdamW(groups, lr=cfg.lr)


class _SeededItems(torch.utils.data.Dataset):
    """Items keyed by (index, seed): the augmentation of an item is drawn from generators seeded for it, so a
    batch is the same whichever loader worker builds it and whether or not the run was resumed."""

    def __init__(self, base: torch.utils.data.Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]   # map-style datasets here all have a length

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        torch.manual_seed(seed)
        random.seed(seed)
        return self.base[index]


class _StepBatches(torch.utils.data.Sampler):
    """The batches of steps ``start`` .. the end of training, as lists of (index, seed) keys."""

    def __init__(self, trainer: SupernetTrainer, start: int):
        self.trainer, self.start = trainer, start

    def __len__(self) -> int:
        return self.trainer.total_steps - self.start

    def __iter__(self):
        for step in range(self.start, self.trainer.total_steps):
            yield self.trainer.batch_keys(step)


def _collate(items):
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


# ----------------------------------------------------------------------------------------------- training


class SupernetTrainer:
    def __init__(self, cfg: TrainConfig, device: str = "cpu"):
        from nas.data import dataset

        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)   # the initial weights are part of what the seed reproduces
        self.net = Supernet(cfg.space)
        if cfg.init_timm is not None:
            self.net.load_timm(load_state_dict_file(cfg.init_timm))
        self.net.to(device)
        self.space = self.net.space
        self.train_set = _SeededItems(dataset(cfg.data, "train", self.space.input_size, training=True))
        n = len(self.train_set)
        if cfg.max_train_images is not None:
            n = min(n, cfg.max_train_images)
        # a fixed subset (seed 0) when limited, the same on every resume
        self.pool = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(0))[:n]
        self._order: tuple[int, torch.Tensor | None] = (-1, None)
        self.steps_per_epoch = n // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {n} training images of {cfg.data}; "
                             f"use at most {n}")
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.optimizer = make_optimizer(self.net, cfg)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.losses: list[float] = []   # this epoch's, for its mean loss

    # -- schedule and sampling: pure functions of (seed, step), which is what makes resuming exact

    def lr_at(self, step: int) -> float:
        warmup = max(1, int(self.cfg.warmup_epochs * self.steps_per_epoch))
        if step < warmup:
            return self.cfg.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, self.total_steps - warmup)
        return 0.5 * self.cfg.lr * (1.0 + math.cos(math.pi * progress))

    def sandwich_mixer(self, step: int) -> str:
        """The token mixer of ``step``'s largest and smallest subnets: the space's mixers in turn, so that every
        mixer's slots are trained at full size by the labels, not only through random students."""
        return self.space.mixers[step % len(self.space.mixers)]

    def teacher(self, step: int) -> Arch:
        return self.space.largest(self.sandwich_mixer(step))

    def students(self, step: int) -> list[Arch]:
        rng = random.Random(self.cfg.seed * 1_000_003 + step)
        smallest = self.space.smallest(self.sandwich_mixer(step))
        return [smallest] + [self.space.sample(rng=rng) for _ in range(self.cfg.num_random)]

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The training images in ``epoch``'s order (a new shuffle every epoch; computed once per epoch)."""
        if self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 10_007 + epoch)
            self._order = (epoch, self.pool[torch.randperm(len(self.pool), generator=g)])
        assert self._order[1] is not None
        return self._order[1]

    def batch_keys(self, step: int) -> list[tuple[int, int]]:
        """(image index, augmentation seed) of each image of ``step``'s batch."""
        epoch, b = divmod(step, self.steps_per_epoch)
        indices = self.epoch_order(epoch)[b * self.cfg.batch_size:(b + 1) * self.cfg.batch_size].tolist()
        base = (self.cfg.seed * 1_000_003 + step) * 4096
        return [(i, base + j) for j, i in enumerate(indices)]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _collate([self.train_set[key] for key in self.batch_keys(step)])

    def loader(self, workers: int = 0) -> torch.utils.data.DataLoader:
        """The batches from the current step to the end, read by ``workers`` processes (0: this one)."""
        return torch.utils.data.DataLoader(self.train_set, batch_sampler=_StepBatches(self, self.step),
                                           num_workers=workers, collate_fn=_collate)

    # -- one step of the sandwich rule

    def train_step(self, images: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> float:
        cfg, net = self.cfg, self.net
        net.train()
        if images is None or labels is None:
            images, labels = self.batch(self.step)
        images, labels = images.to(self.device), labels.to(self.device)
        for group in self.optimizer.param_groups:
            if not group.get("fixed_lr"):
                group["lr"] = self.lr_at(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        net.set_active(self.teacher(self.step))
        logits = net(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
        loss.backward()
        teacher = logits.detach().softmax(dim=-1)
        total = float(loss.detach())
        for arch in self.students(self.step):
            net.set_active(arch)
            kd = F.kl_div(net(images).log_softmax(dim=-1), teacher, reduction="batchmean")
            kd.backward()
            total += float(kd.detach())
        if cfg.gumbel:
            total += self.gumbel_step(images, labels)
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        self.optimizer.step()
        net.set_active(self.space.largest())
        self.step += 1
        return total

    def tau(self, step: int) -> float:
        return tau_at(step, self.total_steps, self.cfg.tau_start, self.cfg.tau_end)

    def gumbel_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """EfficientFormer's MetaPath training: one straight-through Gumbel draw of every position's path, on the
        labels, updating the weights of the drawn paths and α (``supernet.gumbel``). The draw is a function of
        (seed, step), like everything else a resume must repeat."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step + 7_777_777)
        draws = sample_paths(self.net.metapath, self.tau(self.step), g)
        loss = F.cross_entropy(forward_sampled(self.net, images, draws), labels,
                               label_smoothing=self.cfg.label_smoothing)
        loss.backward()
        return float(loss.detach())

    def evaluate(self) -> dict[str, float]:
        cfg = self.cfg
        return {name: evaluate_subnet(self.net, arch, cfg.data, cfg.val_images, cfg.bn_images, self.device)
                for name, arch in ends_of_space(self.space).items()}

    # -- checkpoints

    def save(self, path: Path) -> None:
        from supernet.checkpoint import save_supernet

        state = {"format": TRAINING_FORMAT, "config": self.cfg.to_dict(), "step": self.step,
                 "optimizer": self.optimizer.state_dict(), "history": self.history,
                 "epoch_losses": self.losses}
        save_supernet(self.net, path, meta=self.summary(), training_state=state)

    def restore(self, path: Path) -> None:
        from supernet.checkpoint import load_checkpoint_payload

        payload = load_checkpoint_payload(path)
        state = payload.get("training")
        if not isinstance(state, dict) or state.get("format") != TRAINING_FORMAT:
            raise UsageError(f"--resume: {path} holds no training state (a finished export or another tool's file); "
                             "choose a new --out")
        # every TrainConfig field must match; device, loader workers, save interval and progress may change
        # without changing the result
        for key, mine in self.cfg.to_dict().items():
            theirs = state["config"].get(key, TrainConfig.default(key))   # a field added since: its default
            if mine != theirs:
                raise UsageError(f"--resume: {path} was trained with {key}={theirs!r}, this run asks for {mine!r}; "
                                 f"rerun with the same setting or choose a new --out")
        missing, unexpected = self.net.load_state_dict(payload["state_dict"], strict=False)
        if [k for k in missing if not k.startswith("metapath.")] or unexpected:   # α: absent before --gumbel existed
            raise UsageError(f"--resume: {path} does not fit space {self.space.name!r}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.losses = [float(v) for v in state.get("epoch_losses", [])]

    def summary(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {"trained": {"data": self.cfg.data, "epochs": self.cfg.epochs,
                            "epochs_done": self.step // self.steps_per_epoch, "steps": self.step,
                            "steps_total": self.total_steps,
                            "recipe": "sandwich rule + in-place distillation"
                                      + (" + Gumbel MetaPath importance" if self.cfg.gumbel else ""),
                            "config": self.cfg.to_dict(), "top1": last.get("top1", {})}}


def history_plot_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".training.png")


def train_supernet(cfg: TrainConfig, out: str | Path, resume: bool = False, device: str = "cpu",
                   save_every: int = 100, progress: bool = True, workers: int = 0) -> dict[str, Any]:
    """Train (or resume training) the supernet of ``cfg.space`` on ``cfg.data``; writes ``out`` and returns a
    summary with each epoch's loss and the top-1 of the subnets at the ends of the space (``ends_of_space``)."""
    from tqdm import tqdm

    out = Path(out)
    if out.exists() and not resume:
        raise UsageError(f"--out {out} exists; pass --resume to continue that training, or choose another --out")
    trainer = SupernetTrainer(cfg, device)
    start_step = 0
    if resume and out.exists():
        trainer.restore(out)
        start_step = trainer.step
    started = time.perf_counter()
    bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc="supernet", unit="step", disable=not progress,
               dynamic_ncols=True)
    try:
        for images, labels in trainer.loader(workers):
            trainer.losses.append(trainer.train_step(images, labels))
            bar.update(1)
            bar.set_postfix(loss=f"{trainer.losses[-1]:.3f}", epoch=trainer.step // trainer.steps_per_epoch)
            epoch_done = trainer.step % trainer.steps_per_epoch == 0
            if epoch_done:
                trainer.history.append({"epoch": trainer.step // trainer.steps_per_epoch,
                                        "loss": sum(trainer.losses) / len(trainer.losses), "top1": trainer.evaluate()})
                trainer.losses = []
                bar.write(f"epoch {trainer.history[-1]['epoch']}/{cfg.epochs}: loss {trainer.history[-1]['loss']:.3f}, "
                          + ", ".join(f"top-1 {k} {v:.1f}%" for k, v in trainer.history[-1]["top1"].items()),
                          file=sys.stderr)   # stdout carries only the result (--json contract)
                plot_history(trainer.history, history_plot_path(out),
                             f"supernet of {trainer.space.name} on {cfg.data} ({trainer.step} steps)")
            if epoch_done or trainer.step % save_every == 0:
                trainer.save(out)
    finally:
        bar.close()
    return {"out": str(out), "plot": str(history_plot_path(out)), "space": trainer.space.name, "data": cfg.data,
            "epochs": cfg.epochs,
            "steps": trainer.step, "resumed_from_step": start_step if resume else None,
            "steps_this_run": trainer.step - start_step, "wall_s": time.perf_counter() - started,
            "history": trainer.history, "top1": trainer.history[-1]["top1"] if trainer.history else {}}
