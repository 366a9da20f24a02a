"""Does the table predict whole networks? N random subnets of the space, measured end to end with the table's
backend, against the prediction (held-out archs: not those the correction was fitted on).

    python benchmarks/lut_fidelity.py                          # CPU, 1 thread, 30 archs at 224, table from lut_speed.py
    python benchmarks/lut_fidelity.py --device cuda --table bench_out/lut_cuda.json   # on a GPU machine

Targets (CPU): >= 95% within +-10%, MAPE <= 5%.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.latency.build import build_table  # noqa: E402
from nas.latency.predict import LutPredictor  # noqa: E402
from nas.latency.validate import validate_table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--space", default="efficientformer")
    p.add_argument("--table", default="bench_out/lut_cpu.json")
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--out", default="bench_out/lut_fidelity.json")
    args = p.parse_args()

    if not Path(args.table).exists():
        build_table(args.device, args.space, args.table, calibrate=10, produced_by="benchmarks/lut_fidelity.py")
    predictor = LutPredictor.from_file(args.table)
    plot = str(Path(args.out).with_suffix(".png"))
    report = validate_table(predictor, args.device, args.n, plot=plot)
    print(f"{'arch':>5}{'predicted ms':>14}{'measured ms':>13}{'error':>9}")
    for i, row in enumerate(report["rows"]):
        err = (row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"]
        print(f"{i:>5}{row['predicted_ms']:>14.3f}{row['measured_ms']:>13.3f}{100 * err:>8.1f}%")
    print(f"MAPE {report['mape']:.2f}% (target <= 5%), within ±10% {100 * report['within_10pct']:.1f}% "
          f"(target >= 95%), within ±5% {100 * report['within_5pct']:.1f}%, Kendall tau {report['kendall_tau']:.3f}")
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out} and {plot}")


if __name__ == "__main__":
    main()
