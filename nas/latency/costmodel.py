"""A latency cost model for devices that cannot be measured here: a roofline over traced ops, fitted to published
end-to-end latencies.

Per op (``nas.latency.trace``)::

    t_op = max(flops / peak, bytes * multiplier[category] / bandwidth) + per_op
    t_model = fixed + sum(t_op)

- ``peak`` and ``bandwidth`` are the compute and memory terms; dense ops are the reference (multiplier 1).
- The multipliers price what EfficientFormer found slow on phones: layout changes (reshape/transpose), LayerNorm,
  softmax, and activations Core ML has to decompose (SiLU, HardSwish). Depthwise and plain elementwise ops get their
  own multiplier because the Neural Engine streams them at a different rate than dense ops.
- ``per_op`` is the dispatch cost of one kernel, ``fixed`` the per-inference cost (input copy, ANE hand-off). In a
  lookup table built from the model, ops carry ``t_op`` and ``fixed`` becomes the table's correction offset, so the
  table and the model predict the same number for the same network.

Fitting: weighted least squares on log(predicted / published), so every model counts by its relative error; rows
read off a plot weigh 0.5 (the calibration README asks for less weight). The multipliers have a Gaussian prior at
1 (``PRIOR_STRENGTH`` on their log): a multiplier the data cannot pin down (say the layout cost when the only
reshape-heavy family is held out) stays near "costs what any memory op costs" instead of extrapolating wildly.
Ten parameters over about twenty models is only honest with that prior and with cross-validation, which the
calibration report does by leaving out each model and each family.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from nas.errors import UsageError
from nas.fileio import read_json, write_json_atomic
from nas.latency.trace import CATEGORIES, DENSE, OpRecord, summarize, trace_ops

SCHEMA = "nas-cost-model/1"
MULTIPLIED = tuple(c for c in CATEGORIES if c != DENSE)  # dense ops are the reference
PRIOR_STRENGTH = 0.3
FIGURE_WEIGHT = 0.5
PROTOCOLS = ("P1", "P2")


# ------------------------------------------------------------------------------------------------- the model


@dataclass
class CostModel:
    device: str
    peak_gflop_per_ms: float
    bandwidth_mb_per_ms: float
    per_op_ms: float
    fixed_ms: float
    multipliers: dict[str, float]
    fit: dict[str, Any] = field(default_factory=dict)   # how it was fitted: source, protocol, models, CV errors

    # -- prediction

    def op_ms(self, records: Iterable[OpRecord]) -> float:
        """Sum of the per-op times (without ``fixed_ms``): what a lookup-table entry holds."""
        total = 0.0
        for r in records:
            if r.category not in CATEGORIES:
                continue  # fused into its producer, or a free view
            multiplier = 1.0 if r.category == DENSE else self.multipliers[r.category]
            compute = r.flops / 1e9 / self.peak_gflop_per_ms
            memory = r.bytes / 1e6 * multiplier / self.bandwidth_mb_per_ms
            total += max(compute, memory) + self.per_op_ms
        return total

    def predict_records(self, records: Iterable[OpRecord]) -> float:
        return self.fixed_ms + self.op_ms(records)

    def predict_module(self, module: nn.Module, input_size: int | Sequence[int] = 224) -> float:
        """Estimated end-to-end latency (ms) of any ``nn.Module`` taking one image of ``input_size``."""
        return self.predict_records(trace_ops(module, example_input(input_size)))

    # -- files

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "device": self.device, "peak_gflop_per_ms": self.peak_gflop_per_ms,
                "bandwidth_mb_per_ms": self.bandwidth_mb_per_ms, "per_op_ms": self.per_op_ms,
                "fixed_ms": self.fixed_ms, "multipliers": self.multipliers, "fit": self.fit}

    @classmethod
    def from_dict(cls, data: Any, where: str = "<cost model>") -> "CostModel":
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise UsageError(f"cost model {where}: not a {SCHEMA} file")
        try:
            multipliers = {c: float(data["multipliers"][c]) for c in MULTIPLIED}
            return cls(str(data["device"]), float(data["peak_gflop_per_ms"]), float(data["bandwidth_mb_per_ms"]),
                       float(data["per_op_ms"]), float(data["fixed_ms"]), multipliers, dict(data.get("fit", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"cost model {where}: missing or bad field {exc}") from None

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "CostModel":
        return cls.from_dict(read_json(path, "cost model"), str(path))


def example_input(input_size: int | Sequence[int]) -> torch.Tensor:
    if isinstance(input_size, int):
        return torch.randn(1, 3, input_size, input_size)
    return torch.randn(1, *input_size)


def shipped_cost_model_path(device: str) -> Path:
    return Path(str(resources.files("latency_luts") / f"{device}.costmodel.json"))


def load_cost_model(device: str) -> CostModel:
    """The cost model of ``device``: ``$NAS_LUT_DIR/<device>.costmodel.json`` if one was fitted locally, else the
    shipped one."""
    from nas.latency.devices import local_table_dir

    for path in (local_table_dir() / f"{device}.costmodel.json", shipped_cost_model_path(device)):
        if path.is_file():
            return CostModel.load(path)
    raise UsageError(f"device {device!r} has no cost model; fit one with: nas lut calibrate --device {device} "
                     f"--csv FILE (devices with a shipped model: {', '.join(shipped_cost_models()) or 'none'})")


def shipped_cost_models() -> list[str]:
    folder = resources.files("latency_luts")
    return sorted(p.name[: -len(".costmodel.json")] for p in folder.iterdir() if p.name.endswith(".costmodel.json"))


# ----------------------------------------------------------------------------------------- timm models


def timm_model(name: str) -> nn.Module:
    """A timm model by name, random weights (nothing is downloaded), re-parameterised as it runs on the phone."""
    import timm
    from timm.utils.model import reparameterize_model

    if name not in timm.list_models():
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise UsageError(f"unknown timm model {name!r}{hint}")
    model = timm.create_model(name, pretrained=False).eval()
    return reparameterize_model(model)


def timm_input_size(name: str) -> int:
    import timm

    cfg = timm.get_pretrained_cfg(name)
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return int(size[-1]) if size else 224


# ------------------------------------------------------------------------------------------- calibration data


@dataclass(frozen=True)
class Published:
    model: str
    timm_name: str
    input_size: int
    latency_ms: float
    protocol: str
    kind: str
    source: str

    @property
    def weight(self) -> float:
        return FIGURE_WEIGHT if self.kind.startswith("figure") else 1.0

    @property
    def family(self) -> str:
        """Model family for leave-one-family-out: the name up to its size suffix (efficientformerv2, repvit, ...)."""
        return re.match(r"[a-z]+(v\d)?", self.timm_name).group(0)


def shipped_calibration_csv(device: str = "iphone12") -> Path:
    return Path(str(resources.files("latency_luts") / "calibration" / f"{device}_published.csv"))


def load_published(path: str | Path, protocol: str | None = None) -> list[Published]:
    path = Path(path)
    if protocol is not None and protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {protocol!r} is not known; allowed: {', '.join(PROTOCOLS)}")
    try:
        rows = list(csv.DictReader(path.open()))
    except FileNotFoundError:
        raise UsageError(f"calibration file {path} does not exist") from None
    need = ("model", "timm_name", "input_size", "latency_ms", "protocol", "kind", "source")
    if not rows or any(c not in rows[0] for c in need):
        raise UsageError(f"calibration file {path} must have the columns {', '.join(need)}")
    out = []
    for i, r in enumerate(rows, start=2):
        try:
            item = Published(r["model"], r["timm_name"], int(r["input_size"]), float(r["latency_ms"]),
                             r["protocol"], r["kind"], r["source"])
        except ValueError:
            raise UsageError(f"calibration file {path} line {i}: input_size and latency_ms must be numbers") from None
        if protocol is None or item.protocol == protocol:
            out.append(item)
    if not out:
        raise UsageError(f"calibration file {path} has no rows of protocol {protocol}")
    return out


def trace_published(rows: Sequence[Published], progress: bool = False) -> list[list[OpRecord]]:
    from tqdm import tqdm

    traces: dict[tuple[str, int], list[OpRecord]] = {}
    for r in tqdm(rows, desc="tracing", unit="model", disable=not progress):
        if (r.timm_name, r.input_size) not in traces:
            traces[(r.timm_name, r.input_size)] = trace_ops(timm_model(r.timm_name), example_input(r.input_size))
    return [traces[(r.timm_name, r.input_size)] for r in rows]


# --------------------------------------------------------------------------------------------------- fitting


class _Arrays:
    """One model's ops as arrays, for fast evaluation inside the optimiser."""

    def __init__(self, records: Sequence[OpRecord]):
        kept = [r for r in records if r.category in CATEGORIES]
        self.category = np.array([CATEGORIES.index(r.category) for r in kept], dtype=np.int64)
        self.gflop = np.array([r.flops / 1e9 for r in kept])
        self.mb = np.array([r.bytes / 1e6 for r in kept])

    def predict(self, theta: np.ndarray) -> float:
        peak, bandwidth, per_op, fixed = np.exp(theta[:4])
        multiplier = np.exp(np.concatenate([[0.0], theta[4:]]))[self.category]  # CATEGORIES[0] is DENSE
        return fixed + float(np.sum(np.maximum(self.gflop / peak, self.mb * multiplier / bandwidth) + per_op))


_THETA0 = np.array([np.log(7.0), np.log(60.0), np.log(1e-3), np.log(0.2)] + [0.0] * len(MULTIPLIED))


def _fit_theta(models: Sequence[_Arrays], latency: np.ndarray, weight: np.ndarray) -> np.ndarray:
    from scipy.optimize import least_squares

    def residuals(theta: np.ndarray) -> np.ndarray:
        predicted = np.array([m.predict(theta) for m in models])
        return np.concatenate([weight * np.log(predicted / latency), PRIOR_STRENGTH * theta[4:]])

    best = None
    for seed in range(4):  # a few deterministic restarts: the max() makes the loss piecewise smooth
        start = _THETA0 + (np.random.RandomState(seed).randn(len(_THETA0)) * 0.5 if seed else 0.0)
        result = least_squares(residuals, start)
        if best is None or result.cost < best.cost:
            best = result
    return best.x


def _model_from_theta(device: str, theta: np.ndarray, fit: dict[str, Any]) -> CostModel:
    peak, bandwidth, per_op, fixed = (float(v) for v in np.exp(theta[:4]))
    multipliers = {c: float(np.exp(t)) for c, t in zip(MULTIPLIED, theta[4:])}
    return CostModel(device, peak, bandwidth, per_op, fixed, multipliers, fit)


def fit_cost_model(device: str, rows: Sequence[Published], traces: Sequence[Sequence[OpRecord]],
                   fit_info: dict[str, Any] | None = None) -> CostModel:
    arrays = [_Arrays(t) for t in traces]
    theta = _fit_theta(arrays, np.array([r.latency_ms for r in rows]), np.array([r.weight for r in rows]))
    return _model_from_theta(device, theta, dict(fit_info or {}))


# ------------------------------------------------------------------------------------- calibration report


def _macs_linear(macs: np.ndarray, latency: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Baseline: latency = a * GMACs + b, fitted on the same relative, weighted loss."""
    a = np.stack([macs, np.ones_like(macs)], axis=1) * (weight / latency)[:, None]
    (slope, intercept), *_ = np.linalg.lstsq(a, weight, rcond=None)
    return float(slope), float(intercept)


def _cross_validate(groups: Sequence[str], fit_predict) -> np.ndarray:
    groups = np.asarray(groups)
    predicted = np.zeros(len(groups))
    for g in dict.fromkeys(groups):
        held = groups == g
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
    arrays = [_Arrays(t) for t in traces]
    latency = np.array([r.latency_ms for r in rows])
    weight = np.array([r.weight for r in rows])
    macs = np.array([summarize(t)["macs_g"] for t in traces])

    def ours(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        theta = _fit_theta([a for a, k in zip(arrays, train) if k], latency[train], weight[train])
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
             **{f"{name}_{how}_ms": float(predictions[name][how][i]) for name in predictions for how in ("fit", "loo", "lofo")}}
            for i, (r, m) in enumerate(zip(rows, macs))
        ],
    }
    fit_info = {"source": source, "protocol": report["protocol"], "n_models": len(rows),
                "models": [r.timm_name for r in rows], "prior_strength": PRIOR_STRENGTH,
                "figure_weight": FIGURE_WEIGHT, "cv": {k: summary["cost_model"][k] for k in ("loo", "lofo")},
                "macs_linear_cv": {k: summary["macs_linear"][k] for k in ("loo", "lofo")}}
    theta = _fit_theta(arrays, latency, weight)
    return _model_from_theta(device, theta, fit_info), report


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


def plot_report(report: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["models"]
    published = [m["published_ms"] for m in models]
    fig, ax = plt.subplots(figsize=(6, 6))
    for name, marker in (("cost_model", "o"), ("macs_linear", "x")):
        mape = report["summary"][name]["lofo"]["mape"]
        ax.scatter(published, [m[f"{name}_lofo_ms"] for m in models], marker=marker,
                   label=f"{name} (leave-one-family-out MAPE {mape:.1f}%)")
    lo, hi = 0.8 * min(published), 1.25 * max(published)
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.fill_between([lo, hi], [0.9 * lo, 0.9 * hi], [1.1 * lo, 1.1 * hi], color="0.9", label="±10%")
    for m in models:
        ax.annotate(m["timm_name"], (m["published_ms"], m["cost_model_lofo_ms"]), fontsize=6)
    ax.set(xscale="log", yscale="log", xlabel="published latency (ms)", ylabel="predicted, family held out (ms)",
           title=f"{report['device']} cost model, protocol {report['protocol']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
