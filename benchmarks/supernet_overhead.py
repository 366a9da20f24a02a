"""Cost of running a subnet inside the supernet (slicing) instead of as the extracted plain model.

For each arch (the presets, then seeded random archs), one training step (forward, cross-entropy, backward) of
the supernet with that arch active and of the extracted subnet, interleaved (super, sub, super, sub, ...) so both
see the same machine noise; the ratio of medians is the overhead. Target: <= 1.15.

    python benchmarks/supernet_overhead.py                       # batch 8, 224, CPU, l1 l3 l7 + 3 random
    python benchmarks/supernet_overhead.py --space tiny --batch 4 --random 2 --repeats 3   # smoke run

Allocator: at batch 8 and 224 the activations are tens of MB, above glibc's mmap threshold, so by default every
step maps fresh pages and whichever op first touches them pays the page faults (we saw the same GELU take 9 ms
in one run and 79 ms in another). That noise swamps the slicing overhead being measured, so the script re-runs
itself with glibc's mmap and trim thresholds raised (the setting PyTorch CPU tuning guides recommend, applied to
both sides alike); ``--system-malloc`` measures with the default allocator instead.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.space import load_space  # noqa: E402
from supernet import Supernet  # noqa: E402

TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return time.perf_counter() - start


def measure(net: Supernet, arch, x, y, warmup: int, repeats: int) -> dict:
    net.set_active(arch)
    sub = net.extract(arch).train()
    for _ in range(warmup):
        train_step(net, x, y)
        train_step(sub, x, y)
    t_super, t_sub = [], []
    for _ in range(repeats):
        t_super.append(train_step(net, x, y))
        t_sub.append(train_step(sub, x, y))
    m_super, m_sub = statistics.median(t_super), statistics.median(t_sub)
    return {"super_ms": 1e3 * m_super, "sub_ms": 1e3 * m_sub, "ratio": m_super / m_sub,
            "params_m": sum(p.numel() for p in sub.parameters()) / 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="efficientformer")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--random", type=int, default=3, help="number of seeded random archs after the presets")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default="bench_out/supernet_overhead.json")
    p.add_argument("--system-malloc", action="store_true", help="keep glibc's default mmap/trim thresholds")
    args = p.parse_args()
    if not args.system_malloc and os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        env = {**os.environ, **TUNED_MALLOC}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = load_space(args.space)
    net = Supernet(space).train()
    size = space.input_size
    x = torch.randn(args.batch, 3, size, size)
    y = torch.randint(0, space.num_classes, (args.batch,))
    archs = [(name, space.preset(name)) for name in space.preset_names()]
    archs += [(f"random seed {s}", space.sample(seed=s)) for s in range(args.random)]

    rows = []
    print(f"supernet vs extracted subnet, train step (fwd+bwd), batch {args.batch}, {size}x{size}, "
          f"CPU {args.threads} threads, median of {args.repeats}, "
          f"{'system malloc' if args.system_malloc else 'glibc mmap/trim thresholds raised'}")
    print(f"{'arch':<16}{'params (M)':>11}{'supernet ms':>13}{'subnet ms':>11}{'ratio':>8}")
    for name, arch in archs:
        r = measure(net, arch, x, y, args.warmup, args.repeats)
        rows.append({"arch_name": name, "arch": arch.to_dict(), **r})
        print(f"{name:<16}{r['params_m']:>11.2f}{r['super_ms']:>13.1f}{r['sub_ms']:>11.1f}{r['ratio']:>8.3f}",
              flush=True)
    worst = max(r["ratio"] for r in rows)
    print(f"worst ratio {worst:.3f} (target <= 1.15)")
    malloc = {k: os.environ.get(k) for k in TUNED_MALLOC}
    result = {"benchmark": "supernet_overhead", "space": space.name, "malloc_env": malloc, "batch": args.batch,
              "input_size": size,
              "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
              "host": platform.node(), "cpu": platform.processor() or platform.machine(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows, "worst_ratio": worst}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
