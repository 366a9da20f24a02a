"""Every figure nas draws, from data computed elsewhere (as Optuna's ``visualization`` takes a finished study).

Nothing here computes a result: each function takes plain numbers or records and writes one PNG atomically, so a
killed run never leaves half a picture. matplotlib is imported on first use with the non-interactive backend.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.fileio import PNG_SOFTWARE, atomic_output


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as staging:
        fig.savefig(staging, dpi=dpi, format="png", metadata={"Software": PNG_SOFTWARE})
    _pyplot().close(fig)
    return path


def plot_predicted_vs_measured(predicted: Sequence[float], measured: Sequence[float], path: str | Path,
                               title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = min(min(predicted), min(measured)) * 0.9, max(max(predicted), max(measured)) * 1.1
    xs = np.linspace(lo, hi, 2)
    ax.plot(xs, xs, "k-", lw=1, label="y = x")
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="tab:green", alpha=0.15, label="±10%", zorder=0)
    ax.scatter(measured, predicted, s=18, color="tab:blue", label="random archs")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured end to end (ms)")
    ax.set_ylabel("predicted from the table (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi=120)




def plot_calibration(report: dict[str, Any], path: str | Path) -> None:
    """Published against predicted latency with each family held out, cost model beside the MACs-linear baseline."""
    models = report["models"]
    published = [m["published_ms"] for m in models]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    for name, marker in (("cost_model", "o"), ("macs_linear", "x")):
        mape = report["summary"][name]["lofo"]["mape"]
        ax.scatter(published, [m[f"{name}_lofo_ms"] for m in models], marker=marker,
                   label=f"{name} (leave-one-family-out MAPE {mape:.1f}%)")
    lo, hi = 0.8 * min(published), 1.25 * max(published)
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    # the band under the points (zorder 0), not over them
    ax.fill_between([lo, hi], [0.9 * lo, 0.9 * hi], [1.1 * lo, 1.1 * hi], color="0.9", label="±10%", zorder=0)
    for m in models:
        ax.annotate(m["timm_name"], (m["published_ms"], m["cost_model_lofo_ms"]), fontsize=6)
    ax.set(xscale="log", yscale="log", xlabel="published latency (ms)", ylabel="predicted, family held out (ms)",
           title=f"{report['device']} cost model, protocol {report['protocol']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=120)


@dataclass(frozen=True)
class ParetoPanel:
    """One device's view of a search: its budget, its table's kind and its front (records, best first by latency).
    ``median_limit_ms``: under ``--guarantee``, what the median prediction must meet for the bound to meet the
    budget."""

    device: str
    budget_ms: float
    table_kind: str
    front: Sequence[Any]
    median_limit_ms: float | None = None


@dataclass(frozen=True)
class ParetoPlot:
    """What ``pareto.png`` shows, computed once by the search (as Optuna's ``_ParetoFrontInfo``): every record
    (``TrialRecord``s: ``latency_ms`` per device, ``objective``, ``feasible``), the winner, and a panel per budget
    device, the first device's first."""

    records: Sequence[Any]
    best: Any
    panels: Sequence[ParetoPanel]
    objective_label: str
    title: str
    guarantee: float | None = None


def plot_pareto(path: str | Path, plot: ParetoPlot) -> None:
    """Objective against each budget device's predicted latency: every record (feasible or not), the Pareto front,
    the budget and the winner; under ``--guarantee`` also the limit the prediction must meet for its upper bound to
    meet the budget, and the winner's upper bound."""
    plt = _pyplot()
    n = len(plot.panels)
    fig, axes = plt.subplots(1, n, figsize=(6.4 * n, 4.4), squeeze=False)
    for ax, panel in zip(axes[0], plot.panels):
        _pareto_panel(ax, plot, panel)
    fig.suptitle(plot.title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, dpi=120)


def _pareto_panel(ax: Any, plot: ParetoPlot, panel: ParetoPanel) -> None:
    # The legend lists only what can be seen: the winner's own point sits under its star, so records at the star
    # are left out, and a front of that one point is the star (a slimming path often ends in one feasible step,
    # which drew an invisible "meets every budget" dot and "Pareto front" line in the legend).
    best, device, budget_ms, guarantee = plot.best, panel.device, panel.budget_ms, plot.guarantee
    star = (best.latency_ms[device], best.objective)
    for feasible, colour, label in ((False, "#bbbbbb", "misses a budget"), (True, "#4c72b0", "meets every budget")):
        pts = [(r.latency_ms[device], r.objective) for r in plot.records if r.feasible == feasible]
        pts = [p for p in pts if p != star]
        if pts:
            ax.scatter(*zip(*pts), s=10, c=colour, label=label, alpha=0.7)
    if len({(r.latency_ms[device], r.objective) for r in panel.front} - {star}) >= 1:
        ax.step([r.latency_ms[device] for r in panel.front], [r.objective for r in panel.front], where="post",
                c="#c44e52", marker="o", ms=3, label="Pareto front")
    ax.axvline(budget_ms, ls="--", c="k", lw=1, label=f"budget {budget_ms:g} ms")
    if guarantee is not None and panel.median_limit_ms is not None:
        ax.axvline(panel.median_limit_ms, ls=":", c="k", lw=1,
                   label=f"prediction limit for the {guarantee:.0%} bound ({panel.median_limit_ms:.3g} ms)")
        upper = best.latency_ms[device] * budget_ms / panel.median_limit_ms
        ax.errorbar([best.latency_ms[device]], [best.objective], xerr=[[0], [upper - best.latency_ms[device]]],
                    c="#dd8452", capsize=3, lw=1, label=f"best: upper bound at {guarantee:.0%}")
    verified = getattr(best, "measured_ms", None)       # --verify: the winner is the best that measured in budget
    ax.scatter([best.latency_ms[device]], [best.objective], marker="*", s=160, c="#dd8452", zorder=5,
               label="best, verified by measurement (may sit below the predicted front)" if verified else "best")
    ax.set_xlabel(f"predicted latency on {device} (ms, {panel.table_kind} table)")
    ax.set_ylabel(plot.objective_label.split(" (")[0], fontsize=9)
    ax.set_title(f"front on {device}", fontsize=9)
    ax.legend(fontsize=8)


def plot_history(history: list[dict[str, Any]], path: str | Path, title: str) -> None:
    """Loss and the top-1 of each evaluated subnet against the epoch (``nas supernet train``)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_ax.plot(epochs, [h["loss"] for h in history], marker="o")
    loss_ax.set(xlabel="epoch", ylabel="loss (CE of the largest + KL of the others)")
    for name in history[-1]["top1"] if history else []:
        acc_ax.plot(epochs, [h["top1"].get(name) for h in history], marker="o", label=f"{name} subnet")
    acc_ax.set(xlabel="epoch", ylabel="top-1 (%), BatchNorm recalibrated")
    acc_ax.legend()
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=110)


def plot_rank_check(report: dict[str, Any], path: str | Path) -> None:
    """The ranking check (``nas supernet rank``): stand-alone top-1 of each arch (x, with the noise floor's
    seed-to-seed standard deviation as error bars) against its inherited top-1, the capacity proxy and the best
    zero-cost proxy (y), one panel each, with Kendall τ and its 95% interval in each title."""
    plt = _pyplot()
    archs, agreement = report["archs"], report["agreement"]
    truth = [a["standalone_top1"] for a in archs]
    noise = report["noise_floor"]["std"]
    zero_cost = [n for n in agreement if n not in ("inherited", "capacity", "params")]
    best_zero = max(zero_cost, key=lambda n: agreement[n]["kendall_tau"]["value"], default=None)
    panels = [("inherited", "inherited top-1 (%)"), ("capacity", "capacity proxy sqrt(params_M x GMACs)")]
    if best_zero:
        panels.append((best_zero, f"{best_zero} (zero-cost proxy, at init)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (key, label) in zip(np.atleast_1d(axes), panels):
        y = [a[key] for a in archs]
        ax.errorbar(truth, y, xerr=noise, fmt="o", ms=4, lw=0.8, capsize=2)
        for a, x, v in zip(archs, truth, y):
            ax.annotate(a["name"].replace("arch", ""), (x, v), fontsize=6, xytext=(3, 2), textcoords="offset points")
        tau = agreement[key]["kendall_tau"]
        ax.set(xlabel="stand-alone top-1 (%)", ylabel=label,
               title=f"{key}: tau {tau['value']:+.2f} [{tau['low']:+.2f}, {tau['high']:+.2f}]")
        ax.title.set_fontsize(9)
        if key == "inherited":
            lo, hi = min(truth + y) - 2, max(truth + y) + 2
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.5)
    fig.suptitle(f"{report['space']} on {report['data']}: {len(archs)} archs, noise floor std {noise:.2f} points "
                 f"(tau ceiling {report['noise_floor']['tau_ceiling']:.2f})", fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=110)


def plot_importance(importance: Any, path: str | Path) -> Path:
    """MetaPath importances (log scale, 1 = indifferent), one bar per position coloured by stage; a supernet's
    ``supernet.gumbel.Importance``."""
    plt = _pyplot()
    rows = importance.to_dict()["positions"]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(rows) + 2), 3.5))
    colours = plt.get_cmap("tab10")
    xs = np.arange(len(rows))
    ax.bar(xs, [r["importance"] for r in rows], color=[colours(r["stage"] % 10) for r in rows])
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{r['stage'] + 1}.{r['position'] + 1}" for r in rows], rotation=90, fontsize=7)
    ax.set_xlabel("stage.position")
    ax.set_ylabel("importance p(kept) / p(identity)")
    stages = ", ".join(f"S{s + 1} {v:.2f}" for s, v in enumerate(importance.stages()))
    ax.set_title(f"MetaPath importance of {importance.space}\nstage importances: {stages}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi=110)
