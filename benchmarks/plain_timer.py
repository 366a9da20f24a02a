"""Time one arch the way a user would, sharing no timing code with the table builder (``nas.latency``).

    python benchmarks/plain_timer.py SPACE ARCH_JSON [--threads 1] [--device cpu|cuda]

Run in a fresh process per arch by ``benchmarks/lut_fidelity.py``: the arch is built as a plain module with its
normal random initialisation, run 10 times to warm up, then 25 times under ``time.perf_counter`` (CUDA
synchronised around each call); prints the median in milliseconds as JSON. Nothing of the builder's warm-up rule,
stopping rule, weight pool or process state is involved.
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
from nas.space import Arch, load_space  # noqa: E402
from supernet.static import EfficientFormerNet  # noqa: E402

WARMUP, REPEATS = 10, 25


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space")
    p.add_argument("arch_json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    model = EfficientFormerNet.from_arch(Arch.from_json(args.arch_json, space), space).eval().to(args.device)
    x = torch.randn(1, 3, space.input_size, space.input_size, device=args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(WARMUP):
            model(x)
        sync()
        samples = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            model(x)
            sync()
            samples.append(time.perf_counter() - start)
    print(json.dumps(1e3 * statistics.median(samples)))


if __name__ == "__main__":
    main()
