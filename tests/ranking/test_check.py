"""``nas supernet rank`` on a tiny supernet: the report, resuming after a kill, Ray workers, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nas.cli import main
from nas.ranking.check import RankSettings, run_check, stratified_archs
from tests.conftest import OBJECTS_SMALL
from tests.helpers import OwnProcesses

FAST = ["--archs", "4", "--seeds", "2", "--bootstrap", "200", "--threads", "1", "--no-progress"]


def _settings(ckpt, out, **kw):
    base = dict(checkpoint=str(ckpt), archs=4, seeds=2, bootstrap=200, threads=1, out=str(out), progress=False)
    return RankSettings(**{**base, **kw})


def test_the_archs_cover_the_latency_range_ends_included(tiny, tiny_iphone12):
    from nas.latency.predict import LutPredictor

    predictor = LutPredictor.from_file(tiny_iphone12)
    chosen = stratified_archs(tiny, predictor, 6, seed=0)
    assert [n for n, _, _ in chosen][0] == "smallest" and chosen[-1][0] == "largest"
    latencies = [ms for _, _, ms in chosen]
    assert latencies == sorted(latencies) and len({a.to_json() for _, a, _ in chosen}) == 6
    gaps = [b - a for a, b in zip(latencies, latencies[1:])]
    assert max(gaps) < 0.5 * (latencies[-1] - latencies[0])      # spread out, not bunched at one end


@pytest.fixture(scope="module")
def serial_report(objects_ckpt, tmp_path_factory):
    """The check run here, in this process, with the FAST settings: the report the Ray runs must reproduce."""
    out = tmp_path_factory.mktemp("rank") / "r"
    return out, run_check(_settings(objects_ckpt, out))


def test_the_report_has_every_score_with_intervals_and_the_noise_floor(serial_report):
    out, report = serial_report
    assert report["data"] == OBJECTS_SMALL and report["classes"] == 10 and len(report["archs"]) == 4
    for name in ("inherited", "capacity", "params", "synflow", "naswot", "zico", "grad_norm"):
        tau = report["agreement"][name]["kendall_tau"]
        assert set(tau) == {"value", "low", "high"}
    for arch in report["archs"]:
        assert 0 <= arch["standalone_top1"] <= 100 and 0 <= arch["inherited"] <= 100
    floor = report["noise_floor"]
    assert len(floor["top1"]) == 2 and floor["top1"][0] in [a["standalone_top1"] for a in report["archs"]]
    assert (out / "rank.png").stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["verdict"] == report["verdict"]
    # the stand-alone recipe is the supernet's: its epochs, batch and learning rate
    assert report["standalone_recipe"]["epochs"] == 1 and report["standalone_recipe"]["batch_size"] == 32


def _trainings(out):
    path = out / "state.json"
    return json.loads(path.read_text())["trainings"] if path.exists() else {}


def test_a_killed_check_resumes_without_retraining_what_finished(objects_ckpt, tmp_path):
    out = tmp_path / "r"
    args = [sys.executable, "-m", "nas", "supernet", "rank", str(objects_ckpt), "--out", str(out), "--json",
            "--epochs", "2", *FAST]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not _trainings(out) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = _trainings(out)
    assert 1 <= len(done) < 5, "kill the check between its first and its last training"
    again = subprocess.run(args, capture_output=True, text=True)
    refused = subprocess.run(args[:-len(FAST)] + FAST, capture_output=True, text=True)
    assert "--resume" in refused.stderr and refused.returncode == 2       # without --resume: refused, not redone
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _trainings(out)
    assert len(after) == 5
    for key, result in done.items():
        assert after[key] == result                       # the same pid and seconds: not trained again
    assert again.returncode == 2


def test_a_resume_with_other_settings_is_refused_naming_the_setting(objects_ckpt, tmp_path, capsys):
    out = tmp_path / "r"
    (out).mkdir()
    (out / "state.json").write_text(json.dumps({"format": "nas-rank-state/1", "fingerprint": {"archs": 9},
                                                         "archs": [], "scores": {}, "trainings": {}}))
    code = main(["supernet", "rank", str(objects_ckpt), "--out", str(out), "--resume", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "started with --archs 9, this run asks for --archs 4" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.ray
def test_one_and_two_ray_workers_give_the_serial_report(objects_ckpt, serial_report, tmp_path):
    own = OwnProcesses()
    env = own.env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    reports = {}
    try:
        for workers in (1, 2):
            proc = subprocess.run([sys.executable, "-m", "nas", "supernet", "rank", str(objects_ckpt), "--out",
                                   str(tmp_path / f"w{workers}"), "--json", *FAST, "--num-workers", str(workers)],
                                  capture_output=True, text=True, env=env, timeout=600)
            assert proc.returncode == 0, proc.stderr[-2000:]
            reports[workers] = json.loads(proc.stdout)
    finally:
        own.kill()                      # what Ray left of this test's runs, not another test run's Ray
    serial = serial_report[1]
    for workers in (1, 2):
        assert [a["standalone_top1"] for a in reports[workers]["archs"]] == \
            [a["standalone_top1"] for a in serial["archs"]]
        assert reports[workers]["agreement"] == serial["agreement"]
        assert reports[workers]["noise_floor"] == serial["noise_floor"]


@pytest.mark.parametrize("extra, words", [
    (["--archs", "2"], "--archs 2: a ranking needs at least 3 archs"),
    (["--space", "efficientformer"], "is a supernet of space 'tiny'"),
    (["--data", "builtin:nosuch"], "unknown built-in dataset 'nosuch'"),
    (["--data", "builtin:objects:classes=40,train=64,val=32,test=32"], "has 40 classes"),
    (["--seeds", "1"], "--seeds 1: the noise floor needs at least 2"),
    (["--ray-address", "127.0.0.1:1"], "--ray-address is a setting of --num-workers"),
    (["--device", "nosuch"], "nosuch"),
])
def test_bad_input_is_one_line_exit_2(objects_ckpt, tmp_path, capsys, extra, words):
    out = tmp_path / "r"
    code = main(["supernet", "rank", str(objects_ckpt), "--out", str(out), *FAST, *extra])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("nas: note:")]
    assert code == 2 and len(lines) == 1 and words in lines[0], err
    assert not (out / "state.json").exists() or extra[0] == "--device"


def test_a_checkpoint_that_is_not_a_supernet_is_refused(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_text("not a checkpoint")
    assert main(["supernet", "rank", str(bad), *FAST]) == 2
    assert "not a readable weights-only checkpoint" in capsys.readouterr().err
