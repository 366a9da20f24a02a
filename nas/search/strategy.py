"""The search-strategy seam: a ``Strategy`` turns a ``SearchContext`` (space, objective, budgets, evaluator, run
directory) into ``TrialRecord``s.

Each strategy is one registered record (``StrategyEntry``): its implementation, imported when chosen, a line of
help, and the settings dataclass it reads, declared beside its code with ``setting(...)`` fields
(``nas.settings``). The command line makes an option of every setting and the run directory's name of the ones
changed from their defaults, asking the record and never comparing names. A settings class must live in a module
that imports neither torch nor Optuna (the parser reads it on every ``nas`` command;
``tests/search/test_strategies.py`` keeps that true). A new strategy is one module plus one ``register_strategy``
line below.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas import load_reference, registry
from nas.errors import UsageError
from nas.settings import PluginEntry, SettingOption, options_of, settings_class, settings_label, settings_or_defaults

if TYPE_CHECKING:
    from nas.search.budgets import Budgets
    from nas.search.objectives import Objective
    from nas.search.records import TrialRecord
    from nas.search.workers import Evaluator
    from nas.space import SearchSpace


class StrategyEntry(PluginEntry):
    """A strategy's record; ``implementation`` is its ``Strategy`` subclass."""


STRATEGIES: dict[str, StrategyEntry] = {}


def register_strategy(name: str, entry: StrategyEntry) -> StrategyEntry:
    """Register a strategy under ``name`` (``nas search --strategy name``); a name is registered once."""
    return registry.add(STRATEGIES, name, entry, "search strategy")


register_strategy("optuna", StrategyEntry("nas.search.optuna_search:OptunaStrategy",
                                          "a sampled Optuna study (--sampler tpe, nsga2, random)",
                                          settings="nas.search.optuna_settings:OptunaSettings"))
register_strategy("slim", StrategyEntry("nas.search.slim:SlimStrategy",
                                        "EfficientFormer's greedy slimming from the largest arch",
                                        settings="nas.search.slim:SlimSettings"))
register_strategy("evolution", StrategyEntry("nas.search.evolution:EvolutionStrategy",
                                             "Once-for-All's evolutionary search: a population mutated and "
                                             "crossed over under the budgets",
                                             settings="nas.search.evolution:EvolutionSettings"))


def settings_type(name: str) -> type | None:
    """The settings dataclass of strategy ``name`` (imported: a torch- and Optuna-free module), or None."""
    return settings_class(STRATEGIES[name].settings)


def setting_options(name: str) -> list[SettingOption]:
    """Strategy ``name``'s settings as command-line options, in the order its dataclass declares them."""
    return options_of(settings_type(name), name, "strategy")


@dataclass
class SearchContext:
    space: SearchSpace
    objective: Objective
    budgets: Budgets
    evaluator: Evaluator
    out: Path                       # the run directory (a strategy keeps its resumable state there)
    run_name: str                   # the run's name (its directory's, unless --out; an Optuna study's)
    trials: int = 100
    seed: int | None = 0
    on_record: Callable[[TrialRecord], None] | None = None   # progress: called once per record, resumed ones too
    # the chosen strategy's own settings, of the type its entry names (``StrategyEntry.settings``; None: its
    # defaults). Typed by each strategy, not here, so that this seam names no strategy.
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
    records_called: str = "trials"  # what its records are called in the summary ("slimming steps")
    records_form_a_path = False     # whether its records are one path (slimming's steps), written as such
    summary: dict[str, Any] | None = None   # what run.json records of its own work, under its name (set by run)
    run_keys: dict[str, Any] | None = None  # keys of its own at run.json's top level (Optuna's study; set by run)
    state_files: tuple[str, ...] = ()       # what it keeps in the run directory (resumable state)

    @abc.abstractmethod
    def run(self, ctx: SearchContext) -> list[TrialRecord]:
        """Every record of the search (a resumed search included), in order."""

    def progress(self, ctx: SearchContext, first: TrialRecord) -> Progress:
        """Its progress bar, made at the first record: by default ``ctx.trials`` records, counted."""
        return Progress(f"search ({self.name})", ctx.trials, self.unit, lambda record, count: count)

    def describe(self, summary: dict[str, Any]) -> str | None:
        """One line for ``nas search``'s summary about its own work (``summary`` as run.json keeps it), or None."""
        return None

    def run_label(self, settings: object | None) -> str:
        """How a run directory's default name calls this search: the strategy and its changed settings."""
        return self.name + settings_label(settings)

    def given_run_name(self, settings: object | None) -> str | None:
        """The run's name where its settings give one (Optuna's ``--study``), else None: made from the settings."""
        return None

    def title(self, settings: object | None) -> str:
        """The search as plots name it (``slim``, ``optuna/tpe``)."""
        return self.name

    def check(self, settings: object | None) -> None:  # noqa: B027 - a hook whose default is to do nothing
        """Refuse settings that cannot work, before the run directory is made (default: nothing to check)."""

    def settings_of(self, settings: object | None, cls: type) -> Any:
        """``settings`` (a context's, a request's) if it is a ``cls``, ``cls()`` (the defaults) if it is None; a
        TypeError otherwise."""
        return settings_or_defaults(settings, cls, f"--strategy {self.name}")


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise UsageError(f"--strategy {name!r}: accepted {', '.join(STRATEGIES)}")
    strategy: Strategy = load_reference(STRATEGIES[name].implementation)()
    return strategy
