"""Does the trained supernet pick the right archs? The evidence of issue #25, on ``builtin:objects``.

    python benchmarks/ranking.py                 # every part: hours on 2 cores; rerun after a kill to go on
    python benchmarks/ranking.py --part check    # one part: dataset | check | recipes | search (check first)
    python benchmarks/ranking.py --quick         # the same pipeline at toy sizes, minutes (a smoke run)

Parts:

- **check**: a supernet of ``tiny`` and one of ``tiny_hybrid`` trained with the default recipe on the dataset,
  then ``nas supernet rank`` on each (12 archs on ``tiny``, its default configuration, timed; 20 on
  ``tiny_hybrid``): Kendall τ / Spearman ρ / top-k with 95% intervals for inherited top-1, the capacity proxy, the
  parameter count and the zero-cost proxies, and the noise floor.
- **dataset**: its three difficulty figures: the spread of the sampled archs' stand-alone top-1 (from the checks),
  the seed-to-seed spread of one arch (their noise floors), and a linear model on raw pixels (logistic regression).
- **recipes**: supernet training remedies side by side on ``tiny_hybrid`` (more random subnets per step, AlphaNet's
  α-divergence, complexity-aware sampling, twice the epochs, BatchNorm recalibrated on 4x the images), each scored
  by the τ of its inherited top-1 against the check's stand-alone top-1 of the same 20 archs.
- **search**: on ``tiny_hybrid``, at three budgets on the estimated iPhone 12 table, the winners of (a) TPE and
  (b) slimming with the supernet as objective, (c) TPE on the capacity proxy (the main command's default) and
  (d) the best of as many random feasible archs (by the supernet), each trained alone from scratch with 3 seeds and
  scored on the **test** split, which no search saw.

Writes bench_out/ranking.json (every figure) and keeps its work in bench_out/ranking/.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before torch loads OpenMP: see nas.cli.yield_idle_threads
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.fileio import write_json_atomic  # noqa: E402
from nas.ranking.check import RankSettings, run_check  # noqa: E402
from nas.ranking.stats import agreement  # noqa: E402
from nas.space import load_space  # noqa: E402
from supernet.config import TrainConfig  # noqa: E402

DATA = "builtin:objects"
EPOCHS = 4
RECIPES: dict[str, dict[str, Any]] = {   # name: TrainConfig changes from the default recipe
    "default": {},
    "num_random=4": {"num_random": 4},
    "kd=alpha": {"kd": "alpha"},
    "sampling=complexity": {"sampling": "complexity"},
    "2x epochs": {"epochs": 2},      # a factor of the run's epochs (see ``train``)
}
BN_VARIANT = ("default, BN recalibrated on 1024 images", 1024)
METHODS = ("tpe", "slim", "proxy", "random")
SEEDS = 3


@dataclasses.dataclass(frozen=True)
class Sizes:
    data: str
    epochs: int
    archs: dict[str, int]
    trials: int
    val_images: int | None = None
    bn_images: int | None = None
    batch_size: int = 64


FULL = Sizes(DATA, EPOCHS, {"tiny": 12, "tiny_hybrid": 20}, trials=40)
QUICK = Sizes("builtin:objects:train=640,val=256,test=256", 1, {"tiny": 4, "tiny_hybrid": 5}, trials=6,
              val_images=256, bn_images=64, batch_size=32)


def train(space: str, recipe: dict[str, Any], sizes: Sizes, work: Path, name: str) -> Path:
    """A supernet of ``space`` trained with the default recipe changed by ``recipe`` (resumed if cut short)."""
    from supernet.train import train_supernet

    out = work / f"{space}-{name.replace('=', '_').replace(' ', '_')}.pt"
    cfg = TrainConfig(space=space, data=sizes.data, epochs=sizes.epochs, batch_size=sizes.batch_size)
    changes: dict[str, Any] = {k: v for k, v in (("val_images", sizes.val_images), ("bn_images", sizes.bn_images))
                               if v is not None}
    changes.update(recipe)
    if "epochs" in changes:
        changes["epochs"] *= sizes.epochs
    cfg = dataclasses.replace(cfg, **changes)
    started = time.perf_counter()
    train_supernet(cfg, out, resume=True, progress=False)
    print(f"  supernet {out.name}: {time.perf_counter() - started:.0f} s this run", flush=True)
    return out


def part_check(sizes: Sizes, work: Path) -> dict[str, Any]:
    results = {}
    for space, k in sizes.archs.items():
        ckpt = train(space, {}, sizes, work, "default")
        started = time.perf_counter()
        report = run_check(RankSettings(str(ckpt), archs=k, seeds=SEEDS, out=str(work / f"{space}.rank"),
                                        resume=True, progress=False))
        trainings = json.loads((work / f"{space}.rank" / "state.json").read_text())["trainings"]
        report["training_seconds"] = sum(t["seconds"] for t in trainings.values())
        report["wall_this_run_s"] = time.perf_counter() - started
        results[space] = report
        a = report["agreement"]
        print(f"  {space}: {k} archs; tau inherited {_tau(a['inherited'])}, capacity {_tau(a['capacity'])}, "
              f"params {_tau(a['params'])}; noise floor std {report['noise_floor']['std']:.2f}; "
              f"stand-alone trainings {report['training_seconds']:.0f} s", flush=True)
    return results


def _tau(a: dict[str, Any]) -> str:
    t = a["kendall_tau"]
    return f"{t['value']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}]"


def part_dataset(sizes: Sizes, work: Path, checks: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from nas.data import num_classes
    from nas.data.builtin import parse
    from nas.data.objects import load_split

    _, spec = parse(sizes.data)
    x, y = load_split(spec, "train")
    xv, yv = load_split(spec, "val")
    started = time.perf_counter()
    linear = LogisticRegression(max_iter=200, C=1e-3).fit(x.reshape(len(x), -1) / 255.0, y)
    linear_top1 = 100.0 * float(np.mean(linear.predict(xv.reshape(len(xv), -1) / 255.0) == yv))
    out: dict[str, Any] = {"data": sizes.data, "classes": num_classes(sizes.data),
                           "chance_top1": 100.0 / num_classes(sizes.data), "linear_top1": linear_top1,
                           "linear_seconds": time.perf_counter() - started, "spaces": {}}
    for space, report in checks.items():
        alone = [a["standalone_top1"] for a in report["archs"]]
        floor = report["noise_floor"]
        out["spaces"][space] = {"archs": len(alone), "standalone_min": min(alone), "standalone_max": max(alone),
                                "standalone_std": statistics.stdev(alone), "seed_top1": floor["top1"],
                                "seed_std": floor["std"], "seed_range": floor["range"]}
    print(f"  linear model on raw pixels: {linear_top1:.1f}% (chance {out['chance_top1']:.1f}%)", flush=True)
    return out


def _train_alone(space: str, recipe: dict[str, Any], sizes: Sizes, work: str, name: str) -> tuple[str, float]:
    """``train`` in a worker process of its own, on one thread (two 1-thread trainings side by side do 1.3x the
    work of one 2-thread training on 2 cores: see ``nas.cli.yield_idle_threads``)."""
    import torch

    from nas.ranking.jobs import die_with_parent

    die_with_parent()
    torch.set_num_threads(1)
    started = time.perf_counter()
    return str(train(space, recipe, sizes, Path(work), name)), time.perf_counter() - started


def train_side_by_side(space: str, recipes: dict[str, dict[str, Any]], sizes: Sizes,
                       work: Path) -> dict[str, tuple[Path, float]]:
    """Train one supernet per recipe, ``os.cpu_count()`` at a time, longest first: {name: (checkpoint, seconds
    this run)}."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(recipes, key=lambda n: -(recipes[n].get("epochs", 1) * recipes[n].get("num_random", 2)))
    with ProcessPoolExecutor(min(len(order), os.cpu_count() or 1),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_train_alone, space, recipes[name], sizes, str(work), name) for name in order}
        done = {name: f.result() for name, f in futures.items()}
    return {name: (Path(path), seconds) for name, (path, seconds) in done.items()}


def part_recipes(sizes: Sizes, work: Path, checks: dict[str, Any]) -> dict[str, Any]:
    from supernet.checkpoint import load_supernet
    from supernet.evaluate import evaluate_subnet

    space_name = "tiny_hybrid"
    report = checks[space_name]
    space = load_space(space_name)
    archs = [space.arch_from_dict(a["arch"]) for a in report["archs"]]
    truth = [a["standalone_top1"] for a in report["archs"]]
    val = report["evaluation"]["val_images"]
    started = time.perf_counter()
    checkpoints = train_side_by_side(space_name, RECIPES, sizes, work)
    print(f"  {len(checkpoints)} supernets: {time.perf_counter() - started:.0f} s this run", flush=True)
    rows: dict[str, Any] = {}
    variants: list[tuple[str, dict[str, Any], int]] = [(name, changes, report["evaluation"]["bn_images"])
                                                        for name, changes in RECIPES.items()]
    variants.append((BN_VARIANT[0], {}, BN_VARIANT[1]))
    for name, changes, bn in variants:
        started = time.perf_counter()
        ckpt, seconds = checkpoints[name if name in RECIPES else "default"]
        net, meta = load_supernet(ckpt)
        inherited = [evaluate_subnet(net, a, sizes.data, val, bn) for a in archs]
        agree = agreement(inherited, truth)
        rows[name] = {"changes": changes, "bn_images": bn, "inherited": inherited, "agreement": agree.to_dict(),
                      "train_seconds_this_run": seconds, "epochs": meta.get("trained", {}).get("epochs"),
                      "top1_ends": meta.get("trained", {}).get("top1", {}),
                      "eval_seconds": time.perf_counter() - started}
        print(f"  {name:<42} tau {agree.kendall_tau}  rho {agree.spearman_rho}", flush=True)
    return rows


def part_search(sizes: Sizes, work: Path, checks: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from nas.latency.predict import LutPredictor, sample_batch
    from nas.ranking.jobs import Job
    from nas.search.budgets import Budgets
    from nas.search.objectives import CapacityProxy, SupernetSettings, make_objective
    from nas.search.optuna_settings import OptunaSettings
    from nas.search.run import SearchRequest, run_search
    from supernet.checkpoint import load_supernet
    from supernet.standalone import standalone_config

    space = load_space("tiny_hybrid")
    ckpt = work / "tiny_hybrid-default.pt"
    table = work / "tiny_hybrid.rank" / "latency-iphone12-tiny_hybrid.json"
    predictor = LutPredictor.from_file(table)
    latencies = np.asarray(predictor.predict_batch(sample_batch(space, 4000, seed=1)))
    budgets_ms = [round(float(np.percentile(latencies, q)), 4) for q in (20, 50, 80)]
    net, meta = load_supernet(ckpt)
    cfg = TrainConfig(**meta["trained"]["config"])
    rows: dict[str, Any] = {"budgets_ms": budgets_ms, "table": str(table), "trials": sizes.trials, "runs": {}}
    val, bn = sizes.val_images or 1000, sizes.bn_images or 256
    for budget in budgets_ms:          # every search first: their winners then train side by side
        for method in METHODS:
            objective = (CapacityProxy(space) if method == "proxy"
                         else make_objective(space, "supernet", SupernetSettings(str(ckpt), sizes.data, val, bn)))
            request = SearchRequest(
                space, objective, Budgets.load(space, [budget], ["iphone12"], {"iphone12": str(table)}),
                strategy="slim" if method == "slim" else "optuna",
                settings=None if method == "slim" else OptunaSettings("random" if method == "random" else "tpe"),
                trials=sizes.trials, seed=0, out=work / "search" / f"{budget:g}ms-{method}", export_formats=[],
                progress=False)
            started = time.perf_counter()
            best = run_search(request).best
            rows["runs"][f"{budget:g}ms-{method}"] = {
                "budget_ms": budget, "method": method, "arch": best.arch.to_dict(),
                "latency_ms": best.latency_ms["iphone12"],
                "objective": best.objective, "inherited_top1": best.objective if method != "proxy" else None,
                "search_seconds_this_run": time.perf_counter() - started}
            print(f"  {budget:g} ms {method:<7} latency {best.latency_ms['iphone12']:.4f} "
                  f"objective {best.objective:.4g}", flush=True)
    jobs = {}
    for seed in range(SEEDS):          # seed-major: a run cut short still has every winner trained once or twice
        for run in rows["runs"].values():
            arch = space.arch_from_dict(run["arch"])
            jobs[f"{arch.to_json()}|{seed}"] = Job(
                0, seed, space, arch, standalone_config(cfg, cfg.seed + seed),
                net.num_classes, sizes.data, sizes.val_images or 2000, bn, "cpu", 1, split="test")
    trained = train_jobs(jobs, work / "search_trainings.json")
    print(f"  {len(jobs)} stand-alone trainings of {len(jobs) // SEEDS} distinct winners", flush=True)
    for name, run in rows["runs"].items():
        arch = space.arch_from_dict(run["arch"])
        tops = [trained[f"{arch.to_json()}|{seed}"]["top1"] for seed in range(SEEDS)]
        run.update(test_top1=tops, test_mean=statistics.mean(tops), test_std=statistics.stdev(tops))
        print(f"  {name:<14} latency {run['latency_ms']:.4f} test top-1 {run['test_mean']:.1f} "
              f"+- {run['test_std']:.1f}", flush=True)
    return rows


def train_jobs(jobs: dict[str, Any], results_path: Path) -> dict[str, Any]:
    """Run the stand-alone trainings not yet in ``results_path``, one 1-thread process per core, saving each."""
    from nas.ranking.jobs import run_in_processes

    trained: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    todo = {key: job for key, job in jobs.items() if key not in trained}
    if todo:
        for key, result in run_in_processes(todo, min(len(todo), os.cpu_count() or 1)):
            trained[key] = result
            write_json_atomic(results_path, trained)
    return trained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("all", "check", "dataset", "recipes", "search"), default="all")
    p.add_argument("--quick", action="store_true", help="toy sizes (a smoke run of the pipeline)")
    p.add_argument("--out", default="bench_out/ranking.json")
    args = p.parse_args()
    sizes = QUICK if args.quick else FULL
    out = Path(args.out)
    work = out.with_suffix("") if not args.quick else out.with_name(out.stem + "-quick")
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() and not args.quick else {}
    results["sizes"] = dataclasses.asdict(sizes)
    parts = ("check", "dataset", "recipes", "search") if args.part == "all" else (args.part,)
    for part in parts:
        print(f"[{part}]", flush=True)
        if part == "check":
            results["check"] = part_check(sizes, work)
        else:
            checks = results.get("check") or part_check(sizes, work)
            results[part] = {"dataset": part_dataset, "recipes": part_recipes, "search": part_search}[part](
                sizes, work, checks)
        write_json_atomic(out if not args.quick else work / "ranking.json", results)
    print(f"wrote {out if not args.quick else work / 'ranking.json'}")


if __name__ == "__main__":
    main()
