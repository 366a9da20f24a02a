"""``nas lut validate``: does the table predict whole networks? Measure N random archs end to end with the table's
own backend and compare with the prediction: MAPE (percent, as every MAPE nas reports), share within +-5% and
+-10% (fractions), Kendall tau, and a scatter plot (``nas.plots``).

The archs come from seeds disjoint from those the correction was fitted on, so the report is held-out error.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.latency.build import measure_arch
from nas.latency.devices import get_device
from nas.latency.predict import LutPredictor
from nas.latency.table import VALIDATION_SEED_BASE
from nas.plots import plot_predicted_vs_measured
from nas.space import SearchSpace


def kendall_tau(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b (scipy's; NaN when either side is constant)."""
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def error_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = (p - m) / m
    return {"mape": float(100 * np.mean(np.abs(rel))), "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "max_abs_rel_err": float(np.max(np.abs(rel))),
            "kendall_tau": kendall_tau(p, m), "n": int(len(m))}


def validate_table(predictor: LutPredictor, device_name: str, n: int, plot: str | Path | None = None,
                   seed_base: int = VALIDATION_SEED_BASE, progress: bool = True) -> dict[str, Any]:
    device = get_device(device_name)
    space: SearchSpace = predictor.space
    archs = [space.sample(seed=seed_base + i) for i in range(n)]
    predicted = [predictor.predict(a) for a in archs]   # fails early, before measuring, if entries are missing
    measured = []
    iterator = archs
    if progress:
        import sys

        from tqdm import tqdm
        iterator = tqdm(archs, desc=f"validate {device.name}", unit="arch", file=sys.stderr, dynamic_ncols=True)
    for arch in iterator:
        measured.append(measure_arch(device, arch, space).median_ms)
    report: dict[str, Any] = {
        "device": device.name, "table": predictor.path, "table_kind": predictor.kind, "space": space.name,
        "seeds": f"{seed_base}..{seed_base + n - 1}", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **error_metrics(predicted, measured),
        "rows": [{"arch": a.to_dict(), "predicted_ms": p, "measured_ms": m}
                 for a, p, m in zip(archs, predicted, measured)],
    }
    if plot:
        title = (f"{device.name}: MAPE {report['mape']:.1f}%, {100 * report['within_10pct']:.0f}% within ±10%, "
                 f"tau {report['kendall_tau']:.2f} (n={n})")
        report["plot"] = str(plot_predicted_vs_measured(predicted, measured, plot, title))
    return report
