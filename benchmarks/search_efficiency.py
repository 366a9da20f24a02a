"""How many trials does each strategy need? The capacity proxy under an iPhone 12 budget (the main command's
setting): the best objective among 20,000 random feasible-or-not archs is the reference; for random search, TPE,
NSGA-II (Optuna, in-memory storage), Once-for-All's evolution (``--strategy evolution``, its default settings) and
several seeds, count the trials until a feasible trial reaches 99% of it, and the best feasible objective after 100
trials (the default ``--trials``). Slimming walks one path and has no trial budget: its row is the objective
evaluations it spends and where it ends. Also times the main command end to end.

    python benchmarks/search_efficiency.py [--budget-ms 1.6 --device iphone12 --seeds 5]

Targets: TPE and NSGA-II need >= 3x fewer trials than random search; `nas search --budget-ms 1.6 --device
iphone12` takes <= 30 s on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import optuna  # noqa: E402

from nas.search.budgets import Budgets  # noqa: E402
from nas.search.encoding import suggest_arch  # noqa: E402
from nas.search.objectives import CapacityProxy  # noqa: E402
from nas.search.optuna_search import make_sampler  # noqa: E402
from nas.space import load_space  # noqa: E402


def reference_best(space, objective, budgets, n: int, seed: int) -> tuple[float, int]:
    rng = random.Random(seed)
    best, feasible = float("-inf"), 0
    for _ in range(n):
        arch = space.sample(rng=rng)
        if budgets.feasible(budgets.latencies(arch)):
            feasible += 1
            best = max(best, objective(arch))
    return best, feasible


AT_TRIALS = 100      # nas search's default --trials


class Tracker:
    """Counts trials as a search makes them: the first that reaches ``target`` (feasible), and the best feasible
    objective after ``AT_TRIALS``; raises ``Done`` once both are known."""

    class Done(Exception):
        pass

    def __init__(self, target: float):
        self.target, self.count, self.best = target, 0, float("-inf")
        self.reached: int | None = None
        self.best_at: float | None = None

    def add(self, value: float, feasible: bool) -> None:
        self.count += 1
        if feasible:
            self.best = max(self.best, value)
            if value >= self.target and self.reached is None:
                self.reached = self.count
        if self.count == AT_TRIALS:
            self.best_at = self.best
        if self.reached is not None and self.best_at is not None:
            raise Tracker.Done


def run_optuna(sampler: str, seed: int, tracker: Tracker, space, objective, budgets, max_trials: int) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"] if sampler == "nsga2" else ["maximize"],
                                sampler=make_sampler(sampler, seed))
    device = budgets.primary.device
    for _ in range(max_trials):
        trial = study.ask()
        arch = suggest_arch(trial, space)
        latencies = budgets.latencies(arch)
        for b, v in zip(budgets.items, budgets.violations(latencies)):
            trial.set_constraint(f"latency_{b.device}", v)
        value = objective(arch)
        study.tell(trial, [value, latencies[device]] if sampler == "nsga2" else [value])
        tracker.add(value, budgets.feasible(latencies))


def run_evolution(seed: int, tracker: Tracker, space, objective, budgets, max_trials: int) -> None:
    """``nas search --strategy evolution`` with its default settings, through the strategy itself."""
    import tempfile

    from nas.search.evolution import EvolutionStrategy
    from nas.search.strategy import SearchContext
    from nas.search.workers import LocalEvaluator

    ctx = SearchContext(space, objective, budgets, LocalEvaluator(objective), Path(tempfile.mkdtemp()), "bench",
                        trials=max_trials, seed=seed,
                        on_record=lambda record: tracker.add(record.objective, record.feasible))
    EvolutionStrategy().run(ctx)


def trials_to_reach(method: str, seed: int, target: float, space, objective, budgets,
                    max_trials: int) -> tuple[int | None, float | None]:
    """Trials (1-based) until a feasible trial reaches ``target`` (None: not within ``max_trials``), and the best
    feasible objective after ``AT_TRIALS`` trials."""
    tracker = Tracker(target)
    try:
        if method == "evolution":
            run_evolution(seed, tracker, space, objective, budgets, max_trials)
        else:
            run_optuna(method, seed, tracker, space, objective, budgets, max_trials)
    except Tracker.Done:
        pass
    feasible_at = tracker.best_at if tracker.best_at is not None and tracker.best_at > float("-inf") else None
    return tracker.reached, feasible_at       # None: no feasible trial within the first AT_TRIALS


def run_slimming(space, objective, budgets) -> dict[str, Any]:
    """``nas search --strategy slim`` (every action: the capacity proxy has no importances): where it ends."""
    import tempfile

    from nas.search.slim import SlimStrategy
    from nas.search.strategy import SearchContext
    from nas.search.workers import LocalEvaluator

    ctx = SearchContext(space, objective, budgets, LocalEvaluator(objective), Path(tempfile.mkdtemp()), "bench")
    strategy = SlimStrategy()
    records = strategy.run(ctx)
    assert strategy.summary is not None
    return {"objective": records[-1].objective, "latency_ms": records[-1].latency_ms[budgets.primary.device],
            "evaluations": strategy.summary["evaluations"], "steps": strategy.summary["steps"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-ms", type=float, default=1.6)
    p.add_argument("--device", default="iphone12")
    p.add_argument("--space", default="efficientformer")
    p.add_argument("--random-archs", type=int, default=20000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--max-trials", type=int, default=2000, help="cap for TPE and NSGA-II")
    p.add_argument("--max-trials-random", type=int, default=20000, help="cap for random search (cheap trials)")
    p.add_argument("--out", default="bench_out/search_efficiency.json")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    space = load_space(args.space)
    budgets = Budgets.load(space, [args.budget_ms], [args.device])
    objective = CapacityProxy(space)
    start = time.perf_counter()
    best, feasible = reference_best(space, objective, budgets, args.random_archs, seed=12345)
    objective.flush()
    target = 0.99 * best
    print(f"reference: best {objective.name} {best:.4f} among {args.random_archs} random archs "
          f"({feasible} under {args.budget_ms} ms on {args.device}); target 99% = {target:.4f} "
          f"[{time.perf_counter() - start:.0f} s]")

    rows: dict[str, dict[str, Any]] = {}
    for method in ("random", "tpe", "nsga2", "evolution"):
        counts, bests = [], []
        cap = args.max_trials_random if method == "random" else args.max_trials
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            k, best_at = trials_to_reach(method, seed, target, space, objective, budgets, cap)
            counts.append(k)
            bests.append(best_at)
            best_text = f"{best_at:.4f}" if best_at is not None else "none feasible"
            print(f"  {method:<9} seed {seed}: {k if k else f'>{cap}'} trials; best after {AT_TRIALS}: {best_text} "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
        reached = [c if c else cap for c in counts]   # a miss counts as the cap (a lower bound)
        feasible_bests = [b for b in bests if b is not None]
        rows[method] = {"trials": counts, "median": statistics.median(reached),
                        "mean": statistics.fmean(reached), "misses": sum(c is None for c in counts),
                        "best_at_100": bests,
                        "best_at_100_median_pct": 100 * statistics.median(feasible_bests) / best
                        if feasible_bests else None}
    for method in ("tpe", "nsga2", "evolution"):
        rows[method]["fewer_than_random_x"] = rows["random"]["median"] / rows[method]["median"]
    t0 = time.perf_counter()
    slimming = run_slimming(space, objective, budgets)
    print(f"  slim: {slimming['evaluations']} evaluations over {slimming['steps'] - 1} steps, ends at "
          f"{slimming['objective']:.4f} [{time.perf_counter() - t0:.0f} s]")

    # the main command in a fresh run directory, first with an empty op-count cache (a new machine), then warm
    import os
    import shutil
    import tempfile

    cache = Path(tempfile.mkdtemp()) / "luts"
    env = {**os.environ, "NAS_LUT_DIR": str(cache)}   # shipped iphone12 table; op counts cached beside it
    main_walls = []
    for _attempt in ("cold", "warm"):
        run_dir = Path("bench_out/main_command_run")
        shutil.rmtree(run_dir, ignore_errors=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "nas", "search", "--budget-ms", str(args.budget_ms), "--device",
                               args.device, "--out", str(run_dir), "--no-progress", "--json"],
                              capture_output=True, text=True, env=env)
        main_walls.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
    main_best = json.loads(proc.stdout)["best"]

    print()
    print(f"{'strategy':<10}{'median trials':>14}{'mean':>8}{'misses':>8}{'vs random':>11}"
          f"{f'best @{AT_TRIALS} (% ref)':>20}   per seed")
    for method, r in rows.items():
        ratio = f"{r['fewer_than_random_x']:.1f}x" if "fewer_than_random_x" in r else "-"
        pct = f"{r['best_at_100_median_pct']:.1f}%" if r["best_at_100_median_pct"] is not None else "none feasible"
        print(f"{method:<10}{r['median']:>14.0f}{r['mean']:>8.0f}{r['misses']:>8}{ratio:>11}{pct:>20}   "
              f"{r['trials']}")
    print(f"{'slim':<10}{slimming['evaluations']:>14} evaluations (one path); ends at {slimming['objective']:.4f} "
          f"({100 * slimming['objective'] / best:.1f}% of the reference) at {slimming['latency_ms']:.3f} ms")
    print(f"main command (`nas search --budget-ms {args.budget_ms:g} --device {args.device}`, 100 trials, SQLite, "
          f"export): {main_walls[0]:.1f} s wall with an empty op-count cache, {main_walls[1]:.1f} s warm; best "
          f"objective {main_best['objective']:.4f} "
          f"({100 * main_best['objective'] / best:.1f}% of the 20k-random reference) at "
          f"{main_best['latency_ms']:.3f} ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"budget_ms": args.budget_ms, "device": args.device,
                                          "reference_best": best, "reference_feasible": feasible,
                                          "target": target, "max_trials": args.max_trials, "strategies": rows,
                                          "slimming": slimming,
                                          "main_command_wall_s": {"cold": main_walls[0], "warm": main_walls[1]},
                                          "main_command_best": main_best}, indent=1))


if __name__ == "__main__":
    main()
