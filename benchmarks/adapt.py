"""Few-shot adaptation of a table to a new device (``nas lut adapt``) against a full build of that device.

The new device is ``cpu-2t`` (this CPU, 2 threads) and the source the ``cpu`` table (1 thread). Held-out truth: 30
random archs measured end to end on the new device (2 rounds, median; seeds no adaptation uses). For N = 5, 10, 20,
40: adapt from N archs measured there, and report held-out MAPE, within ±10% and wall time; beside them, a full
``nas lut build`` of the new device (every op, 10 calibration archs) on the same 30 archs, and the repeatability of
the held-out measurements themselves (round 2 against round 1).

    python benchmarks/adapt.py [--source bench_out/lut_cpu.json --device cpu-2t --full bench_out/lut_cpu2t.json]

Also N = 20 with 5 timed runs per arch (``--compare-repeats``) beside the default 3, the evidence for the default.

Target (issue 17): N = 20 within 1.5x the full build's held-out MAPE, in <= 10% of its time.

Adapting to another precision (``nas lut adapt --precision int8``) is measured by ``benchmarks/precision.py``,
beside the full int8 build and the simplest published-style baseline (a ridge regression over this machine's other
tables, HELP's comparison), on the same held-out archs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.latency.adapt import adapt_table  # noqa: E402
from nas.latency.build import build_table  # noqa: E402
from nas.latency.predict import LutPredictor  # noqa: E402
from nas.latency.validate import error_metrics, measure_rounds  # noqa: E402
from nas.space import load_space  # noqa: E402

HELD_OUT_SEED_BASE = 40_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="bench_out/lut_cpu.json", help="table of the known device")
    p.add_argument("--source-device", default="cpu")
    p.add_argument("--device", default="cpu-2t", help="the new device")
    p.add_argument("--space", default="efficientformer")
    p.add_argument("--full", default="bench_out/lut_cpu2t.json", help="full build of the new device (made if absent)")
    p.add_argument("--n", default="5,10,20,40")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per arch in adaptation (nas lut adapt's default)")
    p.add_argument("--compare-repeats", type=int, default=5,
                   help="also adapt N=20 with this many timed runs per arch, to show the choice (0: skip)")
    p.add_argument("--held-out", type=int, default=30)
    p.add_argument("--out", default="bench_out/adapt.json")
    p.add_argument("--reuse", action="store_true",
                   help="reuse the held-out measurements and the full build (and its time) of an earlier run")
    args = p.parse_args()

    space = load_space(args.space)
    if not Path(args.source).exists():
        build_table(args.source_device, args.space, args.source, produced_by="benchmarks/adapt.py")
    archs = [space.sample(seed=HELD_OUT_SEED_BASE + i) for i in range(args.held_out)]
    cache = Path(args.out).with_name("adapt_held_out.json")
    if args.reuse and cache.exists():
        saved = json.loads(cache.read_text())
        rounds, full_seconds = saved["rounds_ms"], saved["full_build_seconds"]
    else:
        rounds = measure_rounds(args.device, archs, space, 2, desc="held-out")
        Path(args.full).unlink(missing_ok=True)
        started = time.perf_counter()
        build_table(args.device, args.space, args.full, produced_by="benchmarks/adapt.py")
        full_seconds = time.perf_counter() - started
        cache.write_text(json.dumps({"rounds_ms": rounds, "full_build_seconds": full_seconds}))
    truth = [statistics.median(r[i] for r in rounds) for i in range(len(archs))]
    floor = error_metrics(rounds[1], rounds[0])

    rows = []
    full = LutPredictor.from_file(args.full)
    full_metrics = error_metrics([full.predict(a) for a in archs], truth)
    rows.append({"method": "full build", "n": len(full.table.entries), "seconds": full_seconds, **full_metrics})
    runs = [(int(v), args.repeats) for v in args.n.split(",")]
    if args.compare_repeats:
        runs.append((20, args.compare_repeats))
    for n, repeats in runs:
        out = Path(args.out).with_name(f"adapt_{args.device}_{n}_{repeats}r.json")
        started = time.perf_counter()
        _, report = adapt_table(args.device, args.source, n, out, repeats=repeats)
        seconds = time.perf_counter() - started
        adapted = LutPredictor.from_file(out)
        metrics = error_metrics([adapted.predict(a) for a in archs], truth)
        rows.append({"method": f"adapt N={n} ({repeats}r)", "n": n, "repeats": repeats, "seconds": seconds,
                     "share_of_full_build": seconds / full_seconds, "loo_mape": report["loo_mape"],
                     "ridge": report["ridge"], "scales": report["scales"],
                     "mape_over_full": metrics["mape"] / full_metrics["mape"], **metrics})

    print(f"{args.source_device} -> {args.device}, {args.space}, {len(archs)} held-out archs "
          f"(their own repeatability: MAPE {floor['mape']:.2f}%, within ±10% {100 * floor['within_10pct']:.0f}%)")
    print(f"{'method':<19}{'held-out MAPE %':>16}{'x full':>8}{'within ±10%':>13}{'Kendall tau':>13}{'wall s':>9}"
          f"{'x full':>8}")
    for r in rows:
        secs = f"{r['seconds']:.1f}" if r["seconds"] is not None else "(built before)"
        ratio = f"{r['mape_over_full']:.2f}" if "mape_over_full" in r else ""
        share = f"{100 * r['share_of_full_build']:.1f}%" if "share_of_full_build" in r else ""
        print(f"{r['method']:<19}{r['mape']:>16.2f}{ratio:>8}{100 * r['within_10pct']:>12.0f}%"
              f"{r['kendall_tau']:>13.3f}{secs:>9}{share:>8}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"source": args.source, "device": args.device, "space": args.space,
                                          "held_out": len(archs), "repeatability": floor, "rows": rows,
                                          "date": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
