"""Which timing statistic repeats best on a shared machine? Evidence for ``nas.latency.timing``'s choice.

Takes K random archs of a space (end to end, the table's own backend) and measures each in 2R rounds, the rounds
interleaved in time (round r measures every arch once, then round r+1 starts). Each round is one
``time_until_stable`` measurement: warm-up, then repeats until the median settles. The rounds are split into two
independent halves (odd rounds, even rounds), each half summarised by each candidate statistic:

- ``first round``: one measurement back to back, what a build did before (the median of one round's samples);
- ``median of round medians`` over R rounds;
- ``minimum of round medians`` over R rounds (the least-disturbed round);
- ``trimmed mean of all samples`` (10% cut at each end) over R rounds;

and the two halves are compared: the statistic whose halves agree best (lowest mean |a - b| / mean) is the one
whose value another run would reproduce.

    python benchmarks/timing_statistics.py [--space tiny --archs 12 --rounds 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.latency.devices import get_device  # noqa: E402
from nas.latency.timing import DEFAULT_POLICY, time_until_stable  # noqa: E402
from nas.space import load_space  # noqa: E402
from supernet.static import EfficientFormerNet  # noqa: E402


def trimmed_mean(values: list[float], cut: float = 0.1) -> float:
    ordered = sorted(values)
    k = int(len(ordered) * cut)
    return float(np.mean(ordered[k:len(ordered) - k] if len(ordered) > 2 * k else ordered))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--space", default="efficientformer")
    p.add_argument("--archs", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3, help="rounds per half (2x this in all)")
    p.add_argument("--out", default="bench_out/timing_statistics.json")
    args = p.parse_args()

    device, space = get_device(args.device), load_space(args.space)
    if device.backend != "cpu":
        raise SystemExit("this benchmark times the torch CPU backend (devices cpu, cpu-2t)")
    torch.set_num_threads(device.threads)
    torch.set_flush_denormal(True)

    def measure_samples(model: torch.nn.Module, x: torch.Tensor) -> list[float]:
        """As CpuBackend.measure, keeping the samples."""
        def run() -> float:
            t = time.perf_counter()
            model(x)
            return time.perf_counter() - t

        out: list[float] = []
        with torch.inference_mode():
            time_until_stable(run, DEFAULT_POLICY, out)
        return out
    archs = [space.sample(seed=50_000 + i) for i in range(args.archs)]
    models = [EfficientFormerNet.from_arch(a, space).eval() for a in archs]
    x = torch.randn(device.batch, 3, space.input_size, space.input_size)
    started = time.perf_counter()
    # samples[round][arch] = the round's raw samples (ms); medians[round][arch]
    samples: list[list[list[float]]] = []
    for r in range(2 * args.rounds):
        row = []
        for model in models:
            row.append(measure_samples(model, x))
        samples.append(row)
        print(f"round {r + 1}/{2 * args.rounds} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    def halves(stat):
        a = [stat([samples[r][i] for r in range(0, 2 * args.rounds, 2)]) for i in range(args.archs)]
        b = [stat([samples[r][i] for r in range(1, 2 * args.rounds, 2)]) for i in range(args.archs)]
        return np.asarray(a), np.asarray(b)

    stats = {
        "first round (one back-to-back measurement)": lambda rounds: statistics.median(rounds[0]),
        "median of round medians": lambda rounds: statistics.median(statistics.median(r) for r in rounds),
        "minimum of round medians": lambda rounds: min(statistics.median(r) for r in rounds),
        "trimmed mean of all samples": lambda rounds: trimmed_mean([s for r in rounds for s in r]),
    }
    rows = {}
    print(f"{args.archs} archs of {space.name} on {device.name}, {2 * args.rounds} interleaved rounds, "
          f"{time.perf_counter() - started:.0f} s")
    print(f"{'statistic':<46}{'halves differ: mean %':>22}{'max %':>8}{'within 2%':>11}")
    for name, stat in stats.items():
        a, b = halves(stat)
        rel = np.abs(a - b) / ((a + b) / 2)
        rows[name] = {"mean_pct": float(100 * rel.mean()), "max_pct": float(100 * rel.max()),
                      "within_2pct": float(np.mean(rel <= 0.02))}
        print(f"{name:<46}{rows[name]['mean_pct']:>22.2f}{rows[name]['max_pct']:>8.2f}"
              f"{100 * rows[name]['within_2pct']:>10.0f}%")
    best = min(rows, key=lambda k: rows[k]["mean_pct"])
    print(f"most repeatable: {best}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": device.name, "space": space.name, "archs": args.archs,
                                          "rounds_per_half": args.rounds, "statistics": rows, "best": best,
                                          "date": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
