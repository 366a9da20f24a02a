"""nas search: the contract, budgets, resume after kill -9, Ray with a killed worker, slimming, two devices."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from nas.latency.build import build_table
from nas.latency.costmodel.estimate import estimate_table
from nas.latency.costmodel.model import load_cost_model
from nas.latency.devices import get_device
from nas.search.budgets import Budgets
from nas.search.records import TrialRecord, pareto_front
from nas.search.slim import actions
from nas.search.storage import make_storage
from tests.helpers import OwnProcesses, random_supernet_and_images, randomize_, run_nas


@pytest.fixture(scope="module")
def tiny_luts(tmp_path_factory, tiny):
    """Tables of the tiny space: iPhone 12 estimated by its cost model, this CPU measured."""
    folder = tmp_path_factory.mktemp("luts")
    estimate_table(get_device("iphone12"), tiny, load_cost_model("iphone12"), folder / "iphone12-tiny.json")
    build_table("cpu", "tiny", folder / "cpu-tiny.json", calibrate=3, progress=False)
    return {"iphone12": folder / "iphone12-tiny.json", "cpu": folder / "cpu-tiny.json"}


def _tiny_args(tiny_luts, budget_ms: float, *extra: str, device: str = "iphone12") -> list[str]:
    return ["search", "--space", "tiny", "--budget-ms", str(budget_ms), "--device", device,
            "--lut", f"{device}={tiny_luts[device]}", "--no-progress", *extra]


def _middle_budget(tiny, tiny_luts, device="iphone12", fraction: float = 0.4) -> float:
    budgets = Budgets.load(tiny, [1e9], [device], {device: str(tiny_luts[device])})
    fastest = budgets.fastest(tiny)[device]
    largest = budgets.latencies(tiny.largest())[device]
    # A measured CPU table of the tiny space (64x64 input) is mostly per-op overhead, so on a noisy machine the
    # largest arch can come out no slower than the fastest one: keep the budget reachable with room to search.
    spread = max(largest - fastest, 0.25 * fastest)
    return round(fastest + fraction * spread, 4)


@pytest.mark.slow
def test_main_command_contract_predict_agrees_and_the_run_exports(tmp_path):
    run = tmp_path / "run"
    proc = run_nas("search", "--budget-ms", "1.6", "--device", "iphone12", "--trials", "30", "--out", str(run),
                   "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert "estimated" in proc.stderr and "nas lut build --device iphone12" in proc.stderr   # says so, one line
    best = result["best"]
    assert result["out"] == str(run) and best["latency_ms"] <= 1.6 and best["objective"] > 0
    assert best["objective_name"] == "capacity" and "proxy" in best["objective_label"]
    assert json.loads((run / "best_arch.json").read_text()) == best["arch"]
    predicted = json.loads(run_nas("predict", "--device", "iphone12", "--arch", str(run), "--json").stdout)
    assert predicted["latency_ms"] == pytest.approx(best["latency_ms"], rel=1e-9)
    rows = (run / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == 31 and rows[0].startswith("number,objective,latency_ms_iphone12,feasible")
    assert (run / "pareto.png").stat().st_size > 1000 and (run / "export" / "model.pt").is_file()
    front = json.loads((run / "pareto.json").read_text())["front"]
    assert front[-1]["objective"] == best["objective"]

    out = tmp_path / "exported"
    proc = run_nas("export", str(run), "--format", "pt,onnx", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    card = (out / "README.md").read_text()
    assert "winner of `nas search` run" in card and "1.6 ms on iphone12" in card


@pytest.mark.slow
def test_the_journal_default_finds_what_a_sqlite_study_finds(tmp_path, tiny_luts, tiny):
    """The default storage (a journal file, trials drawn in memory and appended as they finish) gives the study an
    SQLite storage gives, trial for trial: the main command's output is what it was before the change."""
    budget = _middle_budget(tiny, tiny_luts)
    runs = {}
    for name, storage in (("journal", []), ("sqlite", ["--storage", f"sqlite:///{tmp_path / 's.db'}"])):
        proc = run_nas(*_tiny_args(tiny_luts, budget, "--trials", "20", "--out", str(tmp_path / name), "--json",
                                   "--export", "none", "--study", "x", *storage))
        assert proc.returncode == 0, proc.stderr
        runs[name] = json.loads(proc.stdout)
    assert runs["journal"]["storage"].endswith("study.log") and (tmp_path / "journal" / "study.log").is_file()
    assert runs["journal"]["best"] == runs["sqlite"]["best"]
    journal = [(t.params, t.values) for t in _study(tmp_path / "journal" / "study.log", "x").trials]
    sqlite = [(t.params, t.values) for t in optuna.load_study(study_name="x", storage=f"sqlite:///{tmp_path / 's.db'}")
              .trials]
    assert journal == sqlite and len(journal) == 20


@pytest.mark.slow
def test_guarantee_holds_the_upper_bound_and_says_so(tmp_path, tiny_luts, tiny):
    """--guarantee 0.9 prices each arch at its 90% upper bound: fewer trials are feasible, the winner's bound meets
    the budget, and run.json, the summary and the model card say so."""
    sure_budgets = Budgets.load(tiny, [1.0], ["iphone12"], {"iphone12": str(tiny_luts["iphone12"])}, guarantee=0.9)
    budget = round(_middle_budget(tiny, tiny_luts) * sure_budgets.items[0].upper_factor, 4)
    plain = json.loads(run_nas(*_tiny_args(tiny_luts, budget, "--trials", "20", "--out", str(tmp_path / "p"),
                                           "--json", "--export", "none")).stdout)
    proc = run_nas(*_tiny_args(tiny_luts, budget, "--trials", "20", "--out", str(tmp_path / "g"), "--json",
                               "--guarantee", "0.9"))
    assert proc.returncode == 0, proc.stderr
    sure = json.loads(proc.stdout)
    b = sure["budgets"][0]
    assert b["guarantee"] == 0.9 and b["upper_factor"] > 1 and "leave-one-family-out" in b["interval_source"]
    upper = sure["best"]["latency_upper_ms"]["iphone12"]
    assert upper == pytest.approx(sure["best"]["latency_ms"] * b["upper_factor"]) and upper <= budget
    assert sure["feasible"] <= plain["feasible"]
    tight = _middle_budget(tiny, tiny_luts)
    plain_budgets = Budgets.load(tiny, [tight], ["iphone12"], {"iphone12": str(tiny_luts["iphone12"])})
    sure_budgets = Budgets.load(tiny, [tight], ["iphone12"], {"iphone12": str(tiny_luts["iphone12"])},
                                guarantee=0.9)
    archs = [tiny.sample(seed=i) for i in range(300)]
    ok_plain = {i for i, a in enumerate(archs) if plain_budgets.feasible(plain_budgets.latencies(a))}
    ok_sure = {i for i, a in enumerate(archs) if sure_budgets.feasible(sure_budgets.latencies(a))}
    assert ok_sure < ok_plain                       # a strict subset: the guarantee rules some archs out
    assert sure["best"]["latency_ms"] <= b["median_limit_ms"] < budget
    card = (tmp_path / "g" / "export" / "README.md").read_text()
    assert "upper bound at 90% coverage" in card
    text = run_nas(*_tiny_args(tiny_luts, budget, "--trials", "20", "--out", str(tmp_path / "g"), "--guarantee",
                               "0.9", "--export", "none")).stdout
    assert "upper bound at 90% coverage" in text
    bad = run_nas(*_tiny_args(tiny_luts, budget, "--guarantee", "1.2"))
    assert bad.returncode == 2 and "a coverage in [0.5, 1)" in bad.stderr


@pytest.mark.slow
def test_same_seed_same_result(tmp_path, tiny_luts, tiny):
    budget = _middle_budget(tiny, tiny_luts)
    results = []
    for name in ("a", "b"):
        proc = run_nas(*_tiny_args(tiny_luts, budget, "--trials", "25", "--seed", "7", "--out", str(tmp_path / name),
                                   "--json", "--export", "none"))
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout)["best"])
    assert results[0] == results[1]
    trials = [(tmp_path / n / "trials.csv").read_text().splitlines() for n in "ab"]
    strip_pid = [[",".join(r.split(",")[:4]) for r in t] for t in trials]
    assert strip_pid[0] == strip_pid[1]


def test_infeasible_budget_exits_2_with_the_fastest_latency(tmp_path):
    proc = run_nas("search", "--budget-ms", "0.01", "--device", "iphone12", "--out", str(tmp_path / "r"),
                   "--no-progress")
    assert proc.returncode == 2
    error = [line for line in proc.stderr.splitlines() if line.startswith("nas: error")]
    assert len(error) == 1 and "cannot be met: the fastest arch" in error[0] and "accepted: a budget >=" in error[0]
    assert not (tmp_path / "r").exists()                     # nothing started


@pytest.mark.parametrize("args, message", [
    (["--budget-ms", "1.6"], "give one --device per --budget-ms"),
    (["--budget-ms", "1.6", "--device", "iphone12", "--budget-ms", "2", "--device", "iphone12"], "appears twice"),
    (["--budget-ms", "-1", "--device", "iphone12"], "expected a positive number"),
    (["--budget-ms", "1.6", "--device", "pixel9"], "unknown device 'pixel9'"),
    (["--budget-ms", "1.6", "--device", "iphone12", "--sampler", "cmaes"], "invalid choice: 'cmaes'"),
    (["--budget-ms", "1.6", "--device", "iphone12", "--supernet", "x.pt"], "--supernet and --data go together"),
    (["--budget-ms", "1.6", "--device", "iphone12", "--lut", "iphone12"], "expected DEVICE=FILE"),
    (["--budget-ms", "1.6", "--device", "iphone12", "--strategy", "slim", "--sampler", "nsga2"],
     "a setting of --strategy optuna"),
    (["--budget-ms", "1.6", "--device", "iphone12", "--storage", "nosuchdb://x"], "--storage 'nosuchdb://x'"),
])
def test_bad_input_exits_2_in_one_line(tmp_path, args, message):
    proc = run_nas("search", *args, "--out", str(tmp_path / "r"), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("nas: error")]
    assert len(error) == 1 and message in error[0], proc.stderr
    assert "Traceback" not in proc.stderr


def _study(log: Path, study: str) -> optuna.Study:
    """A run's study, from its journal file (the default storage)."""
    return optuna.load_study(study_name=study, storage=make_storage(str(log)))


def _completed(log: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return _study(log, study).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    except Exception:  # noqa: BLE001 - not created yet
        return []


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_resume_after_kill_loses_and_repeats_no_trial(tmp_path, tiny_luts, tiny, stop):
    """SIGKILL: the trial in flight goes silent and is failed on resume; SIGTERM: the run unwinds, fails it
    itself and says so in one line (exit 143). Either way the resume ends with exactly --trials."""
    run, total = tmp_path / "run", 80
    args = _tiny_args(tiny_luts, _middle_budget(tiny, tiny_luts), "--trials", str(total), "--study", "k",
                      "--out", str(run), "--export", "none")
    proc = subprocess.Popen([sys.executable, "-m", "nas", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(_completed(run / "study.log", "k")) < 15 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, stop)
    _, err = proc.communicate()
    if stop == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert err.decode().strip().splitlines()[-1].startswith("nas: stopped by SIGTERM")
        assert not _study(run / "study.log", "k").get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    before = {t.number: (t.params, t.values) for t in _completed(run / "study.log", "k")}
    assert 15 <= len(before) < total

    proc = run_nas(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    trials = _study(run / "study.log", "k").get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == total and not [t for t in trials if t.state == TrialState.RUNNING]
    # the trial in flight at the kill (if one was) went silent, was failed for it, and its place drawn again
    assert len(trials) - total == len([t for t in trials if t.state == TrialState.FAIL]) <= 1
    after = {t.number: (t.params, t.values) for t in complete}
    assert all(after[n] == before[n] for n in before)                         # what was done stays done
    assert json.loads(proc.stdout)["trials"] == total

    again = run_nas(*args, "--json")                                          # complete: nothing more to run
    assert json.loads(again.stdout)["trials"] == total
    changed = run_nas(*[a if a != "7" else "8" for a in args], "--seed", "99")  # other settings, same study
    assert changed.returncode == 2 and "was started with --seed 0, this run with 99" in changed.stderr


@pytest.mark.slow
def test_slimming_reaches_the_budget_and_resumes(tmp_path, tiny_luts, tiny):
    budget = _middle_budget(tiny, tiny_luts)
    run = tmp_path / "run"
    args = _tiny_args(tiny_luts, budget, "--strategy", "slim", "--out", str(run), "--json", "--export", "none")
    proc = run_nas(*args)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    steps = json.loads((run / "slim.json").read_text())["steps"]
    assert steps[0]["arch"] == tiny.largest().to_dict()
    latencies = [s["latency_ms"]["iphone12"] for s in steps]
    assert latencies[-1] <= budget < latencies[-2]                   # stops at the first arch under the budget
    assert all(a > b for a, b in zip(latencies, latencies[1:]))     # every step saves time
    assert result["best"]["arch"] == steps[-1]["arch"]
    assert {s["action"].split()[0] for s in steps[1:]} <= {"drop", "narrow", "MLP", "turn", "heads", "key"}

    again = run_nas(*[a for a in args if a != "--no-progress"])      # resumes: the record is complete
    assert json.loads(again.stdout)["best"] == result["best"]
    assert "slimming (ms to shed): 100%" in again.stderr                # a bar with a total and an ETA
    assert json.loads((run / "slim.json").read_text())["steps"] == steps


def test_slimming_actions_stay_in_the_space(tiny):
    arch = tiny.largest()
    found = actions(arch, tiny)
    names = [n for n, _ in found]
    assert "turn the first 3D block into 4D" in names and any(n.startswith("narrow stage 4") for n in names)
    assert any(n.startswith("drop 3D block") for n in names)
    for _, candidate in found:
        assert tiny.validate(candidate) == candidate and candidate != arch
    assert actions(tiny.smallest(), tiny) == [] or all(c != tiny.smallest() for _, c in actions(tiny.smallest(), tiny))


@pytest.mark.slow
def test_two_budgets_on_two_devices_both_hold(tmp_path, tiny_luts, tiny):
    ip_budget = _middle_budget(tiny, tiny_luts, "iphone12")
    cpu_budget = _middle_budget(tiny, tiny_luts, "cpu")
    proc = run_nas("search", "--space", "tiny", "--budget-ms", str(ip_budget), "--device", "iphone12",
                   "--budget-ms", str(cpu_budget), "--device", "cpu", "--lut", f"iphone12={tiny_luts['iphone12']}",
                   "--lut", f"cpu={tiny_luts['cpu']}", "--trials", "40", "--sampler", "nsga2",
                   "--out", str(tmp_path / "run"), "--json", "--no-progress", "--export", "none")
    assert proc.returncode == 0, proc.stderr
    best = json.loads(proc.stdout)["best"]
    assert best["latencies_ms"]["iphone12"] <= ip_budget and best["latencies_ms"]["cpu"] <= cpu_budget
    header = (tmp_path / "run" / "trials.csv").read_text().splitlines()[0]
    assert "latency_ms_iphone12" in header and "latency_ms_cpu" in header
    fronts = json.loads((tmp_path / "run" / "pareto.json").read_text())["front_by_device"]
    assert set(fronts) == {"iphone12", "cpu"} and all(fronts.values())
    from PIL import Image

    with Image.open(tmp_path / "run" / "pareto.png") as png:       # one panel per device, side by side
        assert png.size[0] >= 2 * png.size[1]


def test_pareto_front_is_non_dominated():
    records = [TrialRecord(i, o, {}, {"d": ms}, f)
               for i, (o, ms, f) in enumerate([(1, 1, True), (2, 2, True), (1.5, 3, True), (3, 2.5, True),
                                               (9, 0.5, False)])]
    front = pareto_front(records, "d")
    assert [r.number for r in front] == [0, 1, 3]


@pytest.mark.slow
@pytest.mark.ray
def test_ray_two_workers_one_killed_every_trial_completes(tmp_path, tiny_luts, tiny):
    """A worker killed mid-search: Ray retries its task elsewhere, and the study completes with no trial lost."""
    random_supernet_and_images(tmp_path, tiny, per_class=16)
    run, total = tmp_path / "run", 24
    own = OwnProcesses()                # this test's processes only: another test run may share the machine
    env = own.env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    args = _tiny_args(tiny_luts, _middle_budget(tiny, tiny_luts), "--trials", str(total), "--workers", "2",
                      "--supernet", str(tmp_path / "supernet.pt"), "--data", str(tmp_path / "data"),
                      "--study", "r", "--out", str(run), "--json", "--export", "none")
    proc = subprocess.Popen([sys.executable, "-m", "nas", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    killed = None
    try:
        deadline = time.time() + 180
        while killed is None and time.time() < deadline and proc.poll() is None:
            if len(_completed(run / "study.log", "r")) >= 3:
                workers = own.pids("ray::_evaluate")
                if workers:
                    killed = int(workers[0])
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        own.kill()
    assert killed is not None, "no busy Ray worker to kill"
    assert proc.returncode == 0, err[-2000:]
    assert "will be retried" in err                              # Ray saw the worker die, on stderr only
    trials = _study(run / "study.log", "r").get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(total))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    pids = {t.user_attrs["worker_pid"] for t in trials}
    assert len(pids) >= 2 and os.getpid() not in pids           # evaluated on Ray workers, not in the driver
    result = json.loads(out)
    assert result["best"]["objective_name"] == "supernet_top1" and 0 <= result["best"]["objective"] <= 100


@pytest.mark.slow
def test_verify_measures_finalists_on_devices_at_hand(tmp_path, tiny_luts, tiny):
    generous = 10 * Budgets.load(tiny, [1e9], ["cpu"], {"cpu": str(tiny_luts["cpu"])}).latencies(tiny.largest())["cpu"]
    proc = run_nas(*_tiny_args(tiny_luts, generous, "--trials", "8", "--verify", "2", "--out", str(tmp_path / "a"),
                               "--json", "--export", "none", device="cpu"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    checked = result["verification"]["checked"]
    assert result["verification"]["devices"] == ["cpu"] and len(checked) == 1     # the first one already fits
    assert result["best"]["measured_ms"]["cpu"] == checked[0]["measured_ms"]["cpu"] <= generous
    # a device that cannot be measured here is reported, not measured
    proc = run_nas(*_tiny_args(tiny_luts, 100, "--trials", "4", "--verify", "2", "--out", str(tmp_path / "b"),
                               "--json", "--export", "none"))
    verification = json.loads(proc.stdout)["verification"]
    assert verification["devices"] == [] and verification["checked"] == []
    assert "no budget device" in verification["note"]


@pytest.mark.slow
def test_two_processes_share_one_study_and_end_with_exactly_the_trials_asked(tmp_path, tiny_luts, tiny):
    """Optuna's distributed optimisation: two `nas search` processes on one --storage and --study, started
    together as a cluster's workers are (both create-or-load the study); both finish, the study holds exactly
    --trials complete trials and none RUNNING, both processes ran some, and neither failed the other's live
    trials. (Started one after the other, the first could finish all 150 cheap trials while a busy machine was
    still starting the second.)"""
    storage, total = tmp_path / "shared.log", 150
    args = _tiny_args(tiny_luts, _middle_budget(tiny, tiny_luts), "--trials", str(total), "--study", "shared",
                      "--storage", str(storage), "--export", "none", "--json")
    first = subprocess.Popen([sys.executable, "-m", "nas", *args, "--out", str(tmp_path / "a")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen([sys.executable, "-m", "nas", *args, "--out", str(tmp_path / "b"), "--seed", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [err for _, err in outs]
    assert not any("Traceback" in err or "taken for dead" in err for _, err in outs)
    trials = _study(storage, "shared").get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == total and not [t for t in trials if t.state == TrialState.RUNNING]
    assert {t.user_attrs["worker_pid"] for t in complete} == {first.pid, second.pid}   # both did real work
    assert [json.loads(out)["trials"] for out, _ in outs] == [total, total]   # each reports the whole study


@pytest.mark.filterwarnings("ignore")    # Optuna: heartbeat outside optimize(), fail_stale_trials is experimental
def test_a_trial_is_failed_only_when_its_heartbeat_stops(tmp_path):
    """Optuna's stale-trial rule on the journal file: a RUNNING trial whose process beats stays RUNNING past the
    grace period; one that went silent is failed by the next process that looks."""
    import threading

    from nas.search.storage import make_storage

    storage = make_storage(str(tmp_path / "study.log"), heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage, study_name="s")
    alive, silent = study.ask(), study.ask()
    stop = threading.Event()

    def beat():
        while not stop.wait(0.5):
            storage.record_heartbeat(alive._trial_id)

    beater = threading.Thread(target=beat)
    beater.start()
    storage.record_heartbeat(silent._trial_id)
    time.sleep(3)
    optuna.storages.fail_stale_trials(study)
    stop.set()
    beater.join()
    states = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {alive._trial_id: TrialState.RUNNING, silent._trial_id: TrialState.FAIL}


def _get_json(url: str, timeout: float = 60) -> Any:
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if time.time() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.slow
def test_dashboard_names_the_feasible_winner_that_run_json_names(tmp_path, tiny_luts, tiny):
    """optuna-dashboard (started by `nas dashboard` on loopback) over a search's SQLite study: through its HTTP API,
    the study, its objective name, every trial's constraint and sortable latency, and the best trial are what
    run.json says, although trials over the budget score higher (the plain dashboard names one of those)."""
    import socket

    run = tmp_path / "run"
    db = f"sqlite:///{tmp_path / 'study.db'}"
    budget = _middle_budget(tiny, tiny_luts, fraction=0.1)     # tight: many trials miss it
    proc = run_nas(*_tiny_args(tiny_luts, budget, "--trials", "30", "--out", str(run),
                               "--storage", db, "--export", "none", "--json"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "nas", "dashboard", str(run), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        studies = _get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        [study] = [s for s in studies if s["study_name"] == summary["study"]]
        detail = _get_json(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}")
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert detail["name"] == summary["study"] and detail["objective_names"] == ["capacity"]
    assert [t["number"] for t in detail["best_trials"]] == [summary["best"]["trial"]]
    assert float(detail["best_trials"][0]["values"][0]) == pytest.approx(summary["best"]["objective"])
    trials = detail["trials"]
    assert len(trials) == summary["trials"] == 30
    attrs = [{a["key"]: a["value"] for a in t["user_attrs"]} for t in trials]
    for trial, attr in zip(trials, attrs):
        assert len(trial["constraints"]) == 1           # latency - budget on the one device
        assert (trial["constraints"][0] <= 0) == (attr["feasible"] == "True")
    assert any(a["feasible"] == "False" and float(t["values"][0]) > summary["best"]["objective"]
               for t, a in zip(trials, attrs))           # what the plain dashboard would have named best
    assert {"key": "latency_ms_iphone12", "sortable": True} in detail["union_user_attrs"]


def test_a_resume_with_other_inputs_is_refused_naming_them(tmp_path, tiny_luts, tiny):
    """Trials scored against another supernet, other data or another latency table must not join a study: the
    stored settings hold the checkpoint's and the tables' digests and the data's location."""
    from nas.errors import UsageError
    from nas.search.objectives import SupernetSettings, make_objective
    from nas.search.optuna_search import StudySettings, open_study
    from supernet import Supernet
    from supernet.checkpoint import save_supernet

    for seed in (1, 2):
        save_supernet(randomize_(Supernet(tiny), seed=seed), tmp_path / f"supernet{seed}.pt")
    other_table = tmp_path / "iphone12-other.json"
    table = json.loads(Path(tiny_luts["iphone12"]).read_text())
    entry = next(iter(table["entries"].values()))
    entry["median_ms"] *= 1.5
    other_table.write_text(json.dumps(table) + "\n")             # the same device and space, other timings

    def settings(checkpoint: str, data: str, lut: Path) -> StudySettings:
        budgets = Budgets.load(tiny, [1e6], ["iphone12"], {"iphone12": str(lut)})
        objective = make_objective(tiny, "supernet", SupernetSettings(checkpoint, data))
        return StudySettings(tiny, objective, budgets, "tpe", 0, str(tmp_path / "study.log"), "s", 5)

    first = str(tmp_path / "supernet1.pt")
    open_study(settings(first, "builtin:digits", tiny_luts["iphone12"]))
    open_study(settings(first, "builtin:digits", tiny_luts["iphone12"]))          # the same inputs: resumed
    for changed, what in ((settings(str(tmp_path / "supernet2.pt"), "builtin:digits", tiny_luts["iphone12"]),
                           "another --supernet checkpoint (the file's contents differ)"),
                          (settings(first, "builtin:objects:classes=10,train=64,val=32,test=32",
                                    tiny_luts["iphone12"]),
                           "--data builtin:digits, this run with builtin:objects:classes=10,train=64,val=32,test=32"),
                          (settings(first, "builtin:digits", other_table), "another latency table for iphone12")):
        with pytest.raises(UsageError, match="must not share a study") as refused:
            open_study(changed)
        assert f"was started with {what}" in str(refused.value) and "sha256" not in str(refused.value)


@pytest.fixture(scope="module")
def postgres_url():
    from tests.postgres import postgres_server, server_binaries

    if server_binaries() is None:
        pytest.skip("PostgreSQL's server (initdb, pg_ctl) is not installed here; .ci/run installs Debian's "
                    "postgresql package")
    with postgres_server() as url:
        yield url


@pytest.mark.slow
def test_postgres_search_survives_sigkill_with_exactly_n_trials_and_never_shows_the_password(
        tmp_path, tiny_luts, tiny, postgres_url):
    """A real PostgreSQL server on 127.0.0.1: search, SIGKILL, resume; the study ends with exactly --trials
    complete trials and none RUNNING, and the password is in no output (run.json, --json, messages)."""
    from tests.postgres import PASSWORD

    run, total = tmp_path / "run", 40
    args = _tiny_args(tiny_luts, _middle_budget(tiny, tiny_luts), "--trials", str(total), "--study", "pg",
                      "--storage", postgres_url, "--out", str(run), "--export", "none")
    proc = subprocess.Popen([sys.executable, "-m", "nas", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)

    def complete() -> int:
        try:
            study = optuna.load_study(study_name="pg", storage=postgres_url)
        except KeyError:          # not created yet
            return 0
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    deadline = time.time() + 120
    while complete() < 10 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    _, killed_err = proc.communicate()
    assert 10 <= complete() < total
    resumed = run_nas(*args, "--json")
    assert resumed.returncode == 0, resumed.stderr
    trials = optuna.load_study(study_name="pg", storage=postgres_url).get_trials(deepcopy=False)
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == total
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    summary = json.loads(resumed.stdout)
    assert summary["trials"] == total and summary["storage"].startswith("postgresql://nas:***@127.0.0.1")
    for text in (resumed.stdout, resumed.stderr, killed_err, (run / "run.json").read_text()):
        assert PASSWORD not in text


def test_workers_give_the_serial_study_for_the_cheap_proxy(tmp_path, tiny_luts, tiny):
    """The README's promise: --workers 2 with the same seed gives the same trials as a serial run (the proxy is
    evaluated in the driver, so no Ray is started and it is no slower)."""
    budget = _middle_budget(tiny, tiny_luts)
    runs = {}
    for name, extra in (("serial", []), ("workers", ["--workers", "2"])):
        proc = run_nas(*_tiny_args(tiny_luts, budget, "--trials", "12", "--out", str(tmp_path / name),
                                   "--export", "none", "--json", *extra))
        assert proc.returncode == 0, proc.stderr
        runs[name] = _study(tmp_path / name / "study.log", json.loads(proc.stdout)["study"])
        if extra:
            assert "evaluated here, not on Ray" in proc.stderr and json.loads(proc.stdout)["workers"] == 0
    serial, parallel = ([(t.params, t.values) for t in runs[k].get_trials(deepcopy=False)] for k in runs)
    assert len(serial) == 12 and serial == parallel


@pytest.mark.filterwarnings("ignore")
def test_a_trial_killed_before_its_first_beat_is_failed_on_sqlite_too(tmp_path):
    """Optuna's RDB rule looks only at trials with a row in its beat table; a reservation whose process died
    before the first beat had none and kept a resumed study waiting for ever. Ours carry a beat from creation."""
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    from nas.search.storage import BEAT_ATTR, fail_silent_trials

    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path / 's.db'}", 1, 2), study_name="s")
    template = create_trial(state=TrialState.RUNNING, params={"x": 1}, distributions={"x": IntDistribution(0, 3)},
                            system_attrs={BEAT_ATTR: time.time() - 100})
    dead = study._storage.create_new_trial(study._study_id, template_trial=template)
    fresh = study._storage.create_new_trial(study._study_id, template_trial=create_trial(
        state=TrialState.RUNNING, params={"x": 2}, distributions={"x": IntDistribution(0, 3)},
        system_attrs={BEAT_ATTR: time.time()}))
    fail_silent_trials(study, grace_period=2)
    states = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {dead: TrialState.FAIL, fresh: TrialState.RUNNING}


def test_nas_measure_times_an_arch_here_beside_its_table(tiny_luts, capsys):
    """What a user runs on the winner: measured end to end with the table's own backend, and the prediction."""
    from nas.cli import main

    assert main(["measure", "--device", "cpu", "--space", "tiny", "--arch", "small", "--lut", str(tiny_luts["cpu"]),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["measured"]["median_ms"] > 0 and result["measured"]["n"] >= 20
    assert result["predicted_ms"] > 0 and result["table"] == str(tiny_luts["cpu"])
    assert abs(result["ratio"] - result["measured"]["median_ms"] / result["predicted_ms"]) < 1e-9


def test_a_search_carries_its_space_object_to_the_export(tmp_path):
    """Issue #27: the space travels as the object the search was given, not as a name looked up again: a space
    read from a YAML file and then forgotten by the process-wide cache still exports its winner."""
    import nas.space
    from nas.latency.costmodel.estimate import estimate_table
    from nas.latency.costmodel.model import load_cost_model
    from nas.latency.devices import get_device
    from nas.search.objectives import CapacityProxy
    from nas.search.run import SearchRequest, run_search

    yaml = tmp_path / "mine.yaml"
    yaml.write_text(Path(nas.space.__file__).parent.parent.joinpath("search_spaces", "tiny.yaml").read_text()
                    .replace("name: tiny", "name: mine", 1))
    mine = nas.space.load_space(str(yaml))
    nas.space._BY_NAME.pop("mine")                      # nothing may find it by name from here on
    table = tmp_path / "iphone12-mine.json"
    estimate_table(get_device("iphone12"), mine, load_cost_model("iphone12"), table, progress=False)
    budgets = Budgets.load(mine, [1e6], ["iphone12"], {"iphone12": str(table)})
    objective = CapacityProxy(mine)
    objective.counts.cache = tmp_path / "counts.json"
    result = run_search(SearchRequest(mine, objective, budgets, trials=3, out=tmp_path / "run", progress=False))
    assert result.export is not None and result.export["ok"] and result.best.arch.space == "mine"
