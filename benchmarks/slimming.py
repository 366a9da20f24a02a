"""EfficientFormer's search, measured: importance-guided slimming against exhaustive slimming and TPE, with the same
objective (inherited top-1 of a supernet trained with --gumbel) and the same latency table.

For each of three budgets (25%, 50% and 75% of the way from the fastest arch of the space to the largest, on an
estimated iPhone 12 table so that every method prices archs identically): objective evaluations used, the winner's
inherited top-1 and latency, and wall time. TPE is given as many trials as exhaustive slimming evaluated (its
seeded first trial is the fastest arch). Also counts the candidate actions at the largest arch of the
`efficientformer` space (no evaluation), where the gap between the two slimming modes is widest.

    python benchmarks/slimming.py [--space tiny --epochs 6 --supernet CKPT]
    python benchmarks/slimming.py --paper-supernet ef-gumbel.pt [--paper-budget-ms 1.6]

Targets (issue 15): guided slimming uses >= 10x fewer evaluations than exhaustive and lands within 1 point of its
top-1.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.latency.costmodel.estimate import estimate_table  # noqa: E402
from nas.latency.costmodel.model import load_cost_model  # noqa: E402
from nas.latency.devices import get_device  # noqa: E402
from nas.search.budgets import Budgets  # noqa: E402
from nas.search.objectives import SupernetAccuracy  # noqa: E402
from nas.search.optuna_settings import OptunaSettings  # noqa: E402
from nas.search.records import best_record  # noqa: E402
from nas.search.slim import SlimSettings, actions, guided_actions, slim  # noqa: E402
from nas.search.strategy import SearchContext, get_strategy  # noqa: E402
from nas.search.workers import Evaluator, LocalEvaluator  # noqa: E402
from nas.space import load_space  # noqa: E402
from supernet.checkpoint import load_importance  # noqa: E402
from supernet.config import TrainConfig  # noqa: E402
from supernet.gumbel import Importance  # noqa: E402
from supernet.supernet import Supernet  # noqa: E402
from supernet.train import train_supernet  # noqa: E402


class Counting(Evaluator):
    def __init__(self, inner: Evaluator):
        self.inner, self.count = inner, 0

    def map(self, archs):
        self.count += len(archs)
        return self.inner.map(archs)


def run_slim(space, objective, budgets, mode: str, importance, folder: Path) -> dict[str, Any]:
    started = time.perf_counter()
    state = slim(space, objective, budgets, LocalEvaluator(objective), folder / f"slim-{mode}.json",
                 settings=SlimSettings(actions=mode), importance=importance)
    last = state["steps"][-1]
    return {"evaluations": state["evaluations"], "steps": len(state["steps"]) - 1, "top1": last["objective"],
            "latency_ms": last["latency_ms"][budgets.primary.device], "arch": last["arch"],
            "wall_s": time.perf_counter() - started}


def run_tpe(space, objective, budgets, trials: int, folder: Path) -> dict[str, Any]:
    started = time.perf_counter()
    evaluator = Counting(LocalEvaluator(objective))
    ctx = SearchContext(space, objective, budgets, evaluator, folder, "tpe", trials=trials, seed=0,
                        settings=OptunaSettings("tpe", f"sqlite:///{folder / 'tpe.db'}"))
    records = get_strategy("optuna").run(ctx)
    best = best_record(records)
    assert best is not None
    return {"evaluations": evaluator.count, "trials": trials, "top1": best.objective,
            "latency_ms": best.latency_ms[budgets.primary.device], "arch": best.arch.to_dict(),
            "wall_s": time.perf_counter() - started}


def candidate_counts(space_name: str) -> dict[str, int]:
    """Distinct candidates per step at the largest arch of a space, each mode (importances of an untrained α are
    uniform; the guided set's size does not depend on their values)."""
    space = load_space(space_name)
    arch = space.largest()
    importance = Importance.of(Supernet(space))
    return {"all": len({c.to_json() for _, c in actions(arch, space)}),
            "importance": len({c.to_json() for _, c in guided_actions(arch, space, importance)})}


def paper_space_counts(ckpt: Path, budget_ms: float) -> dict[str, Any]:
    """Guided vs exhaustive slimming of a `--gumbel` supernet of the paper's space to ``budget_ms`` on the shipped
    iPhone 12 table, with the capacity proxy as the objective (inherited top-1 at 224 px costs seconds per
    evaluation on this CPU, thousands of them for the exhaustive run): evaluations, steps and the proxy reached."""
    from nas.search.objectives import CapacityProxy

    importance = load_importance(ckpt)
    space = load_space(importance.space)
    budgets = Budgets.load(space, [budget_ms], ["iphone12"])
    folder = Path(tempfile.mkdtemp(prefix="slimming-paper-"))
    out = {}
    for mode in ("importance", "all"):
        objective = CapacityProxy(space)
        out[mode] = run_slim(space, objective, budgets, mode, importance if mode == "importance" else None, folder)
    out["evaluation_ratio"] = out["all"]["evaluations"] / out["importance"]["evaluations"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="tiny")
    p.add_argument("--data", default="builtin:digits")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--supernet", help="a --gumbel checkpoint to use instead of training one")
    p.add_argument("--fractions", default="0.25,0.5,0.75")
    p.add_argument("--out", default="bench_out/slimming.json")
    p.add_argument("--paper-supernet", metavar="CKPT",
                   help="only the paper-space part: guided vs exhaustive slimming of this --gumbel supernet of the "
                        "efficientformer space to --paper-budget-ms, capacity proxy as objective")
    p.add_argument("--paper-budget-ms", type=float, default=1.6)
    args = p.parse_args()
    if args.paper_supernet:
        result = paper_space_counts(Path(args.paper_supernet), args.paper_budget_ms)
        print(f"{'mode':<11} {'evals':>6} {'steps':>6} {'proxy':>7} {'latency ms':>10} {'wall s':>7}")
        for mode in ("importance", "all"):
            m = result[mode]
            print(f"{mode:<11} {m['evaluations']:>6} {m['steps']:>6} {m['top1']:>7.3f} {m['latency_ms']:>10.4f} "
                  f"{m['wall_s']:>7.1f}")
        print(f"exhaustive / guided evaluations: {result['evaluation_ratio']:.1f}x")
        out = Path(args.out).with_name("slimming_paper_space.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(f"wrote {out}")
        return

    space = load_space(args.space)
    work = Path(tempfile.mkdtemp(prefix="slimming-"))
    ckpt = Path(args.supernet) if args.supernet else work / "gumbel.pt"
    train_s = 0.0
    if not args.supernet:
        started = time.perf_counter()
        cfg = TrainConfig(space=args.space, data=args.data, epochs=args.epochs, batch_size=32, gumbel=True,
                          alpha_lr=0.02)
        train_supernet(cfg, ckpt, progress=True)
        train_s = time.perf_counter() - started
    importance = load_importance(ckpt)
    table = work / f"iphone12-{args.space}.json"
    estimate_table(get_device("iphone12"), space, load_cost_model("iphone12"), table, progress=False)
    probe = Budgets.load(space, [1e9], ["iphone12"], {"iphone12": str(table)})
    fastest, largest = probe.fastest(space)["iphone12"], probe.latencies(space.largest())["iphone12"]

    rows = []
    for fraction in (float(f) for f in args.fractions.split(",")):
        budget = round(fastest + fraction * (largest - fastest), 4)
        budgets = Budgets.load(space, [budget], ["iphone12"], {"iphone12": str(table)})
        folder = work / f"b{fraction}"
        folder.mkdir()
        objective = SupernetAccuracy(ckpt, args.data)
        guided = run_slim(space, objective, budgets, "importance", importance, folder)
        exhaustive = run_slim(space, objective, budgets, "all", None, folder)
        tpe = run_tpe(space, objective, budgets, exhaustive["evaluations"], folder)
        rows.append({"fraction": fraction, "budget_ms": budget, "guided": guided, "exhaustive": exhaustive,
                     "tpe": tpe, "evaluation_ratio": exhaustive["evaluations"] / guided["evaluations"],
                     "top1_gap": exhaustive["top1"] - guided["top1"]})
        print(f"budget {budget:.4f} ms: guided {guided['evaluations']} evals top-1 {guided['top1']:.2f}; exhaustive "
              f"{exhaustive['evaluations']} evals top-1 {exhaustive['top1']:.2f}; TPE {tpe['evaluations']} evals "
              f"top-1 {tpe['top1']:.2f}", file=sys.stderr)
    counts = {name: candidate_counts(name) for name in (args.space, "efficientformer", "efficientformer_hybrid")}

    print(f"\nspace {args.space}, objective: inherited top-1 on {args.data} of a --gumbel supernet "
          f"({args.epochs} epochs{', given' if args.supernet else f', trained in {train_s:.0f} s'}); iPhone 12 "
          "estimated table\n")
    print(f"{'budget ms':>9} | {'method':<10} {'evals':>6} {'steps':>6} {'top-1 %':>8} {'latency ms':>10} "
          f"{'wall s':>7}")
    for r in rows:
        for name in ("guided", "exhaustive", "tpe"):
            m = r[name]
            print(f"{r['budget_ms']:>9.4f} | {name:<10} {m['evaluations']:>6} {m.get('steps', '-'):>6} "
                  f"{m['top1']:>8.2f} {m['latency_ms']:>10.4f} {m['wall_s']:>7.1f}")
        print(f"{'':>9} | exhaustive / guided evaluations: {r['evaluation_ratio']:.1f}x; top-1 gap "
              f"{r['top1_gap']:+.2f} points")
    print("\ndistinct candidates per step at the largest arch (all / importance-guided): "
          + "; ".join(f"{k} {v['all']} / {v['importance']}" for k, v in counts.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"space": args.space, "data": args.data, "epochs": args.epochs,
                                          "train_s": train_s, "rows": rows, "candidates_at_largest": counts},
                                         indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
