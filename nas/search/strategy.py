"""The search-strategy seam: a ``Strategy`` turns a ``SearchContext`` (space, objective, budgets, evaluator, run
directory) into ``TrialRecord``s.

Each strategy is one registered record (``StrategyEntry``): its implementation, imported when chosen, a line of
help, and the settings dataclass it reads, declared beside its code with ``setting(...)`` fields. The command line
makes an option of every setting and the run directory's name of the ones changed from their defaults, asking the
record and never comparing names. A settings class must live in a module that imports neither torch nor Optuna
(the parser reads it on every ``nas`` command; ``tests/search/test_strategies.py`` keeps that true). A new
strategy is one module plus one ``register_strategy`` line below.
"""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas import load_reference
from nas.errors import UsageError

if TYPE_CHECKING:
    from nas.search.budgets import Budgets
    from nas.search.objectives import Objective
    from nas.search.records import TrialRecord
    from nas.search.workers import Evaluator
    from nas.space import SearchSpace


@dataclass(frozen=True)
class StrategyEntry:
    implementation: str            # "module:Class" of its Strategy subclass, imported when chosen
    help: str                      # one line for ``nas search --help``
    settings: str | None = None    # "module:Class" of its settings dataclass (None: it has none)


STRATEGIES: dict[str, StrategyEntry] = {}


def register_strategy(name: str, entry: StrategyEntry) -> StrategyEntry:
    """Register a strategy under ``name`` (``nas search --strategy name``); a name is registered once."""
    if name in STRATEGIES:
        raise ValueError(f"search strategy {name!r} is already registered ({STRATEGIES[name].implementation})")
    STRATEGIES[name] = entry
    return entry


register_strategy("optuna", StrategyEntry("nas.search.optuna_search:OptunaStrategy",
                                          "a sampled Optuna study (--sampler tpe, nsga2, random)"))
register_strategy("slim", StrategyEntry("nas.search.slim:SlimStrategy",
                                        "EfficientFormer's greedy slimming from the largest arch",
                                        settings="nas.search.slim:SlimSettings"))
register_strategy("evolution", StrategyEntry("nas.search.evolution:EvolutionStrategy",
                                             "Once-for-All's evolutionary search: a population mutated and "
                                             "crossed over under the budgets",
                                             settings="nas.search.evolution:EvolutionSettings"))
SAMPLERS = ("tpe", "nsga2", "random")                       # Optuna samplers (nas.search.optuna_search)


def setting(default: Any, help: str, *, flag: str | None = None, choices: tuple[Any, ...] | None = None,
            minimum: float | None = None, maximum: float | None = None) -> Any:
    """A field of a strategy's settings dataclass that is also a ``nas search`` option: ``--name-with-dashes``
    unless ``flag`` says otherwise, typed by its default (a bool is a switch), checked against ``choices`` or
    [``minimum``, ``maximum``]."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "choices": choices,
                                                        "minimum": minimum, "maximum": maximum})


@dataclass(frozen=True)
class SettingOption:
    """One setting of one strategy as the command line sees it."""

    strategy: str
    field: str
    flag: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    minimum: float | None
    maximum: float | None

    @property
    def dest(self) -> str:      # the argparse destination: unique across strategies
        return f"{self.strategy}__{self.field}"

    def check(self, value: Any) -> Any:
        """``value`` if the setting accepts it, else a one-line refusal naming it and what is accepted."""
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{self.flag} {value!r}: accepted {', '.join(map(str, self.choices))}")
        low = self.minimum if self.minimum is not None else float("-inf")
        high = self.maximum if self.maximum is not None else float("inf")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high:
            raise UsageError(f"{self.flag} {value}: accepted {_range(self.minimum, self.maximum)}")
        return value


def _range(low: float | None, high: float | None) -> str:
    if high is None:
        return f"a number >= {low:g}"
    return f"a number <= {high:g}" if low is None else f"a number in [{low:g}, {high:g}]"


def settings_type(name: str) -> type | None:
    """The settings dataclass of strategy ``name`` (imported: a torch- and Optuna-free module), or None."""
    entry = STRATEGIES[name].settings
    if entry is None:
        return None
    found: type = load_reference(entry)
    return found


def setting_options(name: str) -> list[SettingOption]:
    """Strategy ``name``'s settings as command-line options, in the order its dataclass declares them."""
    cls = settings_type(name)
    if cls is None:
        return []
    return [SettingOption(name, f.name, f.metadata.get("flag") or "--" + f.name.replace("_", "-"), f.default,
                          f.metadata["help"], f.metadata.get("choices"), f.metadata.get("minimum"),
                          f.metadata.get("maximum"))
            for f in dataclasses.fields(cls)]


def settings_label(settings: object | None) -> str:
    """The settings changed from their defaults, as a run directory's name carries them: ``-importance-mes``
    for choices, ``-pareto`` for a switch, ``-population32`` for a number."""
    if settings is None:
        return ""
    parts = []
    for f in dataclasses.fields(settings):   # type: ignore[arg-type]
        value = getattr(settings, f.name)
        if value == f.default:
            continue
        if isinstance(value, bool):
            parts.append(f.name)
        elif isinstance(value, str):
            parts.append(value)
        else:
            parts.append(f"{f.name}{value:g}")
    return "".join(f"-{p}" for p in parts)


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
    uses_optuna_settings = False    # whether --storage, --study and --sampler mean anything to it
    records_form_a_path = False     # whether its records are one path (slimming's steps), written as such
    summary: dict[str, Any] | None = None   # what run.json records of its own work, under its name (set by run)
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

    def run_label(self, sampler: str, settings: object | None) -> str:
        """How a run directory's default name calls this search: the strategy and its changed settings."""
        return self.name + settings_label(settings)

    def settings_of(self, ctx: SearchContext, cls: type) -> Any:
        """``ctx.settings`` if it is a ``cls``, ``cls()`` (the defaults) if it is None; a TypeError otherwise."""
        if ctx.settings is None:
            return cls()
        if not isinstance(ctx.settings, cls):
            raise TypeError(f"--strategy {self.name} takes {cls.__name__}, got {type(ctx.settings).__name__}")
        return ctx.settings


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise UsageError(f"--strategy {name!r}: accepted {', '.join(STRATEGIES)}")
    strategy: Strategy = load_reference(STRATEGIES[name].implementation)()
    return strategy
