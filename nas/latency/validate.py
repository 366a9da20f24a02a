"""``nas lut validate``: does the table predict whole networks? Measure N random archs end to end with the table's
own backend and compare with the prediction: MAPE (percent, as every MAPE nas reports), share within +-5% and
+-10% (fractions), Kendall tau, the empirical coverage of the prediction intervals, and a scatter plot.

Each arch is measured in ``rounds`` separate passes over all of them (interleaved in time, not back to back), so
the report also gives the measurement's own repeatability, the floor any prediction error sits on: the same
metrics between the first two rounds. An arch's measured latency is the median of its round medians.

The archs come from seeds the table has not seen (``VALIDATION_SEED_BASE`` on, past the archs earlier validations
measured), so the report is held-out error; the measurements are then kept with the table as calibration points
(``nas lut refit`` uses them).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.correlation import kendall_tau
from nas.errors import UsageError
from nas.latency.build import measure_arch
from nas.latency.correction import DEFAULT_COVERAGE, make_point, new_session
from nas.latency.devices import get_device
from nas.latency.predict import LutPredictor
from nas.latency.table import VALIDATION_SEED_BASE, add_points
from nas.latency.timing import TimingPolicy
from nas.plots import plot_predicted_vs_measured
from nas.space import Arch, SearchSpace


def error_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = (p - m) / m
    return {"mape": float(100 * np.mean(np.abs(rel))), "bias_pct": float(100 * np.median(rel)),
            "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "max_abs_rel_err": float(np.max(np.abs(rel))),
            "kendall_tau": kendall_tau(p, m), "n": int(len(m))}


def measure_rounds(device_name: str, archs: Sequence[Arch], space: SearchSpace, rounds: int,
                   progress: bool = True, desc: str = "measure", policy: TimingPolicy | None = None,
                   recipe: dict[str, Any] | None = None) -> list[list[float]]:
    """``[round][arch]`` median latencies: every arch once per round, the rounds one after another (an int8
    device's archs quantised by ``recipe``, the table's in hand; else its default table's)."""
    device = get_device(device_name)
    ok, why = device.measurable_here()
    if not ok:          # before the progress bar: a refusal is the one line printed
        raise UsageError(f"--device {device.name} cannot be measured here: {why}")
    bar = None
    if progress:
        import sys

        from tqdm import tqdm
        bar = tqdm(total=rounds * len(archs), desc=f"{desc} {device.name}", unit="arch", file=sys.stderr,
                   dynamic_ncols=True)
    out = []
    for _ in range(rounds):
        row = []
        for arch in archs:
            row.append(measure_arch(device, arch, space, policy, recipe).median_ms)
            if bar:
                bar.update(1)
        out.append(row)
    if bar:
        bar.close()
    return out


def next_seed_base(points: Sequence[dict[str, Any]], source: str, base: int) -> int:
    """Seeds past those earlier runs of ``source`` measured, so each run's archs are new to the table."""
    return base + sum(1 for p in points if p.get("source") == source)


def coverage_of(predictor: LutPredictor, archs: Sequence[Arch], measured: Sequence[float],
                coverage: float) -> dict[str, Any]:
    """How often the measurements fell inside the two-sided interval and under the one-sided bound."""
    if predictor.residuals is None:
        return {"coverage": coverage, "inside_interval": None, "under_upper_bound": None}
    inside, under = [], []
    for arch, m in zip(archs, measured):
        iv = predictor.interval(arch, coverage)
        inside.append(iv["latency_low_ms"] <= m <= iv["latency_high_ms"])
        under.append(m <= iv["latency_upper_ms"])
    return {"coverage": coverage, "inside_interval": float(np.mean(inside)), "under_upper_bound": float(np.mean(under)),
            "interval_source": predictor.residuals.describe(coverage)}


def validate_table(predictor: LutPredictor, device_name: str, n: int, plot: str | Path | None = None,
                   seed_base: int | None = None, progress: bool = True, rounds: int = 2,
                   coverage: float = DEFAULT_COVERAGE, keep: bool = True) -> dict[str, Any]:
    device = get_device(device_name)
    space: SearchSpace = predictor.space
    if seed_base is None:
        seed_base = next_seed_base(predictor.table.calibration, "validate", VALIDATION_SEED_BASE)
    archs = [space.sample(seed=seed_base + i) for i in range(n)]
    predicted = [predictor.predict(a) for a in archs]   # fails early, before measuring, if entries are missing
    session = new_session()
    by_round = measure_rounds(device.name, archs, space, rounds, progress, "validate",
                              recipe=predictor.table.header.get("quantization"))
    measured = [statistics.median(r[i] for r in by_round) for i in range(n)]
    report: dict[str, Any] = {
        "device": device.name, "table": predictor.path, "table_kind": predictor.kind, "space": space.name,
        "seeds": f"{seed_base}..{seed_base + n - 1}", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rounds": rounds, **error_metrics(predicted, measured),
        "intervals": coverage_of(predictor, archs, measured, coverage),
        "rows": [{"arch": a.to_dict(), "predicted_ms": p, "measured_ms": m, "rounds_ms": [r[i] for r in by_round]}
                 for i, (a, p, m) in enumerate(zip(archs, predicted, measured))],
    }
    if rounds >= 2:   # the measurement against itself: round 2 "predicting" round 1
        report["repeatability"] = error_metrics(by_round[1], by_round[0])
    if plot:
        title = (f"{device.name}: MAPE {report['mape']:.1f}%, {100 * report['within_10pct']:.0f}% within ±10%, "
                 f"tau {report['kendall_tau']:.2f} (n={n})")
        report["plot"] = str(plot_predicted_vs_measured(predicted, measured, plot, title))
    if keep and predictor.path and predictor.kind == "measured":
        add_points(predictor.path, [make_point(a, m, "validate", session) for a, m in zip(archs, measured)])
        report["kept_as_calibration_points"] = n
    return report
