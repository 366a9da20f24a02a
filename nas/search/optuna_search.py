"""Optuna studies over a space under latency budgets.

Trials are asked in batches of one per worker, evaluated (here or on Ray), then told in trial order, so the
same seed gives the same study however long each evaluation takes. Latency is a constraint (Optuna's
``Trial.set_constraint``: latency - budget per device, feasible when all are <= 0), not part of the objective;
NSGA-II also minimises the first device's latency, which gives the accuracy-latency Pareto front.

Storage: an Optuna journal file (``OUT/study.log`` by default, what ``optuna-dashboard`` opens) or any SQLAlchemy
URL. The sampler works on an in-memory copy of the study and each finished trial is written to the storage at
once, in one append: a study's many small parameter writes (one per knob, ~40 per trial) cost 10x more than the
sampling itself when they go to SQLite one by one (``benchmarks/search_speed.py``). ``--trials`` is the study's
total; a re-run with the same study continues it from the trials already written, so after a kill -9 no finished
trial is lost or repeated (the one in flight is drawn again).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.trial import TrialState

from nas.errors import UsageError
from nas.search.budgets import Budgets
from nas.search.encoding import arch_params, suggest_arch
from nas.search.objectives import Objective
from nas.search.records import TrialRecord
from nas.search.strategy import SAMPLERS, SearchContext, Strategy
from nas.search.workers import Evaluator
from nas.space import SearchSpace

CONFIG_ATTR = "nas_config"   # what a study was started with; a resume must match it


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            # multivariate: knobs present in every trial (widths, depths, n3d) are modelled jointly; conditional
            # ones (per-block knobs) independently. group=True measured 1.6x slower here for no better result.
            return optuna.samplers.TPESampler(seed=seed, multivariate=True)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise UsageError(f"--sampler {name!r}: accepted {', '.join(SAMPLERS)}")


@dataclass
class StudySettings:
    space: SearchSpace
    objective: Objective
    budgets: Budgets
    sampler: str
    seed: int | None
    storage: str
    study_name: str
    trials: int

    def config(self) -> dict[str, Any]:
        return {"space": self.space.name, "objective": self.objective.name, "sampler": self.sampler,
                "seed": self.seed, "budgets": self.budgets.config()}


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """A journal file storage for a path (no ``://``), else an Optuna RDB storage; SQLite files run in WAL mode
    with synchronous=NORMAL, which keeps every committed trial across a kill -9 of this process (only an OS crash
    could lose the last commits) and makes the many small commits of a study ~1.6x faster than SQLite's default
    rollback journal."""
    if "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url))
    storage = optuna.storages.RDBStorage(url)
    if url.startswith("sqlite"):
        from sqlalchemy import event

        def on_connect(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        event.listen(storage.engine, "connect", on_connect)
        storage.engine.dispose()       # connections opened while creating the schema predate the listener
    return storage


def _directions(settings: StudySettings) -> list[Literal["minimize", "maximize"]]:
    return ["maximize", "minimize"] if settings.sampler == "nsga2" else ["maximize"]


def open_study(settings: StudySettings) -> optuna.Study:
    """The stored study (created, or checked against the settings it was started with)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    refused: tuple[type[BaseException], ...] = (ImportError, ValueError, OSError, optuna.exceptions.OptunaError)
    if "://" in settings.storage:     # SQLAlchemy only for URLs: a journal file does not need its 0.3 s import
        from sqlalchemy.exc import SQLAlchemyError
        refused += (SQLAlchemyError,)
    try:
        study = optuna.create_study(study_name=settings.study_name, storage=make_storage(settings.storage),
                                    directions=_directions(settings), load_if_exists=True)
    except refused as exc:
        raise UsageError(f"--storage {settings.storage!r}: {str(exc).splitlines()[0]}") from None
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, settings.config())
    elif stored != settings.config():
        diff = {k: stored.get(k) for k in settings.config() if stored.get(k) != settings.config()[k]}
        raise UsageError(f"study {settings.study_name!r} in {settings.storage} was started with {diff}; resume it "
                         "with the same settings, or start another with --study NAME")
    return study


_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def working_copy(settings: StudySettings, stored: optuna.Study) -> optuna.Study:
    """An in-memory study holding the stored study's finished trials, with the sampler: trials are drawn here and
    each finished one is written to ``stored`` (``run_study``). Trials a killed run of an older nas left RUNNING
    in the storage are marked failed, so the stored numbering stays that of the working copy."""
    for t in stored.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        stored._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    work = optuna.create_study(directions=_directions(settings), sampler=make_sampler(settings.sampler,
                                                                                     settings.seed))
    finished = stored.get_trials(deepcopy=False, states=_FINISHED)
    work.add_trials(finished)
    if not finished:
        seed_arch = settings.budgets.feasible_seed(settings.space)
        if seed_arch is not None:          # trial 0: the fastest arch, so the study always has a feasible trial
            work.enqueue_trial(arch_params(seed_arch, settings.space))
    return work


def run_study(settings: StudySettings, evaluator: Evaluator,
              on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> optuna.Study:
    """Run the study to ``settings.trials`` trials; returns the in-memory study holding all of them."""
    stored = open_study(settings)
    study = working_copy(settings, stored)
    space, budgets, objective = settings.space, settings.budgets, settings.objective
    done = len(study.get_trials(deepcopy=False, states=_FINISHED))
    if on_trial:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            on_trial(t)
    while done < settings.trials:
        batch = [study.ask() for _ in range(min(evaluator.workers, settings.trials - done))]
        archs = [suggest_arch(trial, space) for trial in batch]
        for trial, arch in zip(batch, archs):
            latencies, sizes = budgets.latencies(arch), budgets.limited_sizes(arch)
            for name, violation in zip(budgets.constraint_names(), budgets.violations(latencies, sizes)):
                trial.set_constraint(name, violation)     # feasible when every one is <= 0
            trial.set_user_attr("eval", {"arch": arch.to_dict(), "latency_ms": latencies,
                                         "feasible": budgets.feasible(latencies, sizes),
                                         "details": {**objective.details(arch), **sizes}})
        try:
            results = evaluator.map(archs)
        except Exception as exc:
            # the objective itself failed (a worker's death is retried inside the evaluator): the trials are
            # recorded as failed, so a resumed study does not repeat them, and the error surfaces
            for trial in batch:
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
                stored.add_trial(study.tell(trial, state=TrialState.FAIL))
            raise
        for trial, arch, (value, pid) in zip(batch, archs, results):
            trial.set_user_attr("worker_pid", pid)
            values = [value, budgets.latencies(arch)[budgets.primary.device]] if settings.sampler == "nsga2" \
                else [value]
            frozen = study.tell(trial, values)
            stored.add_trial(frozen)          # one append: the finished trial is on disk before the next is drawn
            done += 1
            if on_trial:
                on_trial(frozen)
    return study


def record_of(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    ev = trial.user_attrs["eval"]
    return TrialRecord(trial.number, trial.values[0], ev["arch"], ev["latency_ms"], ev["feasible"],
                       ev.get("details", {}), trial.user_attrs.get("worker_pid"))


class OptunaStrategy(Strategy):
    name = "optuna"
    uses_optuna_settings = True

    def run(self, ctx: SearchContext) -> list[TrialRecord]:
        settings = StudySettings(ctx.space, ctx.objective, ctx.budgets, ctx.sampler, ctx.seed, ctx.storage,
                                 ctx.study_name, ctx.trials)
        on_record = ctx.on_record
        study = run_study(settings, ctx.evaluator, (lambda t: on_record(record_of(t))) if on_record else None)
        return [record_of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
