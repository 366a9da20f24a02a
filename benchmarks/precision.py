"""Does the int8 table predict int8 ONNX Runtime, where a scaled fp32 table cannot? (issue #28)

    python benchmarks/precision.py                          # default space, 20 held-out archs x 2 rounds
    python benchmarks/precision.py --space tiny --archs 6   # a quick look
    python benchmarks/precision.py --out bench_out/precision.json

Builds, in their own processes and timed, the fp32 table (``nas lut build --device onnxruntime``) and the int8 one
(``--precision int8``: the recipe chosen on this machine, every op quantised by it), then times N archs neither
table saw with ``benchmarks/onnx_timer.py`` (a fresh process per arch and round, fp32 and int8 in turns of 10 calls, no
timing code shared with nas). Each arch is timed in ``--rounds`` passes, so the same run gives the machine's floor.

Reports: the int8 table against measured int8 (Kendall τ, signed bias, MAPE, within ±10%); the fp32 table scaled
by the measured median speed-up (the "int8 = k x fp32" rule) against the same measurements; the int8 table
that ``nas lut adapt --precision int8 --n 20`` derives from the fp32 one (per-op-kind scales, no op measured); the
fraction of arch pairs whose order int8 changes; archs that int8 makes slower; at a budget set at the median int8
latency, how many archs each table misjudges; the recipe with its per-op-type evidence; the simplest
published-style few-shot baseline beside adapt (HELP's comparison: a ridge regression from this machine's other
tables, the fp32 ONNX Runtime one and the cpu one if built, to int8 latency, fitted on ``--adapt-n`` archs measured
in int8); the capacity proxy's search winners at three budgets on the fp32 table, the int8 table and
``--precision auto`` over both, each measured in the precision it ships in. Targets (issue #28):
τ(int8 table) >= 0.95; no int8 model slower than its fp32 form. Resumable: tables and timings are kept in the work
folder beside --out.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.correlation import kendall_tau, spearman_rho  # noqa: E402
from nas.fileio import write_json_atomic  # noqa: E402
from nas.latency.paths import default_table_path  # noqa: E402
from nas.latency.predict import LutPredictor  # noqa: E402
from nas.latency.validate import error_metrics  # noqa: E402
from nas.machine import LOAD_SAMPLE_S, load_now  # noqa: E402
from nas.plots import plot_predicted_vs_measured  # noqa: E402
from nas.space import load_space  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HELD_OUT_SEED_BASE = 30_000     # past the calibration, validate and lut_fidelity seeds
RIDGE_SEED_BASE = 31_000        # the ridge baseline's training archs


def build(device: str, precision: str, space: str, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nas", "lut", "build", "--device", device, "--precision", precision,
                    "--space", space, "--out", str(out), "--no-progress"], cwd=REPO, check=True)
    return time.perf_counter() - started


def timed(space: str, arch_json: str, recipe: dict[str, Any]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "onnx_timer.py"), space, arch_json,
                           json.dumps(recipe)], capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


SEARCHED = ("fp32", "int8", "auto")


def search_winners(args: argparse.Namespace, state: dict[str, Any], state_path: Path, work: Path,
                   tables: dict[str, Path], recipe: dict[str, Any], fp32_measured: list[float]) -> list[dict[str, Any]]:
    """At budgets at the quartiles of the held-out archs' fp32 latency: the capacity proxy's winner searched on the
    fp32 table, on the int8 one and with ``--precision auto`` over both (same seed and trials), each timed end to
    end in the precision it ships in."""
    rows = state.setdefault("searches", {})
    n = len(fp32_measured)
    luts = [f"--lut=onnxruntime={tables['fp32']}", f"--lut=onnxruntime-int8={tables['int8']}"]
    for q in (0.25, 0.5, 0.75):
        budget = round(fp32_measured[int(q * (n - 1))], 2)
        key = f"{budget:.2f}"
        row = rows.setdefault(key, {"budget_ms": budget})
        for precision in SEARCHED:
            if precision in row:
                continue
            device = {"fp32": "onnxruntime", "int8": "onnxruntime-int8", "auto": "onnxruntime"}[precision]
            tables_given = luts if precision == "auto" else [f"--lut={device}={tables[precision]}"]
            proc = subprocess.run([sys.executable, "-m", "nas", "search", "--space", args.space, "--budget-ms",
                                   str(budget), "--device", device, *tables_given,
                                   *(["--precision", "auto"] if precision == "auto" else []),
                                   "--trials", str(args.search_trials), "--seed", "0", "--out",
                                   str(work / f"search-{precision}-{key}"), "--export", "none", "--no-progress",
                                   "--json"], cwd=REPO, capture_output=True, text=True, check=True)
            best = json.loads(proc.stdout)["best"]
            arch_json = json.dumps(best["arch"])
            shipped = next(iter(best["precisions"].values()))
            row[precision] = {"objective": best["objective"], "predicted_ms": best["latency_ms"], "arch": arch_json,
                              "ships_in": shipped, "measured_ms": timed(args.space, arch_json, recipe)[f"{shipped}_ms"]}
            write_json_atomic(state_path, state)
    return list(rows.values())


def ridge_baseline(args: argparse.Namespace, state: dict[str, Any], state_path: Path, space: Any,
                   recipe: dict[str, Any], others: dict[str, LutPredictor]) -> tuple[Any, dict[str, Any]]:
    """The simplest published-style few-shot baseline (HELP's comparison): a ridge regression from the arch's
    latencies on the other tables of this machine (``others``) to its int8 latency, fitted on ``--adapt-n`` archs
    measured in int8 (seeds neither the held-out set nor adapt uses), its penalty chosen by leave-one-out."""
    import numpy as np

    train = [space.sample(seed=RIDGE_SEED_BASE + i) for i in range(args.adapt_n)]
    timings = state.setdefault("ridge_timings", {})
    for i, arch in enumerate(train):
        if str(i) not in timings:
            timings[str(i)] = timed(args.space, arch.to_json(), recipe)["int8_ms"]
            write_json_atomic(state_path, state)

    def features(archs: list[Any]) -> Any:
        return np.array([[p.predict(a) for p in others.values()] for a in archs])

    x, y = features(train), np.array([timings[str(i)] for i in range(len(train))])
    mean, std = x.mean(0), x.std(0) + 1e-12

    def fit(xs: Any, ys: Any, alpha: float) -> Any:
        z = np.hstack([np.ones((len(xs), 1)), (xs - mean) / std])
        penalty = alpha * np.eye(z.shape[1])
        penalty[0, 0] = 0.0            # the intercept is not shrunk
        return np.linalg.solve(z.T @ z + penalty, z.T @ ys)

    def loo(alpha: float) -> float:
        errors = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            w = fit(x[keep], y[keep], alpha)
            errors.append(abs(w[0] + ((x[i] - mean) / std) @ w[1:] - y[i]) / y[i])
        return float(np.mean(errors))

    alpha = min((0.01, 0.1, 1.0, 10.0), key=loo)
    w = fit(x, y, alpha)

    def predict(archs: list[Any]) -> list[float]:
        return [float(v) for v in w[0] + ((features(archs) - mean) / std) @ w[1:]]

    return predict, {"n": len(train), "alpha": alpha, "features": list(others), "loo_mape": 100 * loo(alpha)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="efficientformer")
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--adapt-n", type=int, default=20, help="archs nas lut adapt measures in int8")
    parser.add_argument("--search-trials", type=int, default=60, help="trials of each winner's search")
    parser.add_argument("--out", default="bench_out/precision.json")
    args = parser.parse_args()
    out = Path(args.out)
    work = out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {"timings": {}}
    state["load_before"] = state.get("load_before") or load_now(LOAD_SAMPLE_S)

    tables = {"fp32": work / f"onnxruntime-{args.space}.json", "int8": work / f"onnxruntime-int8-{args.space}.json"}
    for precision, path in tables.items():
        if not path.exists():
            print(f"building the {precision} table ...", file=sys.stderr)
            state[f"build_s_{precision}"] = build("onnxruntime", precision, args.space, path)
            write_json_atomic(state_path, state)
    adapted = work / f"onnxruntime-int8-adapted-{args.space}.json"
    if not adapted.exists():      # the int8 table from the fp32 one and --adapt-n archs measured in int8
        print("adapting the fp32 table to int8 ...", file=sys.stderr)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nas", "lut", "adapt", "--device", "onnxruntime", "--precision",
                        "int8", "--from", str(tables["fp32"]), "--n", str(args.adapt_n), "--out", str(adapted),
                        "--no-progress"], cwd=REPO, check=True)
        state["adapt_s"] = time.perf_counter() - started
        write_json_atomic(state_path, state)
    predictors = {p: LutPredictor.from_file(path) for p, path in tables.items()}
    predictors["adapted"] = LutPredictor.from_file(adapted)
    recipe = predictors["int8"].table.header["quantization"]
    space = load_space(args.space)
    archs = [space.sample(seed=HELD_OUT_SEED_BASE + i) for i in range(args.archs)]
    for r, (i, arch) in itertools.product(range(args.rounds), enumerate(archs)):
        key = f"{r}:{i}"
        if key in state["timings"]:
            continue
        state["timings"][key] = timed(args.space, arch.to_json(), recipe)
        write_json_atomic(state_path, state)
        print(f"round {r + 1} arch {i + 1}/{len(archs)}: {state['timings'][key]}", file=sys.stderr)

    def measured(precision: str, rounds: range | list[int]) -> list[float]:
        return [statistics.median(state["timings"][f"{r}:{i}"][f"{precision}_ms"] for r in rounds)
                for i in range(len(archs))]

    m32, m8 = measured("fp32", range(args.rounds)), measured("int8", range(args.rounds))
    p32 = [predictors["fp32"].predict(a) for a in archs]
    p8 = [predictors["int8"].predict(a) for a in archs]
    pa = [predictors["adapted"].predict(a) for a in archs]
    adapted_q = predictors["adapted"].table.header.get("quantization")
    own = None        # the adapted table against models quantised by its own recipe, where that differs
    if adapted_q and adapted_q["op_types"] != recipe["op_types"]:
        own_timings = state.setdefault("adapt_recipe_timings", {})
        for r, (i, arch) in itertools.product(range(args.rounds), enumerate(archs)):
            if f"{r}:{i}" not in own_timings:
                own_timings[f"{r}:{i}"] = timed(args.space, arch.to_json(), adapted_q)["int8_ms"]
                write_json_atomic(state_path, state)
        own_measured = [statistics.median(own_timings[f"{r}:{i}"] for r in range(args.rounds))
                        for i in range(len(archs))]
        own = error_metrics(pa, own_measured)
    others = {"onnxruntime fp32": predictors["fp32"]}       # HELP's features: this machine's other tables
    cpu_table = default_table_path("cpu", args.space)
    if cpu_table.exists():
        others["cpu (torch eager)"] = LutPredictor.from_file(cpu_table)
    ridge_predict, ridge = ridge_baseline(args, state, state_path, space, recipe, others)
    pr = ridge_predict(archs)
    adapted_recipe = predictors["adapted"].table.header.get("quantization", {}).get("op_types")
    speedups = [a / b for a, b in zip(m32, m8, strict=True)]
    k = statistics.median(b / a for a, b in zip(m32, m8, strict=True))     # the best fixed "int8 = k x fp32"
    scaled = [k * p for p in p32]
    pairs = list(itertools.combinations(range(len(archs)), 2))
    flips = sum((m32[i] - m32[j]) * (m8[i] - m8[j]) < 0 for i, j in pairs)
    budget = statistics.median(m8)
    truth = [m <= budget for m in m8]

    def misjudged(predicted: list[float]) -> int:
        return sum((p <= budget) != t for p, t in zip(predicted, truth, strict=True))

    floor = (error_metrics(measured("int8", [1]), measured("int8", [0])) if args.rounds >= 2 else None)
    evidence = recipe.get("chosen_by", {})
    report = {
        "space": args.space, "archs": len(archs), "rounds": args.rounds, "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "load_before": state["load_before"], "load_after": load_now(LOAD_SAMPLE_S),
        "build_s": {p: state.get(f"build_s_{p}") for p in tables},
        "recipe": {"op_types": recipe["op_types"], "kept_float": evidence.get("kept_float"),
                   "probe_float_ms": evidence.get("probe_float_ms"), "alone_ms": evidence.get("alone_ms")},
        "int8_table": error_metrics(p8, m8), "fp32_table_scaled": {**error_metrics(scaled, m8), "k": k},
        "fp32_table_on_fp32": error_metrics(p32, m32), "floor_int8": floor,
        "adapted_table": {**error_metrics(pa, m8), "n": args.adapt_n, "seconds": state.get("adapt_s"),
                          "op_types": adapted_recipe, "same_recipe": adapted_recipe == recipe["op_types"]},
        "adapted_table_own_recipe": own,
        "ridge_baseline": {**error_metrics(pr, m8), **ridge, "spearman": spearman_rho(pr, m8)},
        "kendall_tau_fp32_vs_int8_measured": kendall_tau(m32, m8), "pair_flips": flips / len(pairs),
        "speedup": {"median": statistics.median(speedups), "min": min(speedups), "max": max(speedups)},
        "int8_slower_than_fp32": sum(s < 1 for s in speedups),
        "budget_at_median_int8_ms": budget,
        "misjudged_at_budget": {"int8_table": misjudged(p8), "fp32_table_scaled": misjudged(scaled),
                                "adapted_table": misjudged(pa), "ridge_baseline": misjudged(pr)},
        "targets": {"tau_int8_table_ge_0.95": kendall_tau(p8, m8) >= 0.95,
                    "no_int8_model_slower": all(s >= 1 for s in speedups)},
        "rows": [{"arch": a.to_json(), "fp32_ms": a32, "int8_ms": a8, "int8_table_ms": q8, "fp32_table_ms": q32}
                 for a, a32, a8, q8, q32 in zip(archs, m32, m8, p8, p32, strict=True)],
    }
    report["searches"] = search_winners(args, state, state_path, work, tables, recipe, sorted(m32))
    plot_predicted_vs_measured(p8, m8, work / "int8_table.png", f"int8 table, {args.space}, {len(archs)} archs")
    write_json_atomic(out, report)

    def line(name: str, m: dict[str, Any]) -> str:
        return (f"{name:<26} tau {m['kendall_tau']:+.3f}  bias {m['bias_pct']:+6.1f}%  MAPE {m['mape']:5.1f}%  "
                f"within ±10% {100 * m['within_10pct']:5.1f}%")

    print(f"space {args.space}, {len(archs)} held-out archs x {args.rounds} rounds, ONNX Runtime 1 thread")
    kept = ", ".join(evidence.get("kept_float", []))
    print(f"recipe: int8 {', '.join(recipe['op_types']) or 'nothing'}; float {kept}")
    for t, ms in (evidence.get("alone_ms") or {}).items():
        print(f"  {t:<12} alone in int8: {ms:.3f} ms against float {evidence['probe_float_ms']:.3f} ms "
              f"(x{evidence['probe_float_ms'] / ms:.2f})")
    print(line("int8 table", report["int8_table"]))
    print(line(f"fp32 table x {k:.3f}", report["fp32_table_scaled"]))
    same = "the same recipe" if report["adapted_table"]["same_recipe"] else f"recipe {adapted_recipe}"
    print(line(f"adapted, n={args.adapt_n}", report["adapted_table"])
          + f"  ({report['adapted_table']['seconds'] or 0:.0f} s; {same})")
    if own:
        print(line("adapted, its own recipe", own) + f"  (against the archs quantised by {adapted_recipe})")
    print(line(f"ridge over {len(others)} table(s), n={ridge['n']}", report["ridge_baseline"])
          + f"  (Spearman {report['ridge_baseline']['spearman']:+.3f})")
    print(line("fp32 table on fp32", report["fp32_table_on_fp32"]))
    if floor:
        print(line("floor (int8 round 2 vs 1)", floor))
    print(f"measured speed-up fp32/int8: median x{report['speedup']['median']:.2f} "
          f"({report['speedup']['min']:.2f}..{report['speedup']['max']:.2f}); int8 slower on "
          f"{report['int8_slower_than_fp32']} of {len(archs)}; τ(fp32, int8 measured) "
          f"{report['kendall_tau_fp32_vs_int8_measured']:+.3f}, pairs swapped {100 * report['pair_flips']:.1f}%")
    wrong = report["misjudged_at_budget"]
    print(f"budget {budget:.2f} ms (median int8): misjudged by the int8 table {wrong['int8_table']}, "
          f"by the scaled fp32 table {wrong['fp32_table_scaled']}, by the adapted table {wrong['adapted_table']}")
    for row in report["searches"]:
        print(f"budget {row['budget_ms']:.1f} ms: " + "; ".join(
            f"{p} winner capacity {row[p]['objective']:.4g}, measured {row[p]['measured_ms']:.2f} ms in "
            f"{row[p].get('ships_in', p)}" for p in SEARCHED if p in row))
    print(f"builds: {report['build_s']}; wrote {out}")


if __name__ == "__main__":
    main()
