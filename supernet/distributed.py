"""Data-parallel supernet training on Ray Train (``nas supernet train --num-workers N``).

``TorchTrainer`` starts N workers and their process group (NCCL on GPUs, gloo on CPU); each runs
``supernet.train.run_steps`` with its rank: the same subnets every step, its slice of the global batch, gradients
averaged in one all-reduce per step (``SupernetTrainer.sync_gradients``), and with ``--sync-bn`` BatchNorm over
the global batch (``supernet.syncbn``), so N workers train what one process with the same batch would.

Checkpoints: rank 0 writes the usual checkpoint file and hands a copy to Ray Train (``ray.train.report``), which
keeps it in the run's storage (``--ray-storage``; by default ``OUT.ray/`` next to ``--out``, which must be a
shared folder or a cloud URI on a multi-node cluster). When a worker dies, Ray Train restarts the group from that
checkpoint (up to ``--max-failures`` times) and, since everything a step does is a function of (seed, step), the
run ends with the weights it would have had without the failure. ``--resume`` starts from ``--out`` as the local
trainer does, also on another number of workers. At the end the driver copies Ray's last checkpoint to ``--out``
(rank 0 may run on another machine).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nas import install_hint
from nas.errors import UsageError
from supernet.config import TrainConfig

CHECKPOINT_NAME = "supernet.pt"
# Fault injection for the recovery test: "RANK:STEP:MARKER" makes worker RANK exit abruptly after STEP steps, once
# (MARKER is created then, so the restarted worker carries on).
FAULT_ENV = "NAS_TRAIN_KILL_WORKER"


class _RayBar:
    """tqdm's interface over Ray's driver-rendered progress bar (a worker's own tqdm would print raw lines)."""

    def __init__(self, total: int, initial: int, desc: str, unit: str, disable: bool, **_: Any):
        from ray.experimental.tqdm_ray import tqdm

        self.bar = None if disable else tqdm(total=total, desc=desc, unit=unit)
        if self.bar is not None and initial:
            self.bar.update(initial)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        if self.bar is not None:
            self.bar.set_description("supernet " + " ".join(f"{k}={v}" for k, v in values.items()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: build the trainer for this rank, restore Ray's checkpoint if there is one (a restart
    after a failure, or ``--resume``), train to the end."""
    import ray.train

    from supernet.train import SupernetTrainer, run_steps

    if Path(config["cwd"]).is_dir():   # relative --data / --log-dir paths mean what they mean to the driver
        os.chdir(config["cwd"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = config["device"]
    if device == "cuda":
        import torch

        torch.cuda.set_device(ctx.get_local_rank())
    cfg = TrainConfig(**config["cfg"])
    out = Path(config["out"])
    trainer = SupernetTrainer(cfg, device, rank, world)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.restore(Path(folder) / CHECKPOINT_NAME)
        note = trainer.resume_note()
        if note and rank == 0:
            print(f"nas: note: {note}", file=sys.stderr)
    trainer.trained_world = world

    def save_point() -> None:
        metrics = {"step": trainer.step}
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as folder:
            trainer.save(Path(folder) / CHECKPOINT_NAME)
            if out.parent.is_dir():   # the driver's folder is visible here (one machine, or a shared folder)
                from nas.fileio import atomic_output

                with atomic_output(out) as staging:
                    shutil.copyfile(Path(folder) / CHECKPOINT_NAME, staging)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    fault = config.get("fault")

    def after_step(step: int) -> None:
        if fault and rank == int(fault[0]) and step == int(fault[1]) and not Path(fault[2]).exists():
            Path(fault[2]).touch()
            os._exit(1)   # as a killed process: no cleanup, no exception

    run_steps(trainer, out, config["save_every"], config["progress"], config["workers"], config["log_dir"],
              on_save=save_point, bar_factory=_RayBar, after_step=after_step)


def _connect(ray: Any, address: str | None, num_workers: int) -> bool:
    """Join ``address`` or start a local Ray sized for ``num_workers``; True when this call started Ray."""
    if ray.is_initialized():
        return False
    if address:
        from nas.ray_cluster import join
        join(ray, address, log_to_driver=True)
    else:
        # with the dashboard: Ray Train's placement-group cleaner polls its state API, and logs every failed poll
        ray.init(num_cpus=max(num_workers, os.cpu_count() or 1), log_to_driver=True)
    return True


def train_on_ray(cfg: TrainConfig, out: Path, num_workers: int, *, resume: bool = False, device: str = "cpu",
                 save_every: int = 100, progress: bool = True, workers: int = 0, address: str | None = None,
                 max_failures: int = 0, log_dir: str | None = None, storage: str | None = None) -> dict[str, Any]:
    """Train on ``num_workers`` Ray Train workers; returns the same summary as the local trainer."""
    from supernet.checkpoint import load_checkpoint_payload
    from supernet.recipe import check_config
    from supernet.train import check_out
    from supernet.training_log import result_summary

    check_out(out, resume)
    check_config(cfg, device, num_workers)   # before starting anything
    try:
        import ray
        import ray.train
        from ray.train.torch import TorchTrainer
    except ImportError as exc:
        raise UsageError(f"--num-workers needs Ray Train ({exc}): {install_hint('ray')}") from None
    out = out.resolve()
    resume_from, start_step = None, None
    staging = Path(tempfile.mkdtemp(prefix="nas-resume-"))
    if resume and out.exists():
        start_step = int(load_checkpoint_payload(out)["training"]["step"])   # refuses a bad file in one line
        shutil.copyfile(out, staging / CHECKPOINT_NAME)
        resume_from = ray.train.Checkpoint.from_directory(str(staging))
    fault = os.environ.get(FAULT_ENV, "").split(":") if os.environ.get(FAULT_ENV) else None
    config = {"cfg": cfg.to_dict(), "out": str(out), "device": device, "save_every": save_every,
              "progress": progress, "workers": workers, "log_dir": log_dir, "fault": fault, "cwd": os.getcwd()}
    started_ray = _connect(ray, address, num_workers)
    started = time.perf_counter()
    try:
        trainer = TorchTrainer(
            _worker_loop, train_loop_config=config,
            scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=device == "cuda"),
            run_config=ray.train.RunConfig(  # type: ignore[call-arg]   # mypy sees Ray Train v1 types
                # a new run name each launch: Ray Train would otherwise restore an older run of the same name
                name=f"{out.stem}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=storage or str(out.parent / f"{out.stem}.ray"),
                failure_config=ray.train.FailureConfig(max_failures=max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
                logging_config=ray.train.LoggingConfig(log_level="WARNING")),   # the bar and epoch lines, not Ray's
            resume_from_checkpoint=resume_from)
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            cause = lines[-1] if lines else type(exc).__name__   # the workers' own error ends Ray's message
            saved = (f"the last checkpoint is in {out} (continue with --resume)" if out.exists()
                     else "no checkpoint was written")
            raise RuntimeError(f"training failed on Ray Train after {max_failures} restart(s) (--max-failures): "
                               f"{cause}; {saved}") from None
        if result.checkpoint is not None:
            from nas.fileio import atomic_output

            with result.checkpoint.as_directory() as folder, atomic_output(out) as target:
                shutil.copyfile(Path(folder) / CHECKPOINT_NAME, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if started_ray:
            ray.shutdown()
    payload = load_checkpoint_payload(out)
    state = payload["training"]
    step = int(state["step"])
    from nas.space import load_space

    return result_summary(list(state.get("history", [])), step, cfg, out, load_space(cfg.space).name, start_step,
                          step - (start_step or 0), time.perf_counter() - started, workers=num_workers)
