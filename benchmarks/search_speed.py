"""Wall time of the main command, ``nas search --budget-ms 1.6 --device iphone12``, split into imports, trials and
export, for this checkout and (``--before REV``) an earlier revision measured side by side in the same run.

Each configuration runs ``--repeats`` times, alternating between the checkouts (the machine is shared and noisy: a
ratio measured side by side is what counts), and the median is reported:

- imports: ``python -c "import nas.cli.search, nas.search.run, nas.search.optuna_search, nas.export.exporter"``;
- trials: ``nas search ... --export none`` minus the imports;
- export: ``nas search ...`` (default ``--export pt``) minus ``--export none``.

    python benchmarks/search_speed.py [--before dde3511] [--repeats 3]

Target (issue 17): the main command <= 10 s wall on 2 cores, with the same best objective.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["search", "--budget-ms", "1.6", "--device", "iphone12", "--no-progress", "--json"]
IMPORTS = "import nas.cli.search, nas.search.run, nas.search.optuna_search, nas.export.exporter"


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} in {cwd} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - started, proc.stdout


def measure(checkout: Path, scratch: Path, repeats: int) -> dict[str, Any]:
    imports, bare, full, best = [], [], [], None
    for i in range(repeats):
        imports.append(timed(["-c", IMPORTS], checkout)[0])
        wall, out = timed(["-m", "nas", *COMMAND, "--export", "none", "--out", str(scratch / f"n{i}")], checkout)
        bare.append(wall)
        wall, out = timed(["-m", "nas", *COMMAND, "--out", str(scratch / f"p{i}")], checkout)
        full.append(wall)
        result = json.loads(out)
        best = {"objective": result["best"]["objective"],
                "latency_ms": result["best"]["latencies_ms"]["iphone12"]}
    med = {k: statistics.median(v) for k, v in (("imports", imports), ("bare", bare), ("full", full))}
    return {"wall_s": med["full"], "imports_s": med["imports"], "trials_s": med["bare"] - med["imports"],
            "export_s": med["full"] - med["bare"], "best": best, "runs": {"imports": imports, "export_none": bare,
                                                                           "default": full}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", metavar="REV", help="also measure this git revision (a temporary worktree)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench_out/search_speed.json")
    args = p.parse_args()

    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        checkouts = {"now": ROOT}
        if args.before:
            worktree = scratch / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before], cwd=ROOT, check=True,
                           capture_output=True)
            checkouts = {f"before ({args.before})": worktree, "now": ROOT}
        try:
            for name in checkouts:
                (scratch / name).mkdir()
            for _ in range(args.repeats):      # alternate: both see the same machine load
                for name, checkout in checkouts.items():
                    one = measure(checkout, scratch / name / str(time.monotonic_ns()), 1)
                    results.setdefault(name, []).append(one)
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(scratch / "before")], cwd=ROOT,
                               capture_output=True)
    print(f"{'checkout':<22}{'wall s':>8}{'imports s':>11}{'trials s':>10}{'export s':>10}  best objective")
    summary = {}
    for name, samples in results.items():
        row = {k: statistics.median(s[k] for s in samples) for k in ("wall_s", "imports_s", "trials_s", "export_s")}
        row["best"] = samples[-1]["best"]
        summary[name] = {**row, "samples": samples}
        print(f"{name:<22}{row['wall_s']:>8.2f}{row['imports_s']:>11.2f}{row['trials_s']:>10.2f}"
              f"{row['export_s']:>10.2f}  {row['best']['objective']:.4f} at {row['best']['latency_ms']:.3f} ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": "nas " + " ".join(COMMAND[:-2]), "repeats": args.repeats,
                                          "results": summary}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
