"""What nas relies on where Optuna's public API stops (``nas.search.storage``, the one module that reaches inside
Optuna's objects): one test per behaviour, on a real journal file, so that an Optuna release that changes one of
them fails here, by name, before any search does."""
from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from nas.search.dashboard import feasible_trials
from nas.search.storage import (
    BEAT_ATTR,
    CONSTRAINTS_ATTR,
    OWNER_ATTR,
    StoredStudy,
    fail_silent_trials,
    make_storage,
    mark_alive,
    set_constraints,
    trial_id,
)


@pytest.fixture
def stored(tmp_path):
    return optuna.create_study(study_name="s", storage=make_storage(str(tmp_path / "study.log")))


def _drawn() -> optuna.Trial:
    """A trial drawn in an in-memory study, as run_study draws them: parameters, attributes, constraints."""
    work = optuna.create_study()
    trial = work.ask()
    trial.suggest_int("width", 16, 64, step=16)
    trial.suggest_categorical("mixer", ["mhsa", "ssa"])
    trial.set_user_attr("latency_ms_cpu", 3.5)
    set_constraints(trial, [-0.5, 1.25])
    mark_alive(trial, "host:1:0.0")
    return trial


def test_a_drawn_trial_is_created_running_in_the_stored_study_in_one_write(stored, tmp_path):
    drawn = _drawn()
    seam = StoredStudy(stored)
    lines = (tmp_path / "study.log").read_text().count("\n")
    new_id = seam.create_running(drawn)
    assert (tmp_path / "study.log").read_text().count("\n") == lines + 1      # one journal record
    (trial,) = stored.get_trials(deepcopy=False)
    assert trial_id(trial) == new_id and trial.state == TrialState.RUNNING
    assert trial.params == drawn.params and trial.distributions == drawn.distributions
    assert trial.user_attrs == {"latency_ms_cpu": 3.5} and BEAT_ATTR in trial.system_attrs


def test_constraints_are_stored_where_optuna_and_the_dashboard_read_them(stored):
    seam = StoredStudy(stored)
    seam.complete(seam.create_running(_drawn()), [0.7])
    (trial,) = stored.get_trials(deepcopy=False)
    assert trial.system_attrs[CONSTRAINTS_ATTR] == [-0.5, 1.25]               # optuna-dashboard's list
    assert list(trial.constraints.values()) == [-0.5, 1.25]                   # Optuna's public reading
    assert feasible_trials([trial]) == []                                      # 1.25 > 0: infeasible


def test_a_stored_trial_is_failed_or_completed_by_id_once(stored):
    seam = StoredStudy(stored)
    first, second = seam.create_running(_drawn()), seam.create_running(_drawn())
    seam.fail(first, error="stopped")
    done = seam.complete(second, [0.9], worker_pid=123)
    assert done.state == TrialState.COMPLETE and done.values == [0.9] and done.user_attrs["worker_pid"] == 123
    states = {trial_id(t): (t.state, t.user_attrs.get("error")) for t in stored.get_trials(deepcopy=False)}
    assert states[first] == (TrialState.FAIL, "stopped")
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):          # what run_study catches
        seam.complete(first, [0.5])


def test_a_silent_trial_is_failed_and_a_beating_one_is_left(stored):
    seam = StoredStudy(stored)
    silent, alive = seam.create_running(_drawn()), seam.create_running(_drawn())
    stored._storage.set_trial_system_attr(silent, BEAT_ATTR, time.time() - 60)   # its process died a minute ago
    seam.beat([alive])
    fail_silent_trials(stored, grace_period=12)
    states = {trial_id(t): t.state for t in stored.get_trials(deepcopy=False)}
    assert states == {silent: TrialState.FAIL, alive: TrialState.RUNNING}
    assert seam.heartbeat_interval > 0


def test_trial_ids_are_unique_across_studies_of_one_storage(tmp_path):
    storage = make_storage(str(tmp_path / "two.log"))
    a = optuna.create_study(study_name="a", storage=storage)
    b = optuna.create_study(study_name="b", storage=storage)
    ids = {StoredStudy(a).create_running(_drawn()), StoredStudy(b).create_running(_drawn())}
    assert len(ids) == 2 and [t.number for t in b.get_trials()] == [0]


def test_a_stopped_process_fails_the_running_trials_it_created_and_no_others(stored):
    seam = StoredStudy(stored)
    mine, done = seam.create_running(_drawn()), seam.create_running(_drawn())
    seam.complete(done, [0.1])
    other = _drawn()
    other.storage.set_trial_system_attr(trial_id(other), OWNER_ATTR, "host:2:0.0")   # another process's
    theirs = seam.create_running(other)
    seam.fail_running_of("host:1:0.0", error="stopped")
    states = {trial_id(t): t.state for t in stored.get_trials(deepcopy=False)}
    assert states == {mine: TrialState.FAIL, done: TrialState.COMPLETE, theirs: TrialState.RUNNING}
