"""Where a study lives: an Optuna journal file (a path) or any SQLAlchemy URL (SQLite, PostgreSQL, MySQL), with
Optuna's heartbeat on, so several processes can share one study (``--storage`` + ``--study``, as Optuna's own
distributed optimisation works) and a trial whose process was killed is told apart from one that is still
running: a RUNNING trial whose heartbeat is older than ``GRACE_PERIOD_S`` is failed by whichever process looks
next (``optuna.storages.fail_stale_trials``); a live one is left to its owner.

Optuna's RDB storage has the heartbeat built in; its journal storage does not, so ``HeartbeatJournalStorage``
adds it with the same interface, keeping each trial's last beat as a system attribute.
"""
from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from nas import DISTRIBUTION
from nas.errors import UsageError

HEARTBEAT_INTERVAL_S = 2     # how often a process running a trial says it is alive
GRACE_PERIOD_S = 12          # silence after which a RUNNING trial's process is taken for dead
BEAT_ATTR = "nas:heartbeat"

# SQLAlchemy driver name -> (the module it imports, what to pip install for it)
DRIVERS = {"psycopg": ("psycopg", f"{DISTRIBUTION}[postgres]"), "psycopg2": ("psycopg2", "psycopg2-binary"),
           "pg8000": ("pg8000", "pg8000"), "asyncpg": ("asyncpg", "asyncpg"), "pymysql": ("pymysql", "pymysql"),
           "mysqldb": ("MySQLdb", "mysqlclient"), "pysqlite": ("sqlite3", "")}


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal file storage with Optuna's heartbeat interface (the RDB storage's, kept in trial system attrs)."""

    def __init__(self, backend: Any, heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
                 grace_period: int = GRACE_PERIOD_S):
        super().__init__(backend)
        self._heartbeat_interval, self._grace_period = heartbeat_interval, grace_period

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [trial_id(t) for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                if silent(t, now, self._grace_period)]

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return None


def silent(trial: FrozenTrial, now: float, grace_period: float) -> bool:
    """Whether ``trial``'s process has said nothing for ``grace_period`` seconds (the one rule, both places)."""
    return now - last_beat(trial) > grace_period


def last_beat(trial: FrozenTrial) -> float:
    beat = trial.system_attrs.get(BEAT_ATTR)
    if beat is not None:
        return float(beat)
    return trial.datetime_start.timestamp() if trial.datetime_start else 0.0


def beat(storage: BaseStorage, trial_id: int) -> None:
    """One heartbeat of a trial: Optuna's (``record_heartbeat``), and the same time as a system attribute, which
    every storage can read back (Optuna's RDB storage keeps its beats in a table of its own)."""
    if isinstance(storage, BaseHeartbeat):
        storage.record_heartbeat(trial_id)
    if not isinstance(storage, HeartbeatJournalStorage):     # the journal's record_heartbeat writes the attribute
        storage.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())


def fail_silent_trials(study: optuna.Study, grace_period: float = GRACE_PERIOD_S) -> None:
    """Fail the RUNNING trials silent for ``grace_period``: Optuna's own rule (``fail_stale_trials``), and ours for
    the trials this package reserves, which carry their first beat from the moment they exist. Optuna's RDB rule
    alone misses a trial whose process died before its first ``record_heartbeat`` (it has no row in the beat
    table), which left a resumed study waiting for it forever."""
    with warnings.catch_warnings():          # experimental since Optuna 2.9, and what its own optimize() calls
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if BEAT_ATTR in trial.system_attrs and silent(trial, now, grace_period):
            fail_if_running(study, trial)


def mask_url(url: str) -> str:
    """``url`` with its password shown as ``***`` (what run.json, --json and messages print)."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://***"
    # libpq and most drivers also take the password (or a token) as a query parameter
    return _SECRET_QUERY.sub(r"\1***", parsed.render_as_string(hide_password=True))


_SECRET_QUERY = re.compile(r"([?&](?:password|passwd|pwd|pass|sslpassword|secret|token|access_token|auth_token|"
                           r"api_?key|key)=)[^&#]*", re.IGNORECASE)


def require_driver(url: str) -> None:
    """Refuse in one line a database URL whose driver is not installed, naming what to install (SQLAlchemy's own
    error says only "Failed to import DB access module")."""
    from importlib.util import find_spec

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        driver = parsed.get_dialect().driver        # the default one when the URL names none (psycopg for PostgreSQL)
    except (ArgumentError, NoSuchModuleError, ValueError):
        return                                      # not a URL SQLAlchemy knows: Optuna's own message says so
    module, requirement = DRIVERS.get(driver, (driver, driver))
    if find_spec(module) is None:
        raise UsageError(f"--storage {mask_url(url)}: the {parsed.get_backend_name()} driver {module} is not "
                         f"installed; pip install '{requirement}'")


def check_storage(url: str) -> None:
    """Refuse, before anything is written, a ``--storage`` that cannot hold a study: a folder given as the journal
    file, a database URL with a typo in its scheme or without its driver."""
    if "://" not in url:
        if Path(url).is_dir():
            raise UsageError(f"--storage {url} is a folder; expected a journal file (made if missing) or a database "
                             "URL (sqlite:///study.db, postgresql://user:password@host/db)")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise UsageError(f"--storage {mask_url(url)!r}: not a database URL SQLAlchemy knows; expected a journal file "
                         "path, sqlite:///FILE, postgresql://USER:PASSWORD@HOST/DB or mysql://...") from None
    require_driver(url)


def repair_journal(path: Path) -> None:
    """A journal whose last record was cut short (a kill or a full disk in the middle of a write: the file does not
    end with a newline) is read up to its last whole record: the cut bytes are dropped, under the journal's own
    lock, and a note says so. Left as it was, Optuna would append the next record to the cut one and the study
    could never be read again."""
    import sys

    from optuna.storages.journal import JournalFileSymlinkLock

    if not path.is_file() or path.stat().st_size == 0:
        return
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, 2)
            end = size
            while end > 0:                        # back to the last newline, a block at a time
                start = max(0, end - 65536)
                f.seek(start)
                block = f.read(end - start)
                if start + len(block) == size and block.endswith(b"\n"):
                    return                        # whole
                newline = block.rfind(b"\n")
                if newline >= 0:
                    end = start + newline + 1
                    break
                end = start
            f.truncate(end)
    finally:
        lock.release()
    print(f"nas: note: {path}: its last record was cut short ({size - end} bytes, written when the process was "
          "killed or the disk was full); the study is read up to its last whole record and goes on",
          file=sys.stderr)


def make_storage(url: str, heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
                 grace_period: int = GRACE_PERIOD_S) -> BaseStorage:
    """A journal file storage for a path (no ``://``), else an Optuna RDB storage; both with the heartbeat on.

    SQLite files run in WAL mode with synchronous=NORMAL, which keeps every committed trial across a kill -9 of
    this process (only an OS crash could lose the last commits) and makes the many small commits of a study
    ~1.6x faster than SQLite's default rollback journal."""
    if "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        repair_journal(Path(url))
        return HeartbeatJournalStorage(JournalFileBackend(url), heartbeat_interval, grace_period)
    require_driver(url)
    with warnings.catch_warnings():     # the heartbeat is "experimental" since Optuna 2.9; optimize() relies on it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval,
                                             grace_period=grace_period)
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


# --------------------------------------------------------------------------- where Optuna's public API stops
# The one place nas reaches inside Optuna's objects (issue #27); every use below is what the public API does not
# offer, and each has a test in tests/search/test_storage_seam.py, so an Optuna release that moves it fails there
# first. Everywhere else goes through Optuna's public API.
#
# - A RUNNING trial created in the stored study from a trial drawn in memory, in one write: ``Study.add_trial``
#   takes finished trials only, and ``Study.ask`` on the stored study writes each parameter separately (~40 writes
#   a trial, 10x the sampling's cost on SQLite: benchmarks/search_speed.py).
# - A stored trial's state and attributes set by its id from another thread or after its ``Trial`` object is gone
#   (``Study.tell`` would also tell the sampler of the stored study, which is not the one that drew it).
# - The constraint list where optuna-dashboard 0.21 reads it (``system_attrs["constraints"]``):
#   ``Trial.set_constraint`` writes named keys (``constraints:NAME``), which the dashboard does not read yet;
#   ``FrozenTrial.constraints`` (public) reads both forms.

CONSTRAINTS_ATTR = "constraints"


def trial_id(trial: FrozenTrial | optuna.Trial) -> int:
    """The storage's id of a trial (unique across studies, unlike its number)."""
    return int(trial._trial_id)


def set_constraints(trial: optuna.Trial, values: list[float]) -> None:
    """The trial's constraint values (feasible when all are <= 0) in the form Optuna's feasibility and
    optuna-dashboard both read."""
    trial.storage.set_trial_system_attr(trial_id(trial), CONSTRAINTS_ATTR, values)


OWNER_ATTR = "nas:owner"


def process_owner() -> str:
    """Who runs a trial: this host and process, and when it started (a pid is reused; the three are not)."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{time.time():.3f}"


def mark_alive(trial: optuna.Trial, owner: str) -> None:
    """A first heartbeat from the moment the trial exists (``fail_silent_trials`` then tells a dead one apart), and
    whose it is (a stopped process fails its own, ``StoredStudy.fail_running_of``)."""
    trial.storage.set_trial_system_attr(trial_id(trial), BEAT_ATTR, time.time())
    trial.storage.set_trial_system_attr(trial_id(trial), OWNER_ATTR, owner)


class StoredStudy:
    """The stored side of a study that ``run_study`` samples in memory: trials created RUNNING from a template,
    then failed or completed by id, with user attributes."""

    def __init__(self, study: optuna.Study):
        self.study = study
        self.storage: BaseStorage = study._storage
        self._study_id: int = study._study_id

    def create_running(self, drawn: optuna.Trial) -> int:
        """``drawn`` (a trial of the in-memory study, RUNNING, with parameters and attributes) created here in one
        write; its id in this storage."""
        template = drawn.storage.get_trial(trial_id(drawn))
        return int(self.storage.create_new_trial(self._study_id, template_trial=template))

    def fail(self, stored_id: int, **user_attrs: Any) -> None:
        for key, value in user_attrs.items():
            self.storage.set_trial_user_attr(stored_id, key, value)
        self.storage.set_trial_state_values(stored_id, TrialState.FAIL)

    def complete(self, stored_id: int, values: list[float], **user_attrs: Any) -> FrozenTrial:
        """Raises ``optuna.exceptions.UpdateFinishedTrialError`` if another process failed it meanwhile."""
        for key, value in user_attrs.items():
            self.storage.set_trial_user_attr(stored_id, key, value)
        self.storage.set_trial_state_values(stored_id, TrialState.COMPLETE, values)
        return self.storage.get_trial(stored_id)

    def fail_running_of(self, owner: str, **user_attrs: Any) -> None:
        """Fail every RUNNING trial ``owner`` created (a stopped process's, wherever the stop landed: between a
        trial's creation and the moment its id was known included)."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.system_attrs.get(OWNER_ATTR) == owner:
                try:
                    self.fail(trial_id(trial), **user_attrs)
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass              # finished meanwhile

    def beat(self, trial_ids: list[int]) -> None:
        for one in trial_ids:
            beat(self.storage, one)

    @property
    def heartbeat_interval(self) -> int:
        storage = self.storage
        return (storage.get_heartbeat_interval() or 0) if isinstance(storage, BaseHeartbeat) else HEARTBEAT_INTERVAL_S


def fail_if_running(study: optuna.Study, trial: FrozenTrial) -> None:
    """Fail a RUNNING trial found silent (``fail_silent_trials``), unless its owner finished it meanwhile."""
    try:
        study._storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass                          # finished or failed meanwhile by its owner or another process
