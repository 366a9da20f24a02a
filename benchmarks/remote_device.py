"""Does a table measured on another machine come out right? The whole ``onnxruntime-remote`` path (ONNX packages
built here, timed by the copied ``measure_onnx.py`` with nas blocked from import, ingested) run on this machine,
against a table built here by the local ``onnxruntime`` device: the same runtime, CPU, threads and timing rule, so
the two must predict alike, and both must predict what ``--arch`` archs measure end to end with the local backend.

    python benchmarks/remote_device.py [--space tiny] [--archs 10] [--out bench_out/remote_device.json]

Prints each path's wall time, the two tables' per-op agreement and, for held-out archs measured end to end, each
table's MAPE. Run it on a quiet machine (it measures).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.fileio import write_json_atomic  # noqa: E402


def nas(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"nas {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="tiny")
    p.add_argument("--archs", type=int, default=10, help="held-out archs measured end to end (default 10)")
    p.add_argument("--out", default="bench_out/remote_device.json")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="remote-bench-"))

    t0 = time.perf_counter()
    local = work / "local.json"
    nas("lut", "build", "--device", "onnxruntime", "--space", args.space, "--out", str(local), "--no-progress")
    local_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    folder = work / "board"
    nas("lut", "build", "--device", "onnxruntime-remote", "--space", args.space, "--out", str(folder),
        "--no-progress")
    build_s = time.perf_counter() - t0
    blocker = work / "blocker" / "nas"        # as on a board without nas
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("nas is not installed here")\n')
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "measure_onnx.py", "manifest.json", "--out", "timings.json", "--no-progress"],
                   cwd=folder, check=True, capture_output=True, env={"PYTHONPATH": str(blocker.parent),
                                                                     "PATH": "/usr/bin:/bin"})
    run_s = time.perf_counter() - t0
    remote = work / "remote.json"
    nas("lut", "ingest", str(folder / "manifest.json"), str(folder / "timings.json"), "--out", str(remote))

    a, b = json.loads(local.read_text())["entries"], json.loads(remote.read_text())["entries"]
    ratios = [b[k]["median_ms"] / a[k]["median_ms"] for k in a if k in b]
    op_ratio = statistics.median(ratios)

    from nas.latency.build import measure_arch
    from nas.latency.devices import get_device
    from nas.latency.predict import load_predictor
    from nas.space import load_space

    space = load_space(args.space)
    predictors = {"local": load_predictor("onnxruntime", space.name, str(local)),
                  "remote path": load_predictor("onnxruntime-remote", space.name, str(remote))}
    errors: dict[str, list[float]] = {name: [] for name in predictors}
    device = get_device("onnxruntime")
    for k in range(args.archs):
        arch = space.sample(seed=900_000 + k)           # seeds no table calibrated on
        measured = measure_arch(device, arch, space).median_ms
        for name, predictor in predictors.items():
            errors[name].append(abs(predictor.predict(arch) - measured) / measured * 100)

    rows = {"local": {"wall_s": round(local_s, 1), "mape": statistics.fmean(errors["local"])},
            "remote path": {"wall_s": round(build_s + run_s, 1), "build_s": round(build_s, 1),
                            "runner_s": round(run_s, 1), "mape": statistics.fmean(errors["remote path"])}}
    print(f"space {args.space}: {len(a)} ops; remote / local per-op median ratio {op_ratio:.3f} "
          f"(ops in both: {len(ratios)})")
    print(f"{'table':<13}{'wall s':>8}{'MAPE vs measured':>18}   ({args.archs} held-out archs, local onnxruntime)")
    for name, r in rows.items():
        print(f"{name:<13}{r['wall_s']:>8.1f}{r['mape']:>17.1f}%")
    print(f"remote path: build {build_s:.1f} s here, runner {run_s:.1f} s 'there' (nas blocked from import)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(args.out), {"space": args.space, "ops": len(a), "op_ratio_median": op_ratio,
                                       "archs": args.archs, "tables": rows})


if __name__ == "__main__":
    main()
