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

The pipeline is timm's where timm has the piece: ``create_optimizer_v2`` (AdamW by default), ``CosineLRScheduler``
(linear warmup, then cosine, updated every step), ``Mixup`` (mixup/cutmix of the largest subnet's images and labels;
the students still learn the largest's softened outputs), ``ModelEmaV3`` (an EMA of the supernet's weights, which
evaluation and the checkpoint's weights then use), ``create_transform`` (RandAugment, random erasing) for folders;
plus ``torch.autocast`` (bf16, or fp16 with a grad scaler on CUDA), gradient accumulation and channels_last on CUDA.

Data parallel (``supernet.distributed``, on Ray Train): every worker builds the same trainer with its ``rank`` and
``world``; each step's subnets are functions of (seed, step), so all workers train the same subnets; each worker
takes its slice of the step's global batch, and the summed gradients of the step are averaged across workers in
one all-reduce before the optimiser step (``sync_gradients``). With ``sync_bn`` BatchNorm uses the global batch's
statistics, and N workers train what one process with the same global batch would.

Resuming: the checkpoint holds the optimiser state and the step reached; the initial weights, batch order, each
image's augmentation and the random subnets are functions of (seed, step), so a run killed and resumed gives the
same weights as one that was not, with any number of loader workers.
Checkpoints are written atomically every ``save_every`` steps and at each epoch's end.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.errors import UsageError
from nas.space import Arch
from supernet.batches import StepBatches
from supernet.config import TrainConfig
from supernet.distill import DISTILLATIONS
from supernet.evaluate import ends_of_space, evaluate_subnet
from supernet.gumbel import forward_sampled, sample_paths, tau_at
from supernet.recipe import (
    autocast,
    check_config,
    head_classes,
    label_loss,
    load_state_dict_file,
    load_teacher,
    make_mixup,
    make_optimizer,
    make_scheduler,
    mix_batch,
    mixing_seed,
)
from supernet.sampling import SAMPLERS
from supernet.supernet import Supernet
from supernet.training_log import TrainingLog, result_summary

TRAINING_FORMAT = "nas-supernet-training/1"


# ----------------------------------------------------------------------------------------------- training


class SupernetTrainer:
    """One worker's share of supernet training: ``rank`` of ``world`` data-parallel workers (0 of 1 when alone)."""

    def __init__(self, cfg: TrainConfig, device: str = "cpu", rank: int = 0, world: int = 1):
        check_config(cfg, device, world)
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        torch.manual_seed(cfg.seed)   # the initial weights are part of what the seed reproduces
        self.net = Supernet(cfg.space, head_classes(cfg))
        if cfg.init_timm is not None:
            self.net.load_timm(load_state_dict_file(cfg.init_timm))
        if cfg.sync_bn and world > 1:
            from supernet.syncbn import enable_sync_batchnorm

            enable_sync_batchnorm(self.net)
        # NHWC convolutions are faster on CUDA (timm's --channels-last). On CPU too (a sandwich step of `tiny`, 1
        # thread, batch 64: 525 -> 391 ms side by side), but there oneDNN's NHWC kernels round differently for a
        # worker's half batch than for the whole one, and Adam turns that into 2e-3 weight differences within 4
        # steps: N workers would no longer train what one process does (tests/supernet/test_distributed.py)
        self.channels_last = device == "cuda"
        self.net.to(device)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.space = self.net.space
        self.batches = StepBatches(cfg, self.space.input_size, rank, world)
        self.steps_per_epoch, self.total_steps = self.batches.steps_per_epoch, self.batches.total_steps
        self.optimizer = make_optimizer(self.net, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg, self.steps_per_epoch, self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        self.ema = None
        if cfg.ema_decay:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.net, decay=cfg.ema_decay)
        self.mixup = make_mixup(cfg, self.net.num_classes)
        self.teacher_model = load_teacher(cfg, self.net.num_classes, device)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.losses: list[float] = []   # this epoch's, for its mean loss
        self.trained_world = world      # the number of workers the checkpoint's steps were trained with

    # -- schedule and sampling: pure functions of (seed, step), which is what makes resuming exact

    def lr_at(self, step: int) -> float:
        """The weights' learning rate at ``step``, from the scheduler itself (``_get_lr`` is how every timm scheduler
        computes it; ``step_update`` would also set it)."""
        return float(self.scheduler._get_lr(step + 1)[0])

    def sandwich_mixer(self, step: int) -> str:
        """The token mixer of ``step``'s largest and smallest subnets: the space's mixers in turn, so that every
        mixer's slots are trained at full size by the labels, not only through random students."""
        return self.space.mixers[step % len(self.space.mixers)]

    def teacher(self, step: int) -> Arch:
        return self.space.largest(self.sandwich_mixer(step))

    def students(self, step: int) -> list[Arch]:
        smallest = self.space.smallest(self.sandwich_mixer(step))
        return [smallest] + SAMPLERS[self.cfg.sampling](self.space, self.cfg.seed, step, self.cfg.num_random)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches.batch(step)

    def loader(self, workers: int = 0) -> torch.utils.data.DataLoader:
        """This worker's batches from the current step to the end, read by ``workers`` processes (0: this one)."""
        return self.batches.loader(self.step, workers)

    # -- one step of the sandwich rule

    def autocast(self):
        return autocast(self.cfg, self.device)

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _micro_step(self, images: torch.Tensor, labels: torch.Tensor, micro: int) -> float:
        """The sandwich rule on one micro-batch; its gradients (scaled by 1 / accum_steps) add to the step's."""
        cfg, net = self.cfg, self.net
        weight = 1.0 / cfg.accum_steps
        targets = None
        if self.mixup is not None:   # the mixing draws are functions of (seed, step, worker, micro-batch)
            images, targets = mix_batch(self.mixup, images, labels, mixing_seed(cfg, self.step, self.rank, micro))
        net.set_active(self.teacher(self.step))
        with self.autocast():
            logits = net(images).float()
        loss = label_loss(cfg, logits, labels, targets, self.teacher_model, images, self.device)
        self._backward(loss * weight)
        teacher_logits = logits.detach()
        distill = DISTILLATIONS[cfg.kd]
        total = float(loss.detach())
        for arch in self.students(self.step):
            net.set_active(arch)
            with self.autocast():
                student = net(images).float()
            kd, value = distill(student, teacher_logits)
            self._backward(kd * weight)
            total += float(value.detach())
        return total * weight

    def train_step(self, images: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> float:
        """One optimiser step on this worker's slice of the step's batch; returns the step's loss (the mean over
        workers: CE of the largest + KL of the students [+ the Gumbel draw's CE])."""
        cfg = self.cfg
        self.net.train()
        if images is None or labels is None:
            images, labels = self.batch(self.step)
        images, labels = images.to(self.device), labels.to(self.device)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        self.scheduler.step_update(self.step + 1)
        for group in self.optimizer.param_groups:
            if group.get("fixed_lr"):
                group["lr"] = cfg.alpha_lr
        self.optimizer.zero_grad(set_to_none=True)
        total = sum(self._micro_step(x, y, i) for i, (x, y) in
                    enumerate(zip(images.chunk(cfg.accum_steps), labels.chunk(cfg.accum_steps))))
        if cfg.gumbel:
            total += self.gumbel_step(images, labels)
        total = self.sync_gradients(total)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.net, step=self.step)
        self.net.set_active(self.space.largest())
        self.step += 1
        return total

    def sync_gradients(self, loss: float) -> float:
        """Average the step's gradients (and its loss, for the log) over the workers, in one all-reduce.

        torch's DDP reducer syncs during each backward and expects one forward/backward over a fixed graph per step;
        a sandwich step runs 2 + num_random forward/backward passes over different subnets, so the gradients are
        summed locally and reduced once here, as DDP's ``no_sync`` accumulation would. Every worker trains the same
        subnets, so the same parameters have gradients on every worker, in the same order."""
        if self.world == 1:
            return loss
        import torch.distributed as dist

        params = [p for p in self.net.parameters() if p.grad is not None]
        flat = torch.cat([p.grad.reshape(-1) for p in params]   # type: ignore[union-attr]   # filtered above
                         + [torch.tensor([loss], dtype=params[0].dtype, device=params[0].device)])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p))   # type: ignore[union-attr]
            offset += n
        return float(flat[-1])

    def tau(self, step: int) -> float:
        return tau_at(step, self.total_steps, self.cfg.tau_start, self.cfg.tau_end)

    def gumbel_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """EfficientFormer's MetaPath training: one straight-through Gumbel draw of every position's path, on the
        labels, updating the weights of the drawn paths and α (``supernet.gumbel``). The draw is a function of
        (seed, step), like everything else a resume must repeat."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step + 7_777_777)
        draws = sample_paths(self.net.metapath, self.tau(self.step), g)
        with self.autocast():
            logits = forward_sampled(self.net, images, draws).float()
        loss = F.cross_entropy(logits, labels, label_smoothing=self.cfg.label_smoothing)
        self._backward(loss)
        return float(loss.detach())

    @property
    def eval_net(self) -> Supernet:
        """The weights evaluation and the checkpoint use: the EMA's when on."""
        return self.ema.module if self.ema is not None else self.net

    def evaluate(self) -> dict[str, float]:
        cfg = self.cfg
        return {name: evaluate_subnet(self.eval_net, arch, cfg.data, cfg.val_images, cfg.bn_images, self.device)
                for name, arch in ends_of_space(self.space).items()}

    # -- checkpoints

    def save(self, path: Path) -> None:
        from supernet.checkpoint import save_supernet

        state: dict[str, Any] = {"format": TRAINING_FORMAT, "config": self.cfg.to_dict(), "step": self.step,
                                 "optimizer": self.optimizer.state_dict(), "history": self.history,
                                 "epoch_losses": self.losses, "world": self.trained_world}
        if self.ema is not None:   # the checkpoint's weights are the EMA's; training continues from the raw ones
            state["raw_state_dict"] = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        save_supernet(self.eval_net, path, meta=self.summary(), training_state=state)

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
        weights = state.get("raw_state_dict", payload["state_dict"])
        self._load_weights(self.net, weights, path)
        if self.ema is not None:
            self._load_weights(self.ema.module, payload["state_dict"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.losses = [float(v) for v in state.get("epoch_losses", [])]
        self.trained_world = int(state.get("world", 1))

    def _load_weights(self, net: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
        missing, unexpected = net.load_state_dict(weights, strict=False)
        if [k for k in missing if not k.startswith("metapath.")] or unexpected:   # α: absent before --gumbel existed
            raise UsageError(f"--resume: {path} does not fit space {self.space.name!r}")

    def resume_note(self) -> str | None:
        """What changes when a run resumes on another number of workers (None when nothing does)."""
        if self.trained_world == self.world or self.cfg.sync_bn:
            return None
        return (f"resuming on {self.world} worker(s) a run trained on {self.trained_world}: BatchNorm statistics are "
                f"per worker's slice of the batch, so the rest of the run differs from one that kept "
                f"{self.trained_world} (train with --sync-bn for results that do not depend on the worker count)")

    def summary(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        recipe = "sandwich rule + in-place distillation" + (" + Gumbel MetaPath importance" if self.cfg.gumbel else "")
        return {"trained": {"data": self.cfg.data, "epochs": self.cfg.epochs,
                            "epochs_done": self.step // self.steps_per_epoch, "steps": self.step,
                            "steps_total": self.total_steps, "recipe": recipe, "workers": self.trained_world,
                            "weights": "EMA" if self.ema is not None else "last step",
                            "config": self.cfg.to_dict(), "top1": last.get("top1", {})}}


# ----------------------------------------------------------------------------------------------- the loop


def run_steps(trainer: SupernetTrainer, out: Path, save_every: int = 100, progress: bool = True, workers: int = 0,
              log_dir: str | None = None, on_save: Callable[[], None] | None = None, bar_factory: Any = None,
              after_step: Callable[[int], None] | None = None) -> None:
    """Train from ``trainer.step`` to the end. Rank 0 evaluates after every epoch and writes the metrics CSV, the
    plot and TensorBoard. At each save point rank 0 writes the checkpoint to ``out``, or, when given, every rank
    calls ``on_save`` instead (Ray Train's report is a collective: every worker calls it)."""
    from tqdm import tqdm

    cfg, lead = trainer.cfg, trainer.rank == 0
    log = TrainingLog(out, log_dir) if lead else None
    bar = (bar_factory or tqdm)(total=trainer.total_steps, initial=trainer.step, desc="supernet", unit="step",
                                disable=not (progress and lead), dynamic_ncols=True)
    epoch_clock, epoch_steps = time.perf_counter(), 0
    try:
        for images, labels in trainer.loader(workers):
            loss = trainer.train_step(images, labels)
            trainer.losses.append(loss)
            epoch_steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", epoch=trainer.step // trainer.steps_per_epoch)
            if log is not None:
                log.step(trainer.step, loss, trainer.lr_at(trainer.step - 1))
            epoch_done = trainer.step % trainer.steps_per_epoch == 0
            if epoch_done:
                images_per_s = epoch_steps * cfg.batch_size / (time.perf_counter() - epoch_clock)
                if lead:
                    trainer.history.append({"epoch": trainer.step // trainer.steps_per_epoch, "step": trainer.step,
                                            "loss": sum(trainer.losses) / len(trainer.losses),
                                            "lr": trainer.lr_at(trainer.step - 1), "images_per_s": images_per_s,
                                            "top1": trainer.evaluate()})
                    h = trainer.history[-1]
                    print(f"epoch {h['epoch']}/{cfg.epochs}: loss {h['loss']:.3f}, {images_per_s:.0f} images/s, "
                          + ", ".join(f"top-1 {k} {v:.1f}%" for k, v in h["top1"].items()),
                          file=sys.stderr)   # stdout carries only the result (--json contract)
                    assert log is not None
                    log.epoch(trainer.history, f"supernet of {trainer.space.name} on {cfg.data} "
                                               f"({trainer.step} steps)")
                trainer.losses = []
                epoch_clock, epoch_steps = time.perf_counter(), 0
            if epoch_done or trainer.step % save_every == 0:
                if on_save is not None:
                    on_save()
                elif lead:
                    trainer.save(out)
            if after_step is not None:
                after_step(trainer.step)
    finally:
        bar.close()
        if log is not None:
            log.close()


def check_out(out: Path, resume: bool) -> None:
    if out.exists() and not resume:
        raise UsageError(f"--out {out} exists; pass --resume to continue that training, or choose another --out")


def train_supernet(cfg: TrainConfig, out: str | Path, resume: bool = False, device: str = "cpu",
                   save_every: int = 100, progress: bool = True, workers: int = 0,
                   log_dir: str | None = None) -> dict[str, Any]:
    """Train (or resume training) the supernet of ``cfg.space`` on ``cfg.data`` in this process; writes ``out`` and
    returns a summary with each epoch's loss and the top-1 of the subnets at the ends of the space
    (``ends_of_space``). ``supernet.distributed.train_on_ray`` is the same on Ray Train workers."""
    out = Path(out)
    check_out(out, resume)
    check_config(cfg, device)
    trainer = SupernetTrainer(cfg, device)
    start_step = 0
    if resume and out.exists():
        trainer.restore(out)
        start_step = trainer.step
        note = trainer.resume_note()
        if note:
            print(f"nas: note: {note}", file=sys.stderr)
        trainer.trained_world = 1
    started = time.perf_counter()
    run_steps(trainer, out, save_every, progress, workers, log_dir)
    return result_summary(trainer.history, trainer.step, cfg, out, trainer.space.name,
                          start_step if resume else None, trainer.step - start_step, time.perf_counter() - started,
                          workers=1)
