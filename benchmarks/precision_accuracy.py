"""What int8 post-training quantisation costs in top-1, and what each mitigation buys back (issue #28).

    python benchmarks/precision_accuracy.py --supernet bench_out/ranking/tiny-default.pt --data builtin:objects \\
        --recipe-from bench_out/precision/onnxruntime-int8-efficientformer.json

For the largest, the smallest and N random archs of the supernet's space, the inherited subnet (BatchNorm
recalibrated, the search objective's recipe) is scored in float and after int8 quantisation by ONNX Runtime
(``nas.search.int8_accuracy``, the search objective at int8), under recipe variants:

- ``recipe``: the table's op types (those that run faster in int8 on the machine), per-channel weights, MinMax;
- ``per-tensor``: the same with one weight scale per tensor (what per-channel weights buy);
- ``percentile``: the same with ranges at the 99.999th percentile instead of min/max (outliers clipped);
- ``every type``: every op type the quantiser takes (no float fallback: what the fallback buys in accuracy).

The recipe is read from an int8 table (``--recipe-from``), by default the default space's: the tiny spaces' 32-pixel
nets gain nothing from int8 on a CPU, so their own recipe quantises little or nothing. Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.fileio import write_json_atomic  # noqa: E402
from nas.latency.quantize import CANDIDATE_OP_TYPES, Int8Recipe  # noqa: E402
from nas.search.int8_accuracy import int8_top1  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supernet", default="bench_out/ranking/tiny-default.pt")
    parser.add_argument("--data", default="builtin:objects")
    parser.add_argument("--recipe-from", default="bench_out/precision/onnxruntime-int8-efficientformer.json")
    parser.add_argument("--archs", type=int, default=6, help="random archs besides the largest and the smallest")
    parser.add_argument("--val-images", type=int, default=512)
    parser.add_argument("--bn-images", type=int, default=256)
    parser.add_argument("--out", default="bench_out/precision_accuracy.json")
    args = parser.parse_args()

    import torch

    from supernet.checkpoint import load_supernet

    torch.set_num_threads(1)
    net, _ = load_supernet(args.supernet)
    space = net.space
    header = json.loads(Path(args.recipe_from).read_text())["header"]
    recipe = Int8Recipe.from_dict(header["quantization"])
    variants = {"recipe": recipe, "per-tensor": replace(recipe, per_channel=False),
                "percentile": replace(recipe, calibration="percentile"),
                "every type": replace(recipe, op_types=CANDIDATE_OP_TYPES)}
    archs = {"largest": space.largest(), "smallest": space.smallest(),
             **{f"seed {i}": space.sample(seed=40_000 + i) for i in range(args.archs)}}
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name, arch in archs.items():
        row: dict[str, Any] = {"arch": name, "arch_json": arch.to_json()}
        for variant, r in variants.items():
            scored = int8_top1(net.extract(arch), args.data, space.input_size, r, args.val_images, args.bn_images)
            row["float_top1"] = scored["float_top1"]
            row[variant] = {"top1": scored["top1"], "drop": scored["float_top1"] - scored["top1"],
                            "agreement": scored["agreement"]}
        rows.append(row)
        print(f"{name:<10} float {row['float_top1']:5.1f}  " + "  ".join(
            f"{v} {row[v]['top1']:5.1f} ({-row[v]['drop']:+.1f})" for v in variants), file=sys.stderr)
    summary = {v: {"mean_drop": statistics.mean(r[v]["drop"] for r in rows),
                   "max_drop": max(r[v]["drop"] for r in rows),
                   "mean_agreement": statistics.mean(r[v]["agreement"] for r in rows)} for v in variants}
    report = {"supernet": args.supernet, "space": space.name, "data": args.data, "val_images": args.val_images,
              "recipe_from": args.recipe_from, "recipe": recipe.to_dict(), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "seconds": round(time.perf_counter() - started, 1), "summary": summary, "rows": rows,
              "target_drop_le_1_point": summary["recipe"]["max_drop"] <= 1.0}
    write_json_atomic(Path(args.out), report)
    print(f"{space.name}, {len(rows)} archs, {args.val_images} validation images of {args.data}; int8 "
          f"{', '.join(recipe.op_types) or 'nothing'} (from {args.recipe_from})")
    print(f"{'variant':<12} {'mean drop':>10} {'max drop':>9} {'top-1 agreement':>16}")
    for v, s in summary.items():
        print(f"{v:<12} {s['mean_drop']:>9.2f}p {s['max_drop']:>8.2f}p {s['mean_agreement']:>15.1f}%")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
