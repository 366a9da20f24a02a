"""What a ranking check is asked for (``nas supernet rank``'s options as one record), the checks on it, and how
many trainings run at once."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.ranking.stats import BOOTSTRAP_DRAWS

MIN_ARCHS = 3


@dataclass(frozen=True)
class RankSettings:
    checkpoint: str
    data: str | None = None              # default: the data the supernet was trained on
    archs: int = 12
    epochs: int | None = None            # stand-alone epochs; default: the supernet's (the same schedule)
    seeds: int = 3                       # trainings of the noise-floor arch (its first one is its ranking run)
    device: str = "iphone12"             # the latency table the archs are spread over
    lut: str | None = None
    space: str | None = None             # when given, must be the checkpoint's
    seed: int = 0                        # of the arch sample
    top_k: int | None = None
    bootstrap: int = BOOTSTRAP_DRAWS
    val_images: int | None = None        # default: the supernet's evaluation recipe
    bn_images: int | None = None
    recipe: dict[str, Any] = field(default_factory=dict)   # TrainConfig fields changed for stand-alone training
    out: str | None = None
    resume: bool = False
    workers: int | None = None           # Ray workers (None: local processes)
    ray_address: str | None = None
    jobs: int | None = None              # local trainings at once (default: one per core on CPU, 1 on CUDA)
    threads: int | None = None           # intra-op threads per training (results repeat for the same value)
    torch_device: str = "cpu"
    progress: bool = True

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.checkpoint).with_suffix(".rank")


def check_settings(s: RankSettings) -> None:
    if s.archs < MIN_ARCHS:
        raise UsageError(f"--archs {s.archs}: a ranking needs at least {MIN_ARCHS} archs (12 or more give "
                         "intervals worth reading)")
    if s.seeds < 2:
        raise UsageError(f"--seeds {s.seeds}: the noise floor needs at least 2 trainings of one arch")
    if s.top_k is not None and not 1 <= s.top_k <= s.archs:
        raise UsageError(f"--top-k {s.top_k}: expected 1 to --archs ({s.archs})")
    if s.jobs and s.workers:
        raise UsageError("--jobs is how many trainings run at once here; --num-workers sends them to Ray: give one")
    if s.ray_address and not s.workers:
        raise UsageError("--ray-address is a setting of --num-workers (the Ray workers the trainings go to); add "
                         "--num-workers N or drop it")


def parallelism(s: RankSettings) -> tuple[int, int]:
    """(trainings at once, intra-op threads of each): on CPU one process per core with one thread each by
    default (small networks use two single-threaded processes better than one process with two threads), one at
    a time on CUDA; on Ray, the cores divided among the workers."""
    cores = os.cpu_count() or 1
    if s.workers:
        return s.workers, s.threads or max(1, cores // s.workers)
    at_once = s.jobs or (1 if s.torch_device == "cuda" else cores)
    return at_once, s.threads or max(1, cores // at_once)
