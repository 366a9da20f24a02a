"""Latency a budget can be bet on (issue 17): prediction intervals, the closed loop (kept points, refit, check),
adaptation to a new device, the reference workload and repeated validation rounds."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nas.latency.adapt import adapt_table
from nas.latency.build import build_table
from nas.latency.correction import Residuals, fit_points, make_point, table_residuals
from nas.latency.loop import refit_table
from nas.latency.predict import LutPredictor
from nas.latency.table import LatencyTable, add_points
from tests.helpers import nas_here, run_nas


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny):
    """A measured table of the tiny space with 6 end-to-end points, 2 rounds (copied by tests that change it)."""
    path = tmp_path_factory.mktemp("trust") / "cpu-tiny.json"
    build_table("cpu", "tiny", path, calibrate=6, progress=False, rounds=2)
    return path


@pytest.fixture
def table_copy(built, tmp_path):
    path = tmp_path / "cpu-tiny.json"
    shutil.copy(built, path)
    return path


# ------------------------------------------------------------------------------------------------ intervals


def test_conformal_bounds_cover_new_draws_at_the_stated_rate():
    """Exchangeable residuals: the one-sided bound from 19 of them covers a 20th with probability >= 0.9, and
    the two-sided 90% interval covers it >= 90% of the time; a bound a rank lower would cover less."""
    rng = np.random.default_rng(0)
    trials, under, inside, under_lower_rank = 4000, 0, 0, 0
    for _ in range(trials):
        draws = rng.lognormal(0, 0.2, 20) - 1
        res = Residuals.of(draws[:19], "test")
        new = 1 + draws[19]
        upper, exact = res.upper(1.0, 0.9)
        lo, hi, both_exact = res.bounds(1.0, 0.9)
        assert exact and both_exact
        under += new <= upper
        inside += lo <= new <= hi
        under_lower_rank += new <= 1 + res.values[16]     # rank 17 instead of ceil(20 * 0.9) = 18
    assert under / trials >= 0.89 and inside / trials >= 0.89
    assert under_lower_rank / trials < 0.875


def test_too_few_residuals_use_the_widest_and_say_so():
    res = Residuals.of([-0.1, 0.0, 0.2], "three points")
    lo, hi, exact = res.bounds(10.0, 0.9)
    assert (lo, hi, exact) == (pytest.approx(9.0), pytest.approx(12.0), False)
    assert "coverage not guaranteed" in res.describe(0.9)


def test_predict_json_has_an_interval_around_the_prediction(built, tiny):
    arch = tiny.largest()
    (built.parent / "arch.json").write_text(arch.to_json())
    out = json.loads(nas_here("predict", "--device", "cpu", "--space", "tiny", "--lut", str(built), "--arch",
                              str(built.parent / "arch.json"), "--json", "--coverage", "0.8").stdout)
    assert out["coverage"] == 0.8
    assert out["latency_low_ms"] <= out["latency_ms"] <= out["latency_high_ms"]
    assert out["latency_upper_ms"] >= out["latency_ms"] * (1 + min(table_residuals(
        LatencyTable.load(built), tiny).values))
    assert "leave-one-out residuals" in out["interval_source"]
    bad = run_nas("predict", "--device", "cpu", "--space", "tiny", "--lut", str(built), "--arch",
                  str(built.parent / "arch.json"), "--coverage", "1.5")
    assert bad.returncode == 2 and "a coverage in [0.5, 1)" in bad.stderr


def test_estimated_table_intervals_come_from_the_cost_models_cross_validation():
    out = json.loads(nas_here("predict", "--device", "iphone12", "--arch", "l1", "--json").stdout)
    assert "leave-one-family-out" in out["interval_source"] and out["interval_exact"]
    assert out["latency_low_ms"] < out["latency_ms"] < out["latency_upper_ms"] <= out["latency_high_ms"]


# ------------------------------------------------------------------------------------------------ the loop


def test_build_rounds_are_separate_passes_merged_by_their_median(built, tiny):
    table = LatencyTable.load(built)
    assert table.header["rounds"] == 2
    for entry in [*table.entries.values(), *(c["timing"] for c in table.calibration)]:
        assert len(entry["rounds_ms"]) == 2 and entry["median_ms"] == pytest.approx(np.median(entry["rounds_ms"]))
        assert entry["p10_ms"] <= min(entry["rounds_ms"]) and entry["p90_ms"] >= max(entry["rounds_ms"])
    assert all(c["measured_ms"] == c["timing"]["median_ms"] for c in table.calibration)


def test_resume_with_more_rounds_measures_only_the_missing_round(tmp_path):
    path = tmp_path / "one.json"
    first, _ = build_table("cpu", "tiny", path, calibrate=0, progress=False)
    calls = []
    table, _ = build_table("cpu", "tiny", path, calibrate=0, progress=False, rounds=2, resume=True,
                           on_measured=calls.append)
    assert len(calls) == len(first.entries) and table.header["rounds"] == 2
    assert all(len(e["rounds_ms"]) == 2 for e in table.entries.values())


def test_build_times_the_reference_workload_into_the_header(built):
    ref = LatencyTable.load(built).header["reference"]
    assert ref["op"].startswith("mb4d|") and len(ref["samples"]) >= 2 and ref["median_ms"] > 0
    assert ref["spread_pct"] >= 0


def test_refit_moves_the_correction_toward_new_points(table_copy, tiny):
    """A later session whose archs all run 30% slower than predicted: after refit, predictions of other archs are
    30% higher (the session's drift factor), and the base scale/offset stay those of the build."""
    before = LutPredictor.from_file(table_copy)
    archs = [tiny.sample(seed=900 + i) for i in range(4)]
    add_points(table_copy, [make_point(a, 1.3 * before.predict(a), "check", "2099-01-01T00:00:00") for a in archs])
    assert LutPredictor.from_file(table_copy).predict(tiny.largest()) == before.predict(tiny.largest())  # not yet
    table, fit = refit_table(table_copy)
    assert fit is not None and fit.current == "2099-01-01T00:00:00" and fit.n == 10
    assert fit.current_drift == pytest.approx(1.3, rel=0.05)
    after = LutPredictor(table, tiny)
    other = tiny.sample(seed=999)
    assert after.predict(other) / before.predict(other) == pytest.approx(1.3, rel=0.03)


def test_fit_points_pools_small_sessions_with_the_last_large_one():
    raw = np.linspace(1, 10, 8)
    measured = list(2 * raw + 1) + [1.2 * 11]          # one point 20% slow, in a session of its own
    fit = fit_points(list(raw) + [5.0], measured, ["a"] * 8 + ["b"])
    assert fit.current == "a" and fit.current_drift == 1.0   # a one-point session does not set the drift
    assert fit.scale == pytest.approx(2, rel=0.1) and max(fit.residuals) == pytest.approx(0.2, abs=0.05)


def test_the_correction_never_subtracts_time():
    """Points that a line with a negative offset would fit best (noise on a narrow range) get offset 0 instead,
    so the fastest archs, far below the points, are not predicted too fast; exact points keep their line."""
    raw = np.array([100.0, 120.0, 140.0, 160.0])
    steep = fit_points(raw, 2 * raw - 60, ["a"] * 4)
    assert steep.offset_ms == 0 and 1.5 < steep.scale < 2
    exact = fit_points(raw, 1.1 * raw + 0.2, ["a"] * 4)
    assert (exact.scale, exact.offset_ms) == (pytest.approx(1.1), pytest.approx(0.2))


def test_validate_reports_repeatability_coverage_and_keeps_its_points(table_copy):
    proc = run_nas("lut", "validate", "--device", "cpu", "--space", "tiny", "--lut", str(table_copy), "--n", "3",
                   "--rounds", "2", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rounds"] == 2 and report["repeatability"]["n"] == 3
    assert all(len(r["rounds_ms"]) == 2 for r in report["rows"])
    assert 0 <= report["intervals"]["under_upper_bound"] <= 1
    points = LatencyTable.load(table_copy).calibration
    assert [p["source"] for p in points].count("validate") == 3
    again = json.loads(run_nas("lut", "validate", "--device", "cpu", "--space", "tiny", "--lut", str(table_copy),
                               "--n", "2", "--rounds", "1", "--json", "--no-progress").stdout)
    assert again["seeds"] == "10003..10004" and "repeatability" not in again     # new archs, not the kept ones


def test_check_says_whether_the_table_holds_and_refits(table_copy):
    proc = run_nas("lut", "check", "--device", "cpu", "--space", "tiny", "--lut", str(table_copy), "--n", "3",
                   "--refit", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert isinstance(report["holds"], bool) and report["reference"]["ratio"] > 0
    assert report["holds"] == (abs(report["median_error"]) <= report["tolerance"])
    # The refit's quality is asserted on exact synthetic points (test_refit_moves_the_correction_toward_new_points):
    # real timings on a shared machine are too noisy for "the median error shrinks" to hold on every run.
    assert report["refit"]["points"] == 9 and -1 < report["refit"]["median_error_after"] < 1
    table = LatencyTable.load(table_copy)
    assert table.correction["drift_session"] == table.calibration[-1]["session"]
    est = run_nas("lut", "check", "--device", "iphone12")
    assert est.returncode == 2 and "estimated table" in est.stderr


# ------------------------------------------------------------------------------------------------ adapt


def test_adapt_writes_an_adapted_table_whose_scales_follow_the_measurements(built, tmp_path, tiny):
    """Latencies 2x the source's on stem/down/mb4d and 3x on mb3d: the fitted kind scales recover them."""
    source = LutPredictor.from_file(built)
    archs = [tiny.sample(seed=30_000 + i) for i in range(16)]   # >= 2 per fitted parameter (6 kinds + offset)
    entries = source.table.entries

    def truth(arch):
        from nas.latency.ops import arch_ops
        return sum(entries[op.key]["median_ms"] * (3.0 if op.key.startswith("mb3d") else 2.0)
                   for op in arch_ops(arch, tiny)) + 0.1

    table, report = adapt_table("cpu-2t", built, 16, tmp_path / "cpu2t.json", progress=False,
                                measured_ms=[truth(a) for a in archs])
    assert table.header["kind"] == "adapted" and table.header["device"] == "cpu-2t"
    assert report["scales"]["mb4d"] == pytest.approx(2.0, rel=0.05)
    if any(a.n3d for a in archs):
        assert report["scales"]["mb3d"] == pytest.approx(3.0, rel=0.1)
    assert report["loo_mape"] < 2.0
    adapted = LutPredictor.from_file(tmp_path / "cpu2t.json")
    other = tiny.sample(seed=77)
    assert adapted.predict(other) == pytest.approx(truth(other), rel=0.03)
    assert adapted.residuals is not None and adapted.residuals.n == 16


def test_adapt_command_measures_the_new_device(built, tmp_path):
    proc = run_nas("lut", "adapt", "--device", "cpu-2t", "--from", str(built), "--n", "4", "--repeats", "2",
                   "--out", str(tmp_path / "a.json"), "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n"] == 4 and report["from_device"] == "cpu" and set(report["scales"]) >= {"mb4d", "stem"}
    adapted = LatencyTable.load(tmp_path / "a.json").header["adapted"]
    assert adapted["n"] == 4 and adapted["repeats"] == 2
    bad = run_nas("lut", "adapt", "--device", "cpu-2t", "--from", str(built), "--n", "2", "--out",
                  str(tmp_path / "b.json"))
    assert bad.returncode == 2 and "at least 3 archs" in bad.stderr


# ------------------------------------------------------------------------------- fidelity on the day (issue 29)


def test_a_one_round_build_times_a_few_archs_twice_and_says_how_far_it_holds(tmp_path, tiny):
    from nas.latency.fidelity import FLOOR_ARCHS

    path = tmp_path / "cpu-tiny.json"
    table, _ = build_table("cpu", "tiny", path, calibrate=FLOOR_ARCHS + 2, progress=False)
    rounds = [len(c["timing"]["rounds_ms"]) for c in table.calibration]
    assert rounds == [2] * FLOOR_ARCHS + [1, 1]          # the floor pass re-times only the first few
    trust = table.header["fidelity"]
    assert trust["floor"]["n"] == FLOOR_ARCHS and trust["held_out"]["n"] == FLOOR_ARCHS + 2
    assert trust["held_out"]["mape"] > 0 and trust["held_out"]["within_pct_at_90"] >= trust["held_out"]["mape"] / 2
    (tmp_path / "arch.json").write_text(tiny.largest().to_json())
    shown = nas_here("predict", "--device", "cpu", "--space", "tiny", "--lut", str(path), "--arch",
                     str(tmp_path / "arch.json"))
    assert shown.returncode == 0 and "within ±" in shown.stdout and "timed twice" in shown.stdout
    as_json = json.loads(nas_here("predict", "--device", "cpu", "--space", "tiny", "--lut", str(path), "--arch",
                                  str(tmp_path / "arch.json"), "--json").stdout)
    assert as_json["table_fidelity"] == trust


def test_fidelity_turns_leave_one_out_residuals_into_prediction_errors():
    from nas.latency.fidelity import fidelity, floor, held_out, words

    # measured / predicted - 1 = +25% means predicted 20% low
    h = held_out([0.25, -0.2, 0.0, 0.0])
    assert h is not None and h["mape"] == pytest.approx(100 * (0.2 + 0.25) / 4) and h["within_10pct"] == 0.5
    assert held_out([0.1]) is None
    two = {"timing": {"rounds_ms": [10.0, 11.0]}}
    assert floor([two]) is None                                 # one arch timed twice is no floor
    f = floor([two, {"timing": {"rounds_ms": [10.0, 9.0]}}, {"timing": {"rounds_ms": [10.0]}}])
    assert f is not None and f["n"] == 2 and f["mape"] == pytest.approx(10.0)
    header = {"correction": {"residuals": [0.01, -0.02, 0.03]}, "date": "2026-12-07T05:00:00",
              "load": {"load_1m": 0.2}}
    line = words(fidelity(header, [two]))
    assert line is not None and "within ±" in line and "3 held-out archs" in line and "load 0.2" in line
    # no correction kept: the raw sums' errors, which nothing was fitted to, and the line says so
    uncorrected = fidelity({"correction": {"residuals": [0.1, 0.2], "note": "no correction kept"}}, [])
    assert uncorrected is not None and uncorrected["uncorrected"] and "no correction kept" in str(words(uncorrected))
    assert fidelity({"correction": {"residuals": [0.1]}}, []) is None        # one point is no error estimate


def test_a_two_round_build_takes_its_floor_from_every_point(built):
    trust = LatencyTable.load(built).header["fidelity"]
    assert trust["floor"]["n"] == len(LatencyTable.load(built).calibration) == 6


def test_a_machine_just_left_alone_is_not_called_busy_by_its_lagging_load_average():
    from nas.machine import busy_words, is_busy, load_now

    now = load_now(0.2)
    assert 0 <= now.get("busy_cores", 0) <= now["cores"]
    just_paused = {"load_1m": 2.3, "cores": 2, "busy_cores": 0.1}     # the minute's average still remembers
    assert not is_busy(just_paused) and "0.1 of them busy" in busy_words(just_paused)
    assert is_busy({"load_1m": 0.2, "cores": 2, "busy_cores": 1.9})
    assert is_busy({"load_1m": 2.3, "cores": 2})                       # no sample: the load average decides
