"""The calibration report: the cost model fitted on every published row, with leave-one-out and leave-one-family-out
errors beside a MACs-linear baseline under the same protocol. MAPE figures are in percent."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nas.latency.costmodel.fit import PRIOR_STRENGTH, OpArrays, fit_theta, model_from_theta
from nas.latency.costmodel.model import CostModel
from nas.latency.costmodel.published import FIGURE_WEIGHT, Published
from nas.latency.trace import OpRecord, summarize


def _macs_linear(macs: np.ndarray, latency: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Baseline: latency = a * GMACs + b, fitted on the same relative, weighted loss."""
    a = np.stack([macs, np.ones_like(macs)], axis=1) * (weight / latency)[:, None]
    (slope, intercept), *_ = np.linalg.lstsq(a, weight, rcond=None)
    return float(slope), float(intercept)


def _cross_validate(groups: Sequence[str],
                    fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    labels = np.asarray(groups)
    predicted = np.zeros(len(labels))
    for g in dict.fromkeys(groups):
        held = labels == g
        predicted[held] = fit_predict(~held, held)
    return predicted


def _errors(predicted: np.ndarray, latency: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    rel = np.abs(predicted - latency) / latency
    return {"mape": float(100 * rel.mean()), "weighted_mape": float(100 * np.sum(weight * rel) / np.sum(weight)),
            "within_10pct": float(np.mean(rel <= 0.10)), "max_abs_pct": float(100 * rel.max())}


def calibrate(device: str, rows: Sequence[Published], traces: Sequence[Sequence[OpRecord]],
              source: str) -> tuple[CostModel, dict[str, Any]]:
    """Fit the cost model on all rows, and report per model published vs predicted, leave-one-out and
    leave-one-family-out errors, beside the MACs-linear baseline under the same protocol."""
    arrays = [OpArrays(t) for t in traces]
    latency = np.array([r.latency_ms for r in rows])
    weight = np.array([r.weight for r in rows])
    macs = np.array([summarize(t)["macs_g"] for t in traces])

    def ours(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        theta = fit_theta([a for a, k in zip(arrays, train) if k], latency[train], weight[train])
        return np.array([a.predict(theta) for a, k in zip(arrays, test) if k])

    def baseline(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        slope, intercept = _macs_linear(macs[train], latency[train], weight[train])
        return slope * macs[test] + intercept

    everything = np.ones(len(rows), dtype=bool)
    each = [str(i) for i in range(len(rows))]
    families = [r.family for r in rows]
    predictions = {
        "cost_model": {"fit": ours(everything, everything), "loo": _cross_validate(each, ours),
                       "lofo": _cross_validate(families, ours)},
        "macs_linear": {"fit": baseline(everything, everything), "loo": _cross_validate(each, baseline),
                        "lofo": _cross_validate(families, baseline)},
    }
    summary = {name: {how: _errors(p, latency, weight) for how, p in by.items()} for name, by in predictions.items()}
    protocols = sorted({r.protocol for r in rows})
    report = {
        "device": device, "source": source, "protocol": ",".join(protocols), "n_models": len(rows),
        "families": sorted(set(families)), "summary": summary,
        "lofo_improvement": summary["macs_linear"]["lofo"]["mape"] / summary["cost_model"]["lofo"]["mape"],
        "models": [
            {"model": r.model, "timm_name": r.timm_name, "family": r.family, "kind": r.kind, "weight": r.weight,
             "macs_g": float(m), "published_ms": r.latency_ms,
             **{f"{name}_{how}_ms": float(predictions[name][how][i])
                for name in predictions for how in ("fit", "loo", "lofo")}}
            for i, (r, m) in enumerate(zip(rows, macs))
        ],
    }
    fit_info = {"source": source, "protocol": report["protocol"], "n_models": len(rows),
                "models": [r.timm_name for r in rows], "prior_strength": PRIOR_STRENGTH,
                "figure_weight": FIGURE_WEIGHT, "cv": {k: summary["cost_model"][k] for k in ("loo", "lofo")},
                "macs_linear_cv": {k: summary["macs_linear"][k] for k in ("loo", "lofo")},
                # what the estimated tables' prediction intervals are drawn from (nas.latency.correction)
                "lofo_relative_residuals": [float(v) for v in latency / predictions["cost_model"]["lofo"] - 1]}
    theta = fit_theta(arrays, latency, weight)
    return model_from_theta(device, theta, fit_info), report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['device']}: {report['n_models']} models, protocol {report['protocol']}, "
             f"source {report['source']}",
             f"{'model':34s} {'published':>9s} | {'cost model: fit':>15s} {'LOO':>6s} {'LOFO':>6s} | "
             f"{'MACs-linear: fit':>16s} {'LOO':>6s} {'LOFO':>6s}"]
    for m in report["models"]:
        lines.append(f"{m['model'][:34]:34s} {m['published_ms']:9.2f} | {m['cost_model_fit_ms']:15.2f} "
                     f"{m['cost_model_loo_ms']:6.2f} {m['cost_model_lofo_ms']:6.2f} | {m['macs_linear_fit_ms']:16.2f} "
                     f"{m['macs_linear_loo_ms']:6.2f} {m['macs_linear_lofo_ms']:6.2f}")
    lines.append("")
    lines.append(f"{'MAPE %':34s} {'':9s} | {'':15s} {'LOO':>6s} {'LOFO':>6s} |")
    for name in ("cost_model", "macs_linear"):
        s = report["summary"][name]
        lines.append(f"{name:34s} {'':9s} | fit {s['fit']['mape']:11.1f} {s['loo']['mape']:6.1f} "
                     f"{s['lofo']['mape']:6.1f} | (weighted, figure rows x{FIGURE_WEIGHT}: fit "
                     f"{s['fit']['weighted_mape']:.1f}, LOO {s['loo']['weighted_mape']:.1f}, "
                     f"LOFO {s['lofo']['weighted_mape']:.1f})")
    lines.append(f"leave-one-family-out: the cost model's MAPE is {report['lofo_improvement']:.2f}x lower than "
                 "the MACs-linear baseline's")
    return "\n".join(lines)
