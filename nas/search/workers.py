"""Where trials are evaluated: here or on Ray, behind one ``Evaluator`` interface.

``LocalEvaluator`` calls the objective in this process. ``RayEvaluator`` sends each arch to a Ray task:
``--workers N`` starts a local Ray with N CPUs, ``--ray-address`` joins a cluster. A task whose worker process
dies (killed, out of memory, node lost) is retried by Ray on another worker (``max_retries``); an exception
raised by the objective itself is not retried, it fails the trial. Results come back in the order asked, so a
parallel search is as deterministic as a serial one.
"""
from __future__ import annotations

import abc
import os
from collections.abc import Sequence

from nas import install_hint
from nas.search.objectives import Objective
from nas.space import Arch

WORKER_DEATH_RETRIES = 3


class Evaluator(abc.ABC):
    """Scores archs with an objective; ``workers`` is how many it evaluates at once (a strategy asks that many)."""

    workers: int = 1

    @abc.abstractmethod
    def map(self, archs: Sequence[Arch]) -> list[tuple[float, int]]:
        """(objective value, pid of the process that computed it) per arch, in the order asked."""

    def close(self) -> None:  # noqa: B027 - a hook whose default is to do nothing
        """Release what the evaluator started."""


class LocalEvaluator(Evaluator):
    def __init__(self, objective: Objective):
        self.objective = objective

    def map(self, archs: Sequence[Arch]) -> list[tuple[float, int]]:
        return [(self.objective(a), os.getpid()) for a in archs]

    def close(self) -> None:
        self.objective.flush()


def _evaluate(objective: Objective, arch: Arch) -> tuple[float, int]:
    value = objective(arch)
    objective.flush()
    return value, os.getpid()


class RayEvaluator(Evaluator):
    def __init__(self, objective: Objective, workers: int = 0, address: str | None = None):
        try:
            import ray
        except ImportError:
            from nas.errors import UsageError

            raise UsageError(f"--workers/--ray-address need Ray: {install_hint('ray')}") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            if address:
                from nas.ray_cluster import join
                join(ray, address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        self.workers = workers or int(ray.cluster_resources().get("CPU", 1))
        self._remote = ray.remote(num_cpus=1, max_retries=WORKER_DEATH_RETRIES, retry_exceptions=False)(_evaluate)
        self._objective = ray.put(objective)

    def map(self, archs: Sequence[Arch]) -> list[tuple[float, int]]:
        return self._ray.get([self._remote.remote(self._objective, a) for a in archs])

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def make_evaluator(objective: Objective, workers: int = 0, address: str | None = None) -> Evaluator:
    """Ray workers for an objective worth sending away; the driver itself for a cheap one (the capacity proxy costs
    microseconds, a Ray task milliseconds), which also keeps the study the serial run's: trials are drawn one per
    worker at a time, so a batch of N trials draws each without the others' results."""
    if (workers or address) and objective.cheap:
        import sys

        from nas.ray_cluster import check_reachable

        if address:
            check_reachable(address)      # a malformed address, or one with no Ray head, is still refused

        print(f"nas: note: {objective.name} costs microseconds a trial; it is evaluated here, not on Ray "
              "(--workers/--ray-address matter for --supernet accuracy), so the study is the serial run's",
              file=sys.stderr)
        return LocalEvaluator(objective)
    if workers or address:
        return RayEvaluator(objective, workers, address)
    return LocalEvaluator(objective)
