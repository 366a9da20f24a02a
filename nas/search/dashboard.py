"""optuna-dashboard over a search's study, telling the truth about budgets.

optuna-dashboard picks its "best trial" (and Pareto front) from every complete trial, ignoring constraints
(optuna/optuna-dashboard#772; Optuna's own ``Study.best_trial`` has honoured them since 4.0), so on a study of
ours it would name as best an arch over the latency budget. ``serve`` runs the dashboard with both choices made
among the feasible trials only, as Optuna does, so it names the winner ``run.json`` names. Everything else is the
dashboard as it is: the trials' constraints, their sortable ``latency_ms_<device>`` and ``feasible`` attributes,
and the objective names the search set.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nas import install_hint
from nas.errors import UsageError
from nas.fileio import read_json


def resolve_storage(target: str) -> str:
    """The storage of ``target``: a run directory of ``nas search`` (its ``run.json`` names it), a journal file,
    or a database URL."""
    path = Path(target)
    if path.is_dir():
        if (path / "run.json").is_file():
            from nas.schemas import check

            storage = check(read_json(path / "run.json", "run summary"), "run summary",
                            str(path / "run.json")).get("storage")
            if storage and "***" in storage:
                raise UsageError(f"{target}: its study is in {storage}, whose password run.json does not keep; "
                                 "give that URL, with its password, instead of the run directory")
            if storage:
                return str(storage)
        if (path / "study.log").is_file():
            return str(path / "study.log")
        has = "a run.json that names no storage" if (path / "run.json").is_file() else "no run.json"
        raise UsageError(f"{target} is a folder with {has} and no study.log; expected a run directory of "
                         "nas search, a study journal file, or a database URL")
    if "://" not in target and not path.is_file():
        raise UsageError(f"{target} does not exist; expected a run directory of nas search, a study journal file, "
                         "or a database URL (sqlite:///..., postgresql://...)")
    return target


def feasible_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials whose every constraint is <= 0, read through ``FrozenTrial.constraints`` (public since Optuna
    5.0; it reads both the list the searches write and Optuna's named constraints)."""
    return [t for t in trials if all(value <= 0.0 for value in t.constraints.values())]


def feasible_best(storage: BaseStorage) -> BaseStorage:
    """``storage`` whose ``get_best_trial`` (what the dashboard asks) chooses among feasible trials only."""
    everything = storage.get_best_trial

    def get_best_trial(study_id: int) -> FrozenTrial:
        trials = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
        feasible = feasible_trials(trials)
        if not feasible:          # nothing meets the budget: the dashboard still needs a trial to show
            return everything(study_id)
        pick = max if storage.get_study_directions(study_id)[0] == StudyDirection.MAXIMIZE else min
        return pick(feasible, key=lambda t: float(t.values[0]))

    storage.get_best_trial = get_best_trial      # type: ignore[method-assign]
    return storage


def _feasible_front(front: Any) -> Any:
    def get_pareto_front_trials(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> Any:
        feasible = feasible_trials([t for t in trials if t.state == TrialState.COMPLETE])
        return front(trials=feasible or trials, directions=directions)

    return get_pareto_front_trials


def serve(target: str, host: str = "127.0.0.1", port: int = 8080, as_json: bool = False) -> None:
    """Run optuna-dashboard on ``host:port`` over ``target``'s study until interrupted; first say where, as a line
    of text or (``as_json``) one JSON object a script can read the URL from."""
    storage_url = resolve_storage(target)
    check_port_free(host, port)
    try:
        import optuna_dashboard
        from optuna_dashboard import _app
    except ImportError:
        raise UsageError(f"nas dashboard needs optuna-dashboard: {install_hint('dashboard')}") from None
    from nas.search.storage import make_storage, mask_url

    _app.get_pareto_front_trials = _feasible_front(_app.get_pareto_front_trials)   # multi-objective studies
    storage = feasible_best(make_storage(storage_url))
    url = f"http://{host}:{port}/"
    if as_json:
        print(json.dumps({"url": url, "storage": mask_url(storage_url), "best": "feasible trials only"}), flush=True)
    else:
        print(f"optuna-dashboard on {url} over {mask_url(storage_url)} (best trials: feasible ones only); Ctrl-C "
              "stops it", flush=True)
    _exit_on_sigterm()
    optuna_dashboard.run_server(storage, host=host, port=port)


def _exit_on_sigterm() -> None:
    """SIGTERM stops the dashboard at once. nas's own handler raises in the main thread, but wsgiref's request
    handler catches every exception a request raises, KeyboardInterrupt included, logs it and serves on: a stop that
    landed mid-request was ignored (seen under load in the test suite). The dashboard only reads the study, so
    there is nothing to unwind."""
    import os
    import signal
    import sys
    import threading

    def stop(signum: int, frame: object) -> None:
        print("nas: dashboard stopped by SIGTERM", file=sys.stderr, flush=True)
        os._exit(128 + signal.SIGTERM)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def check_port_free(host: str, port: int) -> None:
    """Refuse in one line a port another program holds (the server's own error is a traceback from deep inside
    wsgiref) or a host this machine has no address for."""
    import errno
    import socket

    from nas.errors import EnvironmentFailure

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise EnvironmentFailure(f"--port {port}: another program listens on {host}:{port}; stop it or choose "
                                     "another --port") from None
        if exc.errno == errno.EACCES:
            raise EnvironmentFailure(f"--port {port}: ports below 1024 need root here; choose --port 1024 or above"
                                     ) from None
        raise UsageError(f"--host {host}: cannot listen there ({exc.strerror}); expected an address of this "
                         "machine, e.g. 127.0.0.1 or 0.0.0.0") from None
    except UnicodeError as exc:
        raise UsageError(f"--host {host}: not a host name or address this machine knows ({exc})") from None
