"""Convert every op of a space to Core ML, as ``nas lut build --device iphone12`` does (iOS 16 mlprogram, fp16),
without saving the packages: which ops convert, and how long conversion takes.

    python benchmarks/coreml_conversion.py --space efficientformer_hybrid --only-new   # the ops CGA/SSA add
    python benchmarks/coreml_conversion.py --space efficientformer                    # all 763 ops

Writes bench_out/coreml_conversion_<space>.json and prints a table per op kind (and per mixer). Two processes:
the conversions are independent and the machines have two cores.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.fileio import write_json_atomic  # noqa: E402
from nas.latency.coreml.convert import check_conversions  # noqa: E402
from nas.latency.ops import space_ops  # noqa: E402
from nas.space import DEFAULT_SPACE, load_space  # noqa: E402


def _group(key: str) -> str:
    kind = key.split("|")[0]
    mixer = next((f.split("=")[1] for f in key.split("|") if f.startswith("mixer=")), None)
    return f"{kind} ({mixer})" if mixer else kind


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default=DEFAULT_SPACE)
    p.add_argument("--only-new", action="store_true", help=f"only ops the {DEFAULT_SPACE!r} space does not have")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out")
    args = p.parse_args()

    ops = space_ops(load_space(args.space))
    if args.only_new:
        known = set(space_ops(load_space(DEFAULT_SPACE)))
        ops = [op for op in ops if op not in known]
    keys = [op.key for op in ops]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        problems = [q for chunk in pool.map(check_conversions, [keys[i::args.workers] for i in range(args.workers)])
                    for q in chunk]
    seconds = time.perf_counter() - start
    failed = Counter(_group(q.split(":")[0]) for q in problems)
    total = Counter(_group(k) for k in keys)
    print(f"{'ops':<16} {'count':>6} {'converted':>10}")
    for group, n in sorted(total.items()):
        print(f"{group:<16} {n:>6} {n - failed[group]:>10}")
    print(f"{len(keys) - len(problems)}/{len(keys)} ops converted in {seconds:.0f} s ({args.workers} processes)")
    for q in problems[:10]:
        print("  " + q)
    out = Path(args.out or f"bench_out/coreml_conversion_{args.space}{'_new' if args.only_new else ''}.json")
    write_json_atomic(out, {"benchmark": "coreml_conversion", "space": args.space, "only_new": args.only_new,
                            "ops": len(keys), "converted": len(keys) - len(problems), "problems": problems,
                            "by_group": {g: {"ops": n, "converted": n - failed[g]} for g, n in total.items()},
                            "seconds": seconds, "target": "iOS16 mlprogram fp16",
                            "command": "python benchmarks/coreml_conversion.py " + " ".join(sys.argv[1:])})
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
