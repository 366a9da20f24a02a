"""Optuna studies over a space under latency budgets.

Trials are asked in batches of one per worker, evaluated (here or on Ray), then told in trial order, so the
same seed and number of workers give the same study however long each evaluation takes. Latency is a constraint
(latency - budget per device, feasible when all are <= 0, stored where Optuna and optuna-dashboard read it), not
part of the objective; NSGA-II also minimises the first device's latency, which gives the accuracy-latency
Pareto front.

Storage (``nas.search.storage``): an Optuna journal file (``OUT/study.log`` by default) or any SQLAlchemy URL,
with Optuna's heartbeat on. The sampler works on an in-memory copy of the study; each drawn trial is created in
the storage RUNNING, with its parameters, in one write (a study's many small parameter writes, one per knob, ~40
per trial, cost 10x more than the sampling itself when they go to SQLite one by one: ``benchmarks/search_speed.py``)
and completed in one more. ``--trials`` is the study's total of complete trials, shared by every process running
the same study: each syncs the others' finished trials before drawing and counts the ones running elsewhere. A
trial whose process died (no heartbeat for ``GRACE_PERIOD_S``) is failed and drawn again, so after a kill -9 no
finished trial is lost or repeated.
"""
from __future__ import annotations

import threading
import time
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
from nas.search.optuna_settings import SAMPLERS, OptunaSettings
from nas.search.records import TrialRecord
from nas.search.storage import (
    GRACE_PERIOD_S,
    StoredStudy,
    check_storage,
    fail_silent_trials,
    make_storage,
    mark_alive,
    mask_url,
    process_owner,
    set_constraints,
    trial_id,
)
from nas.search.strategy import Progress, SearchContext, Strategy
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
        """Every setting that changes a trial's result: a resumed (or shared) study must match it."""
        if not hasattr(self, "_config"):
            self._config = {"space": self.space.name, "objective": self.objective.config(), "sampler": self.sampler,
                            "seed": self.seed, "budgets": self.budgets.config(),
                            "tables": self.budgets.tables_config()}
        return self._config


def _directions(settings: StudySettings) -> list[Literal["minimize", "maximize"]]:
    return ["maximize", "minimize"] if settings.sampler == "nsga2" else ["maximize"]


def open_study(settings: StudySettings) -> optuna.Study:
    """The stored study (created, or checked against the settings it was started with)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    refused: tuple[type[BaseException], ...] = (ImportError, ValueError, OSError, optuna.exceptions.OptunaError)
    if "://" in settings.storage:     # SQLAlchemy only for URLs: a journal file does not need its 0.3 s import
        from sqlalchemy.exc import SQLAlchemyError
        refused += (SQLAlchemyError,)
    shown = mask_url(settings.storage)
    try:
        study = optuna.create_study(study_name=settings.study_name, storage=make_storage(settings.storage),
                                    directions=_directions(settings), load_if_exists=True)
    except UsageError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # a journal record that is not JSON, or JSON that is not a record: Optuna's reader raises either as it is
        if "://" in settings.storage:
            raise UsageError(f"--storage {shown!r}: {str(exc).splitlines()[0]}") from None
        what = str(exc).splitlines()[0] if isinstance(exc, ValueError) else f"a record without {exc}"
        raise UsageError(f"--storage {shown}: the journal is corrupt ({what}); it was left as "
                         "it was: keep it for the record, and start again with another --storage or --out"
                         ) from None
    except refused as exc:
        raise UsageError(f"--storage {shown!r}: {str(exc).splitlines()[0].replace(settings.storage, shown)}"
                         ) from None
    config = settings.config()
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(_metric_names(settings))    # what optuna-dashboard labels the objectives with
    elif stored != config:
        change = describe_change(stored, config)
        raise UsageError(f"study {settings.study_name!r} in {shown} was started with {change}: trials scored "
                         "differently must not share a study; resume it with the same settings, or start another "
                         "with --study NAME")
    return study


# how each setting a study records is given on the command line
_SETTING_WORDS = {"space": "--space", "sampler": "--sampler", "seed": "--seed", "budgets": "budgets (--budget-ms/"
                  "--device, --max-params/--max-macs, --guarantee)", "name": "--objective", "data": "--data"}


def describe_change(stored: dict[str, Any], config: dict[str, Any]) -> str:
    """The first setting that differs between a stored study and this run, in the user's words: the option and
    both values, or which file's contents changed (never a dict of digests)."""
    for key, mine in config.items():
        theirs = stored.get(key)
        if theirs == mine:
            continue
        if key == "objective" and isinstance(theirs, dict) and isinstance(mine, dict):
            return describe_change(theirs, mine)
        if key == "tables" and isinstance(theirs, dict) and isinstance(mine, dict):
            device = next((d for d in {*theirs, *mine} if theirs.get(d) != mine.get(d)), "?")
            return (f"another latency table for {device} (the file's contents differ; --lut {device}=FILE gives the "
                    "one it was started with)")
        if key == "supernet_sha256":
            return "another --supernet checkpoint (the file's contents differ)"
        flag = _SETTING_WORDS.get(key, key)
        return f"{flag} {_plain(theirs)}, this run with {_plain(mine)}"
    return "other settings"


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(" ".join(str(v) for v in item) if isinstance(item, list) else str(item) for item in value)
    return str(value)


def _metric_names(settings: StudySettings) -> list[str]:
    names = [settings.objective.name]
    return names + [f"latency_ms_{settings.budgets.primary.device}"] if settings.sampler == "nsga2" else names


_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
POLL_S = 0.5      # how often a process whose remaining trials are all running elsewhere looks again


def working_copy(settings: StudySettings, stored: optuna.Study) -> tuple[optuna.Study, set[int]]:
    """An in-memory study holding the stored study's finished trials, with the sampler: trials are drawn here, and
    each is also created in ``stored`` (``run_study``). Returns it with the stored ids it already holds."""
    work = optuna.create_study(directions=_directions(settings), sampler=make_sampler(settings.sampler,
                                                                                     settings.seed))
    finished = stored.get_trials(deepcopy=False, states=_FINISHED)
    work.add_trials(finished)
    if not stored.get_trials(deepcopy=False):
        seed_arch = settings.budgets.feasible_seed(settings.space)
        if seed_arch is not None:          # trial 0: the fastest arch, so the study always has a feasible trial
            work.enqueue_trial(arch_params(seed_arch, settings.space))
    return work, {trial_id(t) for t in finished}


class _Heartbeats:
    """Optuna's heartbeat for the stored trials this process is running, from one thread, while they run."""

    def __init__(self, stored: StoredStudy, trial_ids: list[int]):
        self.stored, self.trial_ids = stored, trial_ids
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        interval = self.stored.heartbeat_interval
        while interval:
            self.stored.beat(self.trial_ids)
            if self.stop.wait(interval):
                return

    def __enter__(self) -> _Heartbeats:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _describe_trial(trial: optuna.Trial, arch: Any, budgets: Budgets, objective: Objective) -> None:
    """What the stored trial says of itself before it runs: its constraints, where Optuna's feasibility logic and
    optuna-dashboard both read them (``system_attrs["constraints"]``, one value per ``constraint_names``, feasible
    when all are <= 0), and sortable user attributes (latency per device, feasibility), next to the full record."""
    latencies, sizes = budgets.latencies(arch), budgets.limited_sizes(arch)
    violations = budgets.violations(latencies, sizes)
    set_constraints(trial, violations)
    feasible = budgets.feasible(latencies, sizes)
    for device, ms in latencies.items():
        trial.set_user_attr(f"latency_ms_{device}", ms)
    for key, value in sizes.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("feasible", feasible)
    if budgets.auto:        # --precision auto: what the arch ships in, sortable in optuna-dashboard like latency
        for device, precision in budgets.precisions(arch).items():
            trial.set_user_attr(f"precision_{device}", precision)
    trial.set_user_attr("eval", {"arch": arch.to_dict(), "latency_ms": latencies, "feasible": feasible,
                                 "details": {**objective.details(arch), **sizes}})


def _rank(trials: list[optuna.trial.FrozenTrial], number: int) -> int:
    """How many trials that count towards --trials (complete, or running somewhere) come before or at ``number``:
    trial numbers are handed out in one order to every process, so all agree on which reservations fit."""
    return sum(1 for t in trials if t.number <= number and t.state in (TrialState.RUNNING, TrialState.COMPLETE))


def run_study(settings: StudySettings, evaluator: Evaluator,
              on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None
              ) -> list[optuna.trial.FrozenTrial]:
    """Run the stored study to ``settings.trials`` complete trials, sharing it with any other process running the
    same study; returns its complete trials (stored numbering)."""
    stored = open_study(settings)
    study, synced = working_copy(settings, stored)
    seam = StoredStudy(stored)
    space, budgets, objective = settings.space, settings.budgets, settings.objective
    reported: set[int] = set()

    def report(trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and trial_id(trial) not in reported:
            reported.add(trial_id(trial))
            if on_trial:
                on_trial(trial)

    owner = process_owner()          # marks the stored trials this process creates (failed if it is stopped)
    try:
        while True:
            fail_silent_trials(stored)               # trials whose process died (no heartbeat for a while)
            trials = stored.get_trials(deepcopy=False)
            for t in trials:
                if t.state in _FINISHED and trial_id(t) not in synced:   # another process's, or a stale one
                    study.add_trial(t)
                    synced.add(trial_id(t))
                report(t)
            complete = sum(t.state == TrialState.COMPLETE for t in trials)
            room = settings.trials - complete - sum(t.state == TrialState.RUNNING for t in trials)
            if complete >= settings.trials:
                break
            if room <= 0:                  # the remaining trials are running in other processes
                time.sleep(POLL_S)
                continue
            batch = [study.ask() for _ in range(min(evaluator.workers, room))]
            archs = [suggest_arch(trial, space) for trial in batch]
            for trial, arch in zip(batch, archs):
                _describe_trial(trial, arch, budgets, objective)
                mark_alive(trial, owner)
            # one write per trial: the drawn trial, RUNNING, with its parameters and attributes
            ids = []
            for trial in batch:
                ids.append(seam.create_running(trial))
            synced.update(ids)
            now = stored.get_trials(deepcopy=False)
            numbers = {trial_id(t): t.number for t in now}
            runs = []
            for trial, arch, stored_id in zip(batch, archs, ids):
                if _rank(now, numbers[stored_id]) > settings.trials:   # another process took the last places first
                    seam.fail(stored_id, not_run="another process reached --trials first")
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    runs.append((trial, arch, stored_id))
            if not runs:
                continue
            try:
                with _Heartbeats(seam, [stored_id for *_, stored_id in runs]):
                    results = evaluator.map([arch for _, arch, _ in runs])
            except Exception as exc:
                # the objective itself failed (a worker's death is retried inside the evaluator): the trials are
                # recorded as failed, so a resumed study does not repeat them, and the error surfaces
                for trial, _, stored_id in runs:
                    seam.fail(stored_id, error=f"{type(exc).__name__}: {exc}")
                    study.tell(trial, state=TrialState.FAIL)
                raise
            for (trial, arch, stored_id), (value, pid) in zip(runs, results):
                values = [value, budgets.latencies(arch)[budgets.primary.device]] if settings.sampler == "nsga2" \
                    else [value]
                study.tell(trial, values)
                try:
                    done = seam.complete(stored_id, values, worker_pid=pid)
                except optuna.exceptions.UpdateFinishedTrialError:
                    # silent past the grace period, so another process failed it; its place is drawn again
                    warnings.warn(f"trial {numbers[stored_id]} was taken for dead by another process (no heartbeat "
                                  f"for {GRACE_PERIOD_S} s) and is not counted", stacklevel=1)
                    continue
                report(done)
    except KeyboardInterrupt:
        # stopped (Ctrl-C, SIGTERM), wherever it landed: this process's unfinished trials are failed now, so a
        # resumed study neither repeats them nor waits for their heartbeats to go stale. Through a storage opened
        # afresh: the stop may have landed inside Optuna's own bookkeeping, leaving this one's view of the file
        # behind it (once in 20 tries a trial created just before the stop was not seen, and stayed RUNNING).
        fresh = optuna.load_study(study_name=settings.study_name, storage=make_storage(settings.storage))
        StoredStudy(fresh).fail_running_of(owner, error="stopped (Ctrl-C or SIGTERM)")
        raise
    return stored.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def record_of(trial: optuna.trial.FrozenTrial, space: SearchSpace) -> TrialRecord:
    ev = trial.user_attrs["eval"]
    return TrialRecord(trial.number, trial.values[0], space.arch_from_dict(ev["arch"]), ev["latency_ms"],
                       ev["feasible"],
                       ev.get("details", {}), trial.user_attrs.get("worker_pid"))


class OptunaStrategy(Strategy):
    name = "optuna"
    state_files = ("study.log", "study.log.lock")   # the study's journal, unless --storage puts it elsewhere

    def progress(self, ctx: SearchContext, first: TrialRecord) -> Progress:
        sampler = self._settings(ctx.settings).sampler
        return Progress(f"search ({sampler})", ctx.trials, self.unit, lambda record, count: count)

    def run_label(self, settings: object | None) -> str:
        return self._settings(settings).sampler    # runs of a study have always been named by their sampler alone

    def given_run_name(self, settings: object | None) -> str | None:
        return self._settings(settings).study

    def title(self, settings: object | None) -> str:
        return f"{self.name}/{self._settings(settings).sampler}"

    def check(self, settings: object | None) -> None:
        storage = self._settings(settings).storage
        if storage:
            check_storage(storage)

    def run(self, ctx: SearchContext) -> list[TrialRecord]:
        own = self._settings(ctx.settings)
        storage = own.storage or str((ctx.out / "study.log").resolve())   # an Optuna journal file
        self.run_keys = {"sampler": own.sampler, "study": ctx.run_name,
                         "storage": mask_url(storage)}                  # never a database password
        settings = StudySettings(ctx.space, ctx.objective, ctx.budgets, own.sampler, ctx.seed, storage,
                                 ctx.run_name, ctx.trials)
        on_record = ctx.on_record
        trials = run_study(settings, ctx.evaluator,
                           (lambda t: on_record(record_of(t, ctx.space))) if on_record else None)
        return [record_of(t, ctx.space) for t in trials]

    def _settings(self, settings: object | None) -> OptunaSettings:
        found: OptunaSettings = self.settings_of(settings, OptunaSettings)
        return found
