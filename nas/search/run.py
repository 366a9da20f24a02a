"""One search, end to end: settings -> strategy -> run directory.

``RUN/`` holds ``run.json`` (settings and the best arch), ``best_arch.json``, ``trials.csv`` (every trial, or every
slimming step), ``pareto.json`` + ``pareto.png`` (objective vs the first device's latency), ``study.log``
(the Optuna study as a journal file, unless ``--storage`` puts it elsewhere), ``slim.json`` (slimming) and
``export/`` (the winner as a PyTorch state dict with its model card, via ``nas.export``).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.fileio import OWNER_MARK, check_name, mark_owned, refuse_links, write_json_atomic
from nas.plots import ParetoPanel, ParetoPlot, plot_pareto
from nas.search.budgets import Budgets
from nas.search.objectives import Objective
from nas.search.records import TrialRecord, best_record, pareto_front, pareto_front_nd, write_trials_csv
from nas.search.strategy import Progress, SearchContext, Strategy, get_strategy
from nas.search.verify import Verification, verify_winner
from nas.search.workers import Evaluator, LocalEvaluator
from nas.space import Arch, SearchSpace

# what a search writes in its run directory (none of them may be a link planted there)
# (with the strategy's own ``state_files``)
RUN_FILES = ("run.json", "best_arch.json", "trials.csv", "pareto.json", "pareto.png", "export")


@dataclass
class SearchRequest:
    space: SearchSpace
    objective: Objective
    budgets: Budgets
    strategy: str = "optuna"
    trials: int = 100
    seed: int | None = 0
    out: Path | None = None
    workers: int = 0
    ray_address: str | None = None
    export_formats: list[str] = field(default_factory=lambda: ["pt"])
    progress: bool = True
    verify: int = 0                 # measure up to this many top candidates end to end on measurable devices
    settings: object | None = None  # the strategy's own settings, of the type its entry names (None: defaults)

    def run_name(self, strategy: Strategy) -> str:
        """The name its settings give (Optuna's ``--study``), else one made of the settings, so that the same
        settings resume the same run."""
        given = strategy.given_run_name(self.settings)
        if given:
            return given
        budgets = "_".join([f"{b.device}{'-auto' if b.by_precision else ''}-{b.budget_ms:g}ms"
                            for b in self.budgets.items]
                           + [f"{k}-{v:g}" for k, v in self.budgets.size_limits.items()]
                           + ([f"p{self.budgets.guarantee:g}"] if self.budgets.guarantee is not None else []))
        method = strategy.run_label(self.settings)
        return f"{self.space.name}_{budgets}_{self.objective.name}_{method}_seed{self.seed}"


@dataclass
class SearchResult:
    """What a search found and where it wrote it; ``to_dict()`` is ``run.json`` (and ``nas search --json``)."""

    request: SearchRequest
    strategy: Strategy
    records: list[TrialRecord]
    best: TrialRecord                      # the winner: best by prediction, or the verified one with --verify
    front: list[TrialRecord]               # feasible Pareto front against the first device's latency
    out: Path
    name: str                              # the run's name (an Optuna study's)
    workers: int
    verification: Verification | None = None
    export: dict[str, Any] | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        req, best = self.request, self.best
        primary = req.budgets.primary.device
        result: dict[str, Any] = {
            "best": {"arch": best.arch.to_dict(), "latency_ms": best.latency_ms[primary],
                     "latencies_ms": best.latency_ms,
                     "objective": best.objective, "objective_name": req.objective.name,
                     "objective_label": req.objective.label, "objective_is_accuracy": req.objective.is_accuracy,
                     "trial": best.number, **({"details": best.details} if best.details else {}),
                     "precisions": req.budgets.precisions(best.arch),
                     **({"measured_ms": best.measured_ms} if best.measured_ms is not None else {}),
                     **({"guarantee": req.budgets.guarantee,
                         "latency_upper_ms": req.budgets.upper_bounds(best.latency_ms)}
                        if req.budgets.guarantee is not None else {})},
            "out": str(self.out), "strategy": req.strategy, "seed": req.seed, "space": req.space.name,
            **(self.strategy.run_keys or {}),
            "budgets": [b.to_dict() for b in req.budgets.items], "trials": len(self.records),
            **({"size_limits": req.budgets.size_limits} if req.budgets.size_limits else {}),
            "feasible": sum(r.feasible for r in self.records), "pareto_size": len(self.front),
            "workers": self.workers, "wall_s": round(self.wall_s, 2),
        }
        if self.strategy.summary:
            result[self.strategy.name] = self.strategy.summary
        result["mixers"] = mixer_usage(req.space.mixers, best.arch, [r.arch for r in self.records])
        if self.verification:
            result["verification"] = self.verification.to_dict()
        if self.export is not None:
            result["export"] = self.export
        return result


def mixer_usage(mixers: tuple[str, ...], winner: Arch, tried: list[Arch]) -> dict[str, Any]:
    """Which token mixers the winner's MB3D blocks use, and how often each was tried: the number of trials
    (or slimming steps) with at least one block of it, and the number of such blocks over all of them."""
    return {"winner": {m: winner.mixers.count(m) for m in mixers if m in winner.mixers},
            "trials_using": {m: sum(m in a.mixers for a in tried) for m in mixers},
            "blocks_tried": {m: sum(a.mixers.count(m) for a in tried) for m in mixers}}


def run_search(req: SearchRequest) -> SearchResult:
    """Run the strategy, pick (and optionally verify) the winner, write the run directory, export the winner."""
    started = time.perf_counter()
    strategy = get_strategy(req.strategy)
    req.budgets.require_reachable(req.space)
    name = check_name(req.run_name(strategy), "--study")
    out = Path(req.out) if req.out else Path("runs") / name
    refuse_links(out, RUN_FILES + strategy.state_files)
    strategy.check(req.settings)
    from nas.search.workers import make_evaluator

    evaluator = make_evaluator(req.objective, req.workers, req.ray_address)   # joins Ray: refused before any file
    made = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)   # the first folder made here
    out.mkdir(parents=True, exist_ok=True)
    mark_owned(out, "search")
    try:
        records, workers = _run_strategy(req, strategy, out, name, evaluator)
    except UsageError:          # refused before a trial ran (a corrupt --storage, ...): leave no empty run folder
        if made is not None and [p.name for p in out.iterdir()] == [OWNER_MARK]:
            shutil.rmtree(made)
        raise
    best = best_record(records)
    if best is None:
        raise RuntimeError(f"no trial met every budget ({req.budgets.describe()}) in {len(records)} trials")
    verification = verify_winner(records, req.space, req.budgets, req.verify) if req.verify else None
    if verification and verification.winner is not None:
        best = verification.winner
    result = SearchResult(req, strategy, records, best, pareto_front(records, req.budgets.primary.device), out,
                          name, workers, verification)
    _write_run_dir(result)
    result.wall_s = time.perf_counter() - started
    write_json_atomic(out / "run.json", result.to_dict())
    if req.export_formats:
        result.export = _export_winner(best.arch, req, out)
        result.wall_s = time.perf_counter() - started
        write_json_atomic(out / "run.json", result.to_dict())
    return result


def _run_strategy(req: SearchRequest, strategy: Strategy, out: Path, name: str,
                  evaluator: Evaluator) -> tuple[list[TrialRecord], int]:
    """The strategy's records, with a progress bar showing the best feasible record so far; and how many Ray
    workers evaluated them (0: this process)."""
    from tqdm import tqdm

    primary = req.budgets.primary.device
    bars: list[Any] = []          # made at the first record: a refusal before any trial prints no bar
    progress: list[Progress] = []
    best_seen: list[TrialRecord] = []
    count = [0]

    def on_record(record: TrialRecord) -> None:
        count[0] += 1
        if not bars:                # the strategy says how its bar counts (trials, or slimming's ms to shed)
            progress.append(strategy.progress(ctx, record))
            bars.append(tqdm(total=progress[0].total, desc=progress[0].desc, unit=progress[0].unit,
                             disable=not req.progress))
        bar = bars[0]
        bar.n = progress[0].done(record, count[0])
        bar.refresh()
        if record.feasible and (not best_seen or record.objective > best_seen[0].objective):
            best_seen[:] = [record]
        if best_seen:
            bar.set_postfix_str(f"best {best_seen[0].objective:.4g} at {best_seen[0].latency_ms[primary]:.3f} ms "
                                f"on {primary}")

    ctx = SearchContext(req.space, req.objective, req.budgets, evaluator, out, name, req.trials, req.seed,
                        on_record, settings=req.settings)
    try:
        return strategy.run(ctx), (0 if isinstance(evaluator, LocalEvaluator) else evaluator.workers)
    finally:
        for bar in bars:
            bar.close()
        evaluator.close()


def _write_run_dir(result: SearchResult) -> None:
    """best_arch.json, trials.csv, pareto.json and pareto.png."""
    req, out, primary = result.request, result.out, result.request.budgets.primary.device
    write_json_atomic(out / "best_arch.json", result.best.arch.to_dict())
    write_trials_csv(out / "trials.csv", result.records, [b.device for b in req.budgets.items],
                     req.budgets.precisions if req.budgets.auto else None)
    pareto: dict[str, Any] = {"objective": req.objective.name, "device": primary,
                              "front": [r.to_dict() for r in result.front]}
    if all("params_m" in r.details for r in result.records):   # sizes known: the objective-latency-size front too
        pareto["front_with_size"] = [r.to_dict() for r in pareto_front_nd(result.records, primary)]
    if len(req.budgets.items) > 1:      # a budget on each of several devices: the front on each of them
        pareto["front_by_device"] = {b.device: [r.to_dict() for r in pareto_front(result.records, b.device)]
                                     for b in req.budgets.items}
    if result.strategy.records_form_a_path:   # slimming: its whole path, step by step
        pareto["path"] = [r.to_dict() for r in result.records]
    write_json_atomic(out / "pareto.json", pareto)
    label = result.strategy.title(req.settings)
    panels = [ParetoPanel(b.device, b.budget_ms, b.predictor.kind,
                          result.front if b is req.budgets.primary else pareto_front(result.records, b.device),
                          b.limit_ms) for b in req.budgets.items]
    plot_pareto(out / "pareto.png", ParetoPlot(result.records, result.best, panels, req.objective.label,
                                               f"{label}: {len(result.records)} {result.strategy.unit}s",
                                               req.budgets.guarantee))


def _export_winner(arch: Arch, req: SearchRequest, out: Path) -> dict[str, Any]:
    from nas.export.card import run_notes
    from nas.export.exporter import export_subnet
    from nas.export.subnet import build_subnet

    sub = build_subnet(arch, req.objective.checkpoint, space=req.space)
    report = export_subnet(sub, out / "export", req.export_formats, notes=run_notes(out), progress=False)
    return {"dir": str(out / "export"), "ok": report["ok"], "files": report["files"]}
