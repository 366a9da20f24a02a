"""How long a full table takes to build, and how fast prediction is.

    python benchmarks/lut_speed.py                 # CPU table of the default space (target <= 10 min on 2 cores)
    python benchmarks/lut_speed.py --skip-build    # prediction speed only, on an existing table

Prediction speed: the vectorised path (``LutPredictor.predict_batch`` on an ``ArchBatch`` of 100,000 random archs;
target >= 100,000 archs/s), and for comparison the per-arch path (``predict`` on ``Arch`` objects).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.latency.build import build_table  # noqa: E402
from nas.latency.ops import space_ops  # noqa: E402
from nas.latency.predict import LutPredictor, sample_batch  # noqa: E402
from nas.space import load_space  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--space", default="efficientformer")
    p.add_argument("--table", default="bench_out/lut_cpu.json")
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--n", type=int, default=100_000, help="archs per vectorised prediction")
    p.add_argument("--out", default="bench_out/lut_speed.json")
    args = p.parse_args()

    space = load_space(args.space)
    result: dict = {"benchmark": "lut_speed", "device": args.device, "space": space.name,
                    "ops_in_space": len(space_ops(space))}
    if not args.skip_build:
        Path(args.table).unlink(missing_ok=True)
        start = time.perf_counter()
        table, _ = build_table(args.device, args.space, args.table, calibrate=10, progress=True,
                               produced_by=f"benchmarks/lut_speed.py --device {args.device}")
        result["build_seconds"] = time.perf_counter() - start
        result["build_entries"] = len(table.entries)
        result["calibration_archs"] = len(table.calibration)
    predictor = LutPredictor.from_file(args.table, space)

    batch = sample_batch(space, args.n, seed=0)
    predictor.predict_batch(batch)          # builds the dense lookup arrays once
    times = []
    for _ in range(5):
        t = time.perf_counter()
        predictor.predict_batch(batch)
        times.append(time.perf_counter() - t)
    result["vectorised_archs_per_s"] = args.n / statistics.median(times)
    t = time.perf_counter()
    sample_batch(space, args.n, seed=1)
    result["vectorised_sampling_archs_per_s"] = args.n / (time.perf_counter() - t)
    archs = [space.sample(seed=s) for s in range(2000)]
    t = time.perf_counter()
    for a in archs:
        predictor.predict(a)
    result["per_arch_archs_per_s"] = len(archs) / (time.perf_counter() - t)

    print(f"{'measure':<44}{'value':>16}")
    if "build_seconds" in result:
        print(f"{'full table build (' + str(result['build_entries']) + ' ops + 10 archs), s':<44}"
              f"{result['build_seconds']:>16.1f}")
    print(f"{'vectorised prediction, archs/s':<44}{result['vectorised_archs_per_s']:>16,.0f}")
    print(f"{'vectorised random sampling, archs/s':<44}{result['vectorised_sampling_archs_per_s']:>16,.0f}")
    print(f"{'per-arch prediction (Arch objects), archs/s':<44}{result['per_arch_archs_per_s']:>16,.0f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
