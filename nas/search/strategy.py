"""The search-strategy seam: a ``Strategy`` turns a ``SearchContext`` (space, objective, budgets, evaluator, run
directory) into ``TrialRecord``s. Strategies are registered by name here, torch- and Optuna-free, so the command
line lists them without importing them; a new one is one module with a ``Strategy`` subclass plus one entry in
``STRATEGIES``."""
from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError

if TYPE_CHECKING:
    from nas.search.budgets import Budgets
    from nas.search.objectives import Objective
    from nas.search.records import TrialRecord
    from nas.search.workers import Evaluator
    from nas.space import SearchSpace

# name -> "module:class", imported when chosen
STRATEGIES: dict[str, str] = {
    "optuna": "nas.search.optuna_search:OptunaStrategy",   # a sampled study (TPE, NSGA-II, random)
    "slim": "nas.search.slim:SlimStrategy",                 # EfficientFormer's greedy slimming
}
SAMPLERS = ("tpe", "nsga2", "random")                       # Optuna samplers (nas.search.optuna_search)


@dataclass
class SearchContext:
    space: SearchSpace
    objective: Objective
    budgets: Budgets
    evaluator: Evaluator
    out: Path                       # the run directory (a strategy keeps its resumable state there)
    study_name: str
    storage: str                    # Optuna storage: a journal file path (``out/study.log`` by default) or URL
    sampler: str = "tpe"
    trials: int = 100
    seed: int | None = 0
    on_record: Callable[[TrialRecord], None] | None = None   # progress: called once per record, resumed ones too
    # the chosen strategy's own settings, of the type it declares (``Strategy.settings_type``; None: its defaults).
    # Typed by each strategy, not here, so that this seam names no strategy.
    settings: object | None = None


@dataclass
class Progress:
    """How a strategy's progress bar counts: ``total`` in ``unit``, and how far one record has brought it."""

    desc: str
    total: float
    unit: str
    done: Callable[[TrialRecord, int], float]     # (the latest record, records so far) -> position on the bar


class Strategy(abc.ABC):
    name: str
    unit: str = "trial"             # what one record is, for progress and summaries ("trial", "step")
    uses_optuna_settings = False    # whether --storage, --study and --sampler mean anything to it
    records_form_a_path = False     # whether its records are one path (slimming's steps), written as such
    summary: dict[str, Any] | None = None   # what run.json records of its own work, under its name (set by run)
    settings_type: type | None = None       # the type of ``SearchContext.settings`` it reads (None: it has none)

    @abc.abstractmethod
    def run(self, ctx: SearchContext) -> list[TrialRecord]:
        """Every record of the search (a resumed search included), in order."""

    def progress(self, ctx: SearchContext, first: TrialRecord) -> Progress:
        """Its progress bar, made at the first record: by default ``ctx.trials`` records, counted."""
        return Progress(f"search ({self.name})", ctx.trials, self.unit, lambda record, count: count)


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise UsageError(f"--strategy {name!r}: accepted {', '.join(STRATEGIES)}")
    module, cls = STRATEGIES[name].split(":")
    strategy: Strategy = getattr(importlib.import_module(module), cls)()
    return strategy
