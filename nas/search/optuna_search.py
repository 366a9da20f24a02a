"""Optuna studies over a space under latency budgets.

Trials are asked in batches of one per worker, evaluated (here or on Ray), then told in trial order, so the
same seed gives the same study however long each evaluation takes. Latency is a constraint (Optuna's
``Trial.set_constraint``: latency - budget per device, feasible when all are <= 0), not part of the objective;
NSGA-II also minimises the first device's latency, which gives the accuracy-latency Pareto front.

Storage: any Optuna storage URL (SQLite in the run directory by default). ``--trials`` is the study's total; a
re-run with the same study continues it. A trial left RUNNING by a killed process is finished first, with the
parameters it had already drawn (its missing ones are drawn now), so after a kill -9 no trial is lost or repeated.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

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
    """An Optuna RDB storage; SQLite files run in WAL mode with synchronous=NORMAL, which keeps every committed
    trial across a kill -9 of this process (only an OS crash could lose the last commits) and makes the many
    small commits of a study ~1.6x faster than SQLite's default rollback journal."""
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


def open_study(settings: StudySettings) -> optuna.Study:
    directions: list[Literal["minimize", "maximize"]] = (["maximize", "minimize"] if settings.sampler == "nsga2"
                                                          else ["maximize"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(study_name=settings.study_name, storage=make_storage(settings.storage),
                                    directions=directions, sampler=make_sampler(settings.sampler, settings.seed),
                                    load_if_exists=True)
    except (ImportError, ValueError, optuna.exceptions.OptunaError, SQLAlchemyError) as exc:
        raise UsageError(f"--storage {settings.storage!r}: {str(exc).splitlines()[0]}") from None
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, settings.config())
        seed_arch = settings.budgets.feasible_seed(settings.space)
        if seed_arch is not None:          # trial 0: the fastest arch, so the study always has a feasible trial
            study.enqueue_trial(arch_params(seed_arch, settings.space))
    elif stored != settings.config():
        diff = {k: stored.get(k) for k in settings.config() if stored.get(k) != settings.config()[k]}
        raise UsageError(f"study {settings.study_name!r} in {settings.storage} was started with {diff}; resume it "
                         "with the same settings, or start another with --study NAME")
    return study


def run_study(settings: StudySettings, evaluator: Evaluator,
              on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> optuna.Study:
    study = open_study(settings)
    space, budgets, objective = settings.space, settings.budgets, settings.objective
    # trials a killed run left RUNNING: finish them first, with the parameters they already drew
    pending = [optuna.trial.Trial(study, t._trial_id) for t in study.get_trials(deepcopy=False,
                                                                               states=(TrialState.RUNNING,))]
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)))
    if on_trial:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            on_trial(t)
    while done + len(pending) < settings.trials or pending:
        batch = pending or [study.ask() for _ in range(min(evaluator.workers, settings.trials - done))]
        pending = []
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
                study.tell(trial, state=TrialState.FAIL)
            raise
        for trial, arch, (value, pid) in zip(batch, archs, results):
            trial.set_user_attr("worker_pid", pid)
            values = [value, budgets.latencies(arch)[budgets.primary.device]] if settings.sampler == "nsga2" \
                else [value]
            frozen = study.tell(trial, values)
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
