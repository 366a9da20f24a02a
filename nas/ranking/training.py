"""The stand-alone trainings of a ranking check still missing: here one at a time, in local processes, or on Ray
workers, each result saved to the state as it arrives."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from nas import install_hint
from nas.errors import UsageError
from nas.ranking.jobs import Job, run_in_processes, run_job
from nas.ranking.settings import RankSettings
from nas.ranking.state import RankState


def train_missing(state: RankState, jobs: list[Job], s: RankSettings, steps_per_job: int, at_once: int) -> None:
    """Run the stand-alone trainings still missing, here (one at a time, or ``at_once`` processes) or on Ray,
    saving each result as it arrives; the bar counts optimiser steps (every training has the same number), so its
    estimate holds across archs."""
    if not jobs:
        return
    from tqdm import tqdm

    bar = tqdm(total=len(jobs) * steps_per_job, desc=f"{len(jobs)} stand-alone trainings", unit="step",
               disable=not s.progress, dynamic_ncols=True)
    try:
        if s.workers:
            _train_on_ray(state, jobs, s, bar, steps_per_job)
        elif at_once > 1 and len(jobs) > 1:
            _train_in_processes(state, jobs, min(at_once, len(jobs)), bar, steps_per_job)
        else:
            for job in jobs:
                bar.set_postfix_str(f"arch {job.index + 1}" + (f", seed +{job.replica}" if job.replica else ""))
                state.trainings[job.key] = run_job(job, _bar_updater(bar))
                state.save()
    finally:
        bar.close()


def _train_in_processes(state: RankState, jobs: list[Job], processes: int, bar: Any, steps_per_job: int) -> None:
    for key, result in run_in_processes({job.key: job for job in jobs}, processes):
        state.trainings[key] = result
        state.save()
        bar.update(steps_per_job)


def _bar_updater(bar: Any) -> Any:
    """``on_step`` for one training: moves ``bar`` to the steps done before it plus the training's own."""
    before = bar.n
    return lambda step, total: bar.update(before + step - bar.n)


def _train_on_ray(state: RankState, jobs: list[Job], s: RankSettings, bar: Any, steps_per_job: int) -> None:
    try:
        import ray
    except ImportError:
        raise UsageError(f"--num-workers needs Ray: {install_hint('ray')}") from None
    assert s.workers
    threads = s.threads or max(1, (os.cpu_count() or 1) // s.workers)
    started = not ray.is_initialized()
    if started:
        if s.ray_address:
            from nas.ray_cluster import join

            join(ray, s.ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=s.workers * threads, num_gpus=s.workers if s.torch_device == "cuda" else 0,
                     include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}})
    try:
        remote = ray.remote(num_cpus=threads, num_gpus=1 if s.torch_device == "cuda" else 0,
                            max_retries=3, retry_exceptions=False)(run_job)
        pending = {remote.remote(dataclasses.replace(job, threads=job.threads or threads)): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            state.trainings[job.key] = ray.get(done[0])
            state.save()
            bar.update(steps_per_job)
    finally:
        if started:
            ray.shutdown()
