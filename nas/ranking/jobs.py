"""One stand-alone training of the ranking check, as a plain function of picklable objects (the space, the arch
and the training configuration travel as themselves): the same call runs in this process, in a worker process or
in a Ray task (``nas.ranking.check``), so 1 worker, N workers and no Ray give the same figures for the same
``threads``."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from nas.space import Arch, SearchSpace
from supernet.config import TrainConfig


@dataclass(frozen=True)
class Job:
    """Train arch number ``index`` alone with training seed ``seed`` (the supernet's own seed plus a replica
    number: replica 0 sees the supernet's data order)."""

    index: int
    replica: int
    space: SearchSpace
    arch: Arch
    config: TrainConfig         # of the stand-alone training (``standalone_config``)
    num_classes: int
    data: str
    val_images: int
    bn_images: int
    device: str
    threads: int | None
    split: str = "val"          # what the trained model is scored on ('test' for a search's final figures)

    @property
    def key(self) -> str:
        return f"{self.index}:{self.replica}"


def run_job(job: Job, on_step: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train and evaluate; returns the top-1 (%) on the validation split (or ``job.split``; BatchNorm
    recalibrated, the evaluation recipe inherited accuracy uses too), the steps and the seconds it took."""
    import torch

    from supernet.evaluate import evaluate_model
    from supernet.standalone import train_standalone

    threads_before = torch.get_num_threads()
    if job.threads:
        torch.set_num_threads(job.threads)
    try:
        started = time.perf_counter()
        cfg, space, arch = job.config, job.space, job.arch
        steps = [0]

        def counted(step: int, total: int) -> None:
            steps[0] = step
            if on_step is not None:
                on_step(step, total)

        model = train_standalone(arch, space, cfg, job.num_classes, job.device, counted)
        top1 = evaluate_model(model, job.data, space.input_size, job.val_images, job.bn_images, job.device,
                              job.split)
        return {"top1": top1, "steps": steps[0], "seconds": time.perf_counter() - started, "pid": os.getpid(),
                "threads": torch.get_num_threads()}
    finally:
        torch.set_num_threads(threads_before)


def die_with_parent() -> None:
    """In a worker process: end when the process that started it is killed (Linux), so no orphan trains on."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_in_processes(jobs: dict[str, Job], processes: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Run ``jobs`` (by key) in ``processes`` spawned worker processes, in the order given; yield ``(key,
    result)`` as each finishes, so the caller can save it before the next (a kill then loses only what runs)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=die_with_parent) as pool:
        futures = {pool.submit(run_job, job): key for key, job in jobs.items()}
        for future in as_completed(futures):
            yield futures[future], future.result()
