"""The three token mixers side by side: latency on this CPU (PyTorch eager, 1 thread), ONNX Runtime, and the
iPhone 12 cost model's estimate, with parameters and MACs, at the last-stage widths C = 448 and 768 (7x7 tokens).

    python benchmarks/mixers.py                   # writes bench_out/mixers.json and prints one table
    python benchmarks/mixers.py --rounds 5        # more interleaved rounds on a noisy machine

Each row is measured twice: the mixer alone (``[1, 49, C]`` tokens in and out) and the whole MB3D block around it
(LayerNorm, mixer, LayerNorm, MLP with ratio 4, layer scales). The configurations are measured in interleaved
rounds (every configuration once per round, each a warmed-up median) and the median over rounds is reported, so
that a drift of the shared machine hits all of them alike; compare ratios within one run.

The iPhone column is the cost model (``nas.latency.costmodel``), fitted on published iPhone 12 latencies that
contain no EfficientViT-M or MobileViTv2 network: for CGA and SSA it is an extrapolation, not a calibrated estimate.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from nas.fileio import write_json_atomic  # noqa: E402
from nas.latency.costmodel.model import load_cost_model  # noqa: E402
from nas.latency.devices import get_device  # noqa: E402
from nas.latency.trace import trace_ops  # noqa: E402
from supernet import static  # noqa: E402
from supernet.mixers import build_static  # noqa: E402

# (mixer, heads, key dim): L1's MHSA, a light MHSA, EfficientViT's CGA at 4 and 8 heads (kd 16 as in all its
# models), and SSA (no knobs)
CONFIGS = [("mhsa", 8, 32), ("mhsa", 4, 16), ("cga", 4, 16), ("cga", 8, 16), ("ssa", 0, 0)]
# what the papers claim about their mixer (shared SEEDS.md), printed beside the measurements
CLAIMS = {
    "mhsa": "EfficientFormer: MHSA only in the last stage (7x7) keeps it cheap; reshapes, not FLOPs, cost on phones",
    "cga": "EfficientViT: fewer FLOPs and less memory traffic than MHSA; heads run one after another",
    "ssa": "MobileViTv2: O(k d) instead of O(k^2 d), element-wise ops only; 3.2x faster than MobileViT on a phone",
}
TOKENS = 49


def _modules(mixer: str, heads: int, key_dim: int, c: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"mixer": build_static(mixer, c, heads, key_dim, 4, 7).eval(),
            "block": static.MetaBlock1d(c, 4, heads, key_dim, mixer, 4, 7).eval()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=int, nargs="+", default=[448, 768])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--devices", nargs="+", default=["cpu", "onnxruntime"])
    p.add_argument("--out", default="bench_out/mixers.json")
    args = p.parse_args()

    cost_model = load_cost_model("iphone12")
    backends = {}
    for name in args.devices:
        backend = get_device(name).make_backend()
        ok, why = backend.available()
        if ok:
            backends[name] = backend
        else:
            print(f"skipping {name}: {why}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for c in args.widths:
        for mixer, heads, key_dim in CONFIGS:
            mods = _modules(mixer, heads, key_dim, c)
            row: dict[str, Any] = {"c": c, "mixer": mixer, "heads": heads, "key_dim": key_dim}
            for part, module in mods.items():
                x = torch.randn(1, TOKENS, c)
                records = trace_ops(module, x)
                row[f"{part}_params"] = sum(t.numel() for t in module.parameters())
                row[f"{part}_macs_m"] = sum(r.flops for r in records) / 2e6
                row[f"{part}_iphone12_ms"] = cost_model.op_ms(records)
                row[f"{part}_samples"] = {d: [] for d in backends}
            rows.append(row)
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
        for row in rows:
            mods = _modules(row["mixer"], row["heads"], row["key_dim"], row["c"])
            for part, module in mods.items():
                x = torch.randn(1, TOKENS, row["c"])
                for d, backend in backends.items():
                    row[f"{part}_samples"][d].append(backend.measure(module, x).median_ms)
    for row in rows:
        for part in ("mixer", "block"):
            samples = row.pop(f"{part}_samples")
            for d in backends:
                row[f"{part}_{d}_ms"] = statistics.median(samples[d])
    for c in args.widths:   # the measured ranking of the designs at this width (fastest first), per device
        same = [row for row in rows if row["c"] == c]
        for d in list(backends) + ["iphone12"]:
            order = sorted(same, key=lambda row: row[f"mixer_{d}_ms"])
            for rank, row in enumerate(order, 1):
                row[f"rank_{d}"] = rank

    header = (f"{'C':>4} {'mixer':<5} {'h':>2} {'kd':>3} {'params':>9} {'MMACs':>7} "
              + "".join(f"{d + ' ms':>16}" for d in backends) + f"{'iphone12* ms':>13}"
              + "".join(f"{'block ' + d:>16}" for d in backends) + f"{'block iph*':>11}")
    print(header)
    for row in rows:
        print(f"{row['c']:>4} {row['mixer']:<5} {row['heads'] or '-':>2} {row['key_dim'] or '-':>3} "
              f"{row['mixer_params']:>9,} {row['mixer_macs_m']:>7.1f} "
              + "".join(f"{row[f'mixer_{d}_ms']:>12.4f} (#{row[f'rank_{d}']})" for d in backends)
              + f"{row['mixer_iphone12_ms']:>9.4f} (#{row['rank_iphone12']})"
              + "".join(f"{row[f'block_{d}_ms']:>16.4f}" for d in backends) + f"{row['block_iphone12_ms']:>11.4f}")
    print("* iphone12: cost-model estimate; for cga and ssa an extrapolation (no published iPhone latency of "
          "EfficientViT-M or MobileViTv2 in its calibration set)")
    for mixer, claim in CLAIMS.items():
        print(f"  {mixer}: {claim}")
    result = {"benchmark": "mixers", "tokens": TOKENS, "rounds": args.rounds, "devices": list(backends),
              "torch_threads": 1, "rows": rows, "claims": CLAIMS,
              "command": "python benchmarks/mixers.py " + " ".join(sys.argv[1:])}
    write_json_atomic(Path(args.out), result)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
