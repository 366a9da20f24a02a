"""One search, end to end: settings -> strategy -> run directory.

``RUN/`` holds ``run.json`` (settings and the best arch), ``best_arch.json``, ``trials.csv`` (every trial, or every
slimming step), ``pareto.json`` + ``pareto.png`` (objective vs the first device's latency), ``study.db`` (the
Optuna study, unless ``--storage`` puts it elsewhere), ``slim.json`` (slimming) and ``export/`` (the winner as a
PyTorch state dict with its model card, via ``nas.export``).
"""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.fileio import atomic_output, write_json_atomic
from nas.search.budgets import Budgets
from nas.search.objectives import Objective
from nas.space import SearchSpace

STRATEGIES = ("optuna", "slim")


@dataclass
class SearchRequest:
    space: SearchSpace
    objective: Objective
    budgets: Budgets
    strategy: str = "optuna"
    sampler: str = "tpe"
    trials: int = 100
    seed: int | None = 0
    storage: str | None = None
    study: str | None = None
    out: Path | None = None
    workers: int = 0
    ray_address: str | None = None
    export_formats: list[str] = field(default_factory=lambda: ["pt"])
    progress: bool = True
    verify: int = 0                 # measure up to this many top candidates end to end on measurable devices

    def study_name(self) -> str:
        if self.study:
            return self.study
        budgets = "_".join(f"{b.device}-{b.budget_ms:g}ms" for b in self.budgets.items)
        method = self.sampler if self.strategy == "optuna" else "slim"
        return f"{self.space.name}_{budgets}_{self.objective.name}_{method}_seed{self.seed}"


def _records_from_trials(study) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    records = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        records.append({"number": t.number, "objective": t.values[0], **t.user_attrs["eval"],
                        "worker_pid": t.user_attrs.get("worker_pid")})
    return records


def _records_from_steps(steps: list[dict[str, Any]], budgets: Budgets) -> list[dict[str, Any]]:
    return [{"number": i, "action": s["action"], "objective": s["objective"], "latency_ms": s["latency_ms"],
             "feasible": budgets.feasible(s["latency_ms"]), "arch": s["arch"]} for i, s in enumerate(steps)]


def best_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The feasible record with the highest objective (ties: lower first-device latency, then earlier)."""
    feasible = [r for r in records if r["feasible"]]
    if not feasible:
        return None
    first = next(iter(feasible[0]["latency_ms"]))
    return max(feasible, key=lambda r: (r["objective"], -r["latency_ms"][first], -r["number"]))


def pareto_front(records: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """Feasible records no other feasible record beats on both objective (higher) and latency (lower)."""
    front, best_so_far = [], float("-inf")
    for r in sorted((r for r in records if r["feasible"]), key=lambda r: (r["latency_ms"][device], -r["objective"])):
        if r["objective"] > best_so_far:
            front.append(r)
            best_so_far = r["objective"]
    return front


def run_search(req: SearchRequest) -> dict[str, Any]:
    from tqdm import tqdm

    from nas.search.evaluate import make_evaluator

    started = time.perf_counter()
    if req.strategy not in STRATEGIES:
        raise UsageError(f"--strategy {req.strategy!r}: accepted {', '.join(STRATEGIES)}")
    req.budgets.require_reachable(req.space)
    name = req.study_name()
    out = Path(req.out) if req.out else Path("runs") / name
    out.mkdir(parents=True, exist_ok=True)
    storage = req.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    primary = req.budgets.primary.device
    best_seen: dict[str, Any] = {}

    def postfix(record_objective: float, latencies: dict[str, float]) -> None:
        if req.budgets.feasible(latencies) and record_objective > best_seen.get("objective", float("-inf")):
            best_seen.update(objective=record_objective, latency=latencies[primary])
        if best_seen:
            bar.set_postfix_str(f"best {best_seen['objective']:.4g} at {best_seen['latency']:.3f} ms on {primary}")

    evaluator = make_evaluator(req.objective, req.workers, req.ray_address)
    try:
        if req.strategy == "optuna":
            from nas.search.optuna_search import StudySettings, run_study

            settings = StudySettings(req.space, req.objective, req.budgets, req.sampler, req.seed, storage, name,
                                     req.trials)
            bar = tqdm(total=req.trials, desc=f"search ({req.sampler})", unit="trial", disable=not req.progress)

            def on_trial(t) -> None:
                bar.update(1)
                postfix(t.values[0], t.user_attrs["eval"]["latency_ms"])

            study = run_study(settings, evaluator, on_trial)
            bar.close()
            records = _records_from_trials(study)
        else:
            from nas.search.slim import slim

            bar = tqdm(desc="slimming", unit="step", disable=not req.progress)

            def on_step(step) -> None:
                bar.update(1)
                postfix(step["objective"], step["latency_ms"])

            steps = slim(req.space, req.objective, req.budgets, evaluator, out / "slim.json", on_step)
            bar.close()
            records = _records_from_steps(steps, req.budgets)
    finally:
        evaluator.close()

    best = best_record(records)
    if best is None:
        raise RuntimeError(f"no trial met every budget ({req.budgets.describe()}) in {len(records)} trials")
    verification = verify_winner(records, req) if req.verify else None
    if verification and verification["winner"] is not None:
        best = verification["winner"]
    front = pareto_front(records, primary)
    result = {
        "best": {"arch": best["arch"], "latency_ms": best["latency_ms"][primary], "latencies_ms": best["latency_ms"],
                 "objective": best["objective"], "objective_name": req.objective.name,
                 "objective_label": req.objective.label, "objective_is_accuracy": req.objective.is_accuracy,
                 "trial": best["number"], **({"details": best["details"]} if best.get("details") else {}),
                 **({"measured_ms": best["measured_ms"]} if "measured_ms" in best else {})},
        "out": str(out), "strategy": req.strategy, "sampler": req.sampler if req.strategy == "optuna" else None,
        "seed": req.seed, "space": req.space.name, "study": name if req.strategy == "optuna" else None,
        "storage": storage if req.strategy == "optuna" else None,
        "budgets": [b.to_dict() for b in req.budgets.items], "trials": len(records),
        "feasible": sum(r["feasible"] for r in records), "pareto_size": len(front),
        "workers": evaluator.workers if req.workers or req.ray_address else 0, "wall_s": None,
    }
    if verification:
        result["verification"] = {k: v for k, v in verification.items() if k != "winner"}
    write_json_atomic(out / "best_arch.json", best["arch"])
    _write_trials_csv(out / "trials.csv", records, req.budgets)
    write_json_atomic(out / "pareto.json", {"objective": req.objective.name, "device": primary, "front": front})
    _plot_pareto(out / "pareto.png", records, front, best, req)
    result["wall_s"] = round(time.perf_counter() - started, 2)
    write_json_atomic(out / "run.json", result)
    if req.export_formats:
        result["export"] = _export_winner(best["arch"], req, out)
        result["wall_s"] = round(time.perf_counter() - started, 2)
        write_json_atomic(out / "run.json", result)
    return result


def verify_winner(records: list[dict[str, Any]], req: SearchRequest) -> dict[str, Any]:
    """Measure the best feasible candidates end to end on every budget device that can be measured here, best
    objective first, and return the first whose measured latencies all meet their budgets.

    A search maximises the objective against *predicted* latency, so it favours archs the table underestimates
    (the optimizer's curse); measuring the finalists removes that bias where the hardware is at hand."""
    from nas.latency.build import measure_arch
    from nas.latency.devices import get_device

    local = [b for b in req.budgets.items if get_device(b.device).make_backend().available()[0]]
    if not local:
        return {"devices": [], "checked": [], "winner": None,
                "note": "no budget device can be measured on this machine"}
    candidates = sorted((r for r in records if r["feasible"]), key=lambda r: -r["objective"])
    seen, checked = set(), []
    for record in candidates:
        key = json.dumps(record["arch"], sort_keys=True)
        if key in seen:
            continue
        if len(checked) >= req.verify:
            break
        seen.add(key)
        arch = req.space.arch_from_dict(record["arch"])
        measured = {b.device: measure_arch(get_device(b.device), arch, req.space).median_ms for b in local}
        ok = all(measured[b.device] <= b.budget_ms for b in local)
        checked.append({"trial": record["number"], "objective": record["objective"],
                        "predicted_ms": {b.device: record["latency_ms"][b.device] for b in local},
                        "measured_ms": measured, "meets_budgets": ok})
        if ok:
            return {"devices": [b.device for b in local], "checked": checked,
                    "winner": {**record, "measured_ms": measured}}
    return {"devices": [b.device for b in local], "checked": checked, "winner": None,
            "note": "no measured candidate met every budget; the winner is the best by prediction"}


def _export_winner(arch_dict: dict[str, Any], req: SearchRequest, out: Path) -> dict[str, Any]:
    from nas.export import build_subnet, export_subnet, run_notes

    supernet = getattr(req.objective, "checkpoint", None)
    sub = build_subnet(req.space.arch_from_dict(arch_dict), supernet)
    report = export_subnet(sub, out / "export", req.export_formats, notes=run_notes(out), progress=False)
    return {"dir": str(out / "export"), "ok": report["ok"], "files": report["files"]}


def _write_trials_csv(path: Path, records: list[dict[str, Any]], budgets: Budgets) -> None:
    devices = [b.device for b in budgets.items]
    detail_keys = sorted({k for r in records for k in r.get("details", {})})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    extra = ["action"] if any("action" in r for r in records) else []
    writer.writerow(["number", *extra, "objective", *[f"latency_ms_{d}" for d in devices], "feasible",
                     *detail_keys, "worker_pid", "arch"])
    for r in records:
        writer.writerow([r["number"], *[r.get("action", "") for _ in extra], f"{r['objective']:.6g}",
                         *[f"{r['latency_ms'][d]:.4f}" for d in devices], int(r["feasible"]),
                         *[f"{r.get('details', {}).get(k, float('nan')):.6g}" for k in detail_keys],
                         r.get("worker_pid") or "", json.dumps(r["arch"], separators=(",", ":"))])
    with atomic_output(path) as staging:
        staging.write_text(buffer.getvalue())


def _plot_pareto(path: Path, records, front, best, req: SearchRequest) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    device = req.budgets.primary.device
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for feasible, colour, label in ((False, "#bbbbbb", "misses a budget"), (True, "#4c72b0", "meets every budget")):
        pts = [(r["latency_ms"][device], r["objective"]) for r in records if r["feasible"] == feasible]
        if pts:
            ax.scatter(*zip(*pts), s=10, c=colour, label=label, alpha=0.7)
    if front:
        ax.step([r["latency_ms"][device] for r in front], [r["objective"] for r in front], where="post",
                c="#c44e52", label="Pareto front")
    ax.axvline(req.budgets.primary.budget_ms, ls="--", c="k", lw=1, label=f"budget {req.budgets.primary.budget_ms:g} ms")
    ax.scatter([best["latency_ms"][device]], [best["objective"]], marker="*", s=160, c="#dd8452", zorder=5,
               label="best")
    ax.set_xlabel(f"predicted latency on {device} (ms, {req.budgets.primary.predictor.kind} table)")
    ax.set_ylabel(req.objective.label.split(" (")[0], fontsize=9)
    ax.set_title(f"{req.strategy}{'/' + req.sampler if req.strategy == 'optuna' else ''}: {len(records)} "
                 f"{'trials' if req.strategy == 'optuna' else 'steps'}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as staging:
        fig.savefig(staging, dpi=120, format="png")
    plt.close(fig)
