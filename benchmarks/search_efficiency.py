"""How many trials does each sampler need? The capacity proxy under an iPhone 12 budget (the main command's
setting): the best objective among 20,000 random feasible-or-not archs is the reference; for TPE, NSGA-II and
random search (Optuna, in-memory storage, several seeds), count the trials until a feasible trial reaches 99% of
it. Also times the main command end to end.

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


def trials_to_reach(sampler: str, seed: int, target: float, space, objective, budgets, max_trials: int) -> int | None:
    """Trials (1-based) until a feasible trial reaches ``target``; None if not within ``max_trials``."""
    study = optuna.create_study(directions=["maximize", "minimize"] if sampler == "nsga2" else ["maximize"],
                                sampler=make_sampler(sampler, seed))
    device = budgets.primary.device
    for k in range(1, max_trials + 1):
        trial = study.ask()
        arch = suggest_arch(trial, space)
        latencies = budgets.latencies(arch)
        for b, v in zip(budgets.items, budgets.violations(latencies)):
            trial.set_constraint(f"latency_{b.device}", v)
        value = objective(arch)
        study.tell(trial, [value, latencies[device]] if sampler == "nsga2" else [value])
        if budgets.feasible(latencies) and value >= target:
            return k
    return None


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
    for sampler in ("random", "tpe", "nsga2"):
        counts = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            cap = args.max_trials_random if sampler == "random" else args.max_trials
            k = trials_to_reach(sampler, seed, target, space, objective, budgets, cap)
            counts.append(k)
            print(f"  {sampler:<7} seed {seed}: {k if k else f'>{cap}'} trials "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
        reached = [c if c else cap for c in counts]   # a miss counts as the cap (a lower bound)
        rows[sampler] = {"trials": counts, "median": statistics.median(reached),
                         "mean": statistics.fmean(reached), "misses": sum(c is None for c in counts)}
    for sampler in ("tpe", "nsga2"):
        rows[sampler]["fewer_than_random_x"] = rows["random"]["median"] / rows[sampler]["median"]

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
    print(f"{'sampler':<8}{'median trials':>14}{'mean':>8}{'misses':>8}{'vs random':>11}   per seed")
    for sampler, r in rows.items():
        ratio = f"{r['fewer_than_random_x']:.1f}x" if "fewer_than_random_x" in r else "-"
        print(f"{sampler:<8}{r['median']:>14.0f}{r['mean']:>8.0f}{r['misses']:>8}{ratio:>11}   {r['trials']}")
    print(f"main command (`nas search --budget-ms {args.budget_ms:g} --device {args.device}`, 100 trials, SQLite, "
          f"export): {main_walls[0]:.1f} s wall with an empty op-count cache, {main_walls[1]:.1f} s warm; best "
          f"objective {main_best['objective']:.4f} "
          f"({100 * main_best['objective'] / best:.1f}% of the 20k-random reference) at "
          f"{main_best['latency_ms']:.3f} ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"budget_ms": args.budget_ms, "device": args.device,
                                          "reference_best": best, "reference_feasible": feasible,
                                          "target": target, "max_trials": args.max_trials, "samplers": rows,
                                          "main_command_wall_s": {"cold": main_walls[0], "warm": main_walls[1]},
                                          "main_command_best": main_best}, indent=1))


if __name__ == "__main__":
    main()
