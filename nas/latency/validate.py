"""``nas lut validate``: does the table predict whole networks? Measure N random archs end to end with the table's
own backend and compare with the prediction: MAPE, share within +-5% and +-10%, Kendall tau, and a scatter plot.

The archs come from seeds disjoint from those the correction was fitted on, so the report is held-out error.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nas.latency.build import VALIDATION_SEED_BASE, measure_arch
from nas.latency.devices import get_device
from nas.latency.predict import LutPredictor
from nas.space import SearchSpace


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (ties counted as neither concordant nor discordant)."""
    concordant = discordant = ties_a = ties_b = 0
    for (a1, b1), (a2, b2) in itertools.combinations(zip(a, b), 2):
        da, db = np.sign(a1 - a2), np.sign(b1 - b2)
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif da == db:
            concordant += 1
        else:
            discordant += 1
    denom = np.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return float((concordant - discordant) / denom) if denom else float("nan")


def error_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = (p - m) / m
    return {"mape": float(np.mean(np.abs(rel))), "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "max_abs_rel_err": float(np.max(np.abs(rel))),
            "kendall_tau": kendall_tau(p, m), "n": int(len(m))}


def plot_predicted_vs_measured(predicted: Sequence[float], measured: Sequence[float], path: str | Path,
                               title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = min(min(predicted), min(measured)) * 0.9, max(max(predicted), max(measured)) * 1.1
    xs = np.linspace(lo, hi, 2)
    ax.plot(xs, xs, "k-", lw=1, label="y = x")
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="tab:green", alpha=0.15, label="±10%")
    ax.scatter(measured, predicted, s=18, color="tab:blue", label="random archs")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured end to end (ms)")
    ax.set_ylabel("predicted from the table (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
        title = (f"{device.name}: MAPE {100 * report['mape']:.1f}%, {100 * report['within_10pct']:.0f}% within ±10%, "
                 f"tau {report['kendall_tau']:.2f} (n={n})")
        report["plot"] = str(plot_predicted_vs_measured(predicted, measured, plot, title))
    return report
