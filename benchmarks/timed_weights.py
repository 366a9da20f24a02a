"""Networks built only to be timed: random initialisation against weights from a pool (``pooled_init``).

For K random archs of a space: the time to build each network both ways, and its latency both ways, timed in
interleaved runs (one of each in turn, so both see the same machine). The pool must cut the build time and leave
the latency unchanged (ratio ~1).

    python benchmarks/timed_weights.py [--space efficientformer_hybrid --archs 6 --runs 8]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.latency.weights import pooled_init  # noqa: E402
from nas.space import load_space  # noqa: E402
from supernet.static import EfficientFormerNet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="efficientformer_hybrid")
    p.add_argument("--archs", type=int, default=6)
    p.add_argument("--runs", type=int, default=8, help="timed runs of each network, interleaved")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench_out/timed_weights.json")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    x = torch.randn(1, 3, space.input_size, space.input_size)
    rows = []
    for i in range(args.archs):
        arch = space.sample(seed=60_000 + i)
        started = time.perf_counter()
        real = EfficientFormerNet.from_arch(arch, space).eval()
        built_real = time.perf_counter() - started
        started = time.perf_counter()
        with pooled_init():
            pooled = EfficientFormerNet.from_arch(arch, space).eval()
        built_pooled = time.perf_counter() - started
        times: dict[str, list[float]] = {"random": [], "pooled": []}
        with torch.inference_mode():
            real(x), pooled(x)                       # warm-up
            for _ in range(args.runs):
                for name, model in (("random", real), ("pooled", pooled)):
                    started = time.perf_counter()
                    model(x)
                    times[name].append(1e3 * (time.perf_counter() - started))
        rows.append({"seed": 60_000 + i, "build_random_s": built_real, "build_pooled_s": built_pooled,
                     "latency_random_ms": statistics.median(times["random"]),
                     "latency_pooled_ms": statistics.median(times["pooled"])})

    print(f"{args.space}, {args.threads} thread(s), {args.runs} interleaved runs each")
    print(f"{'seed':>6} {'build random s':>15} {'build pooled s':>15} {'random ms':>10} {'pooled ms':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['seed']:>6} {r['build_random_s']:>15.3f} {r['build_pooled_s']:>15.3f} "
              f"{r['latency_random_ms']:>10.1f} {r['latency_pooled_ms']:>10.1f} "
              f"{r['latency_pooled_ms'] / r['latency_random_ms']:>6.3f}")
    summary = {"build_random_s": statistics.median(r["build_random_s"] for r in rows),
               "build_pooled_s": statistics.median(r["build_pooled_s"] for r in rows),
               "latency_ratio": statistics.median(r["latency_pooled_ms"] / r["latency_random_ms"] for r in rows)}
    print(f"medians: build {summary['build_random_s']:.3f} s -> {summary['build_pooled_s']:.3f} s; latency ratio "
          f"pooled / random {summary['latency_ratio']:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"space": args.space, "threads": args.threads, "runs": args.runs,
                                          "rows": rows, "summary": summary,
                                          "date": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
