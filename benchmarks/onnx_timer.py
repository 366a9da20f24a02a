"""Time one arch under ONNX Runtime in fp32 and in int8, in this fresh process, sharing no timing code with nas.

    python benchmarks/onnx_timer.py SPACE ARCH_JSON RECIPE_JSON [--runs 30]

The arch is built as a plain module (normal random initialisation), exported to ONNX, quantised by the recipe (the
int8 table's header field ``quantization``: which op types run in int8), and both sessions are timed in blocks of
calls taking turns, with ``time.perf_counter``; prints ``{"fp32_ms": ..., "int8_ms": ...}`` (medians).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
BLOCK, DROPPED = 10, 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("space")
    parser.add_argument("arch_json")
    parser.add_argument("recipe_json")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    import numpy as np
    import torch

    from nas.latency.quantize import Int8Recipe, onnx_bytes, quantize_onnx, session
    from nas.space import Arch, load_space
    from supernet.static import EfficientFormerNet

    torch.set_num_threads(1)
    space = load_space(args.space)
    torch.manual_seed(0)
    model = EfficientFormerNet.from_arch(Arch.from_json(args.arch_json, space), space).eval()
    x = torch.randn(1, 3, space.input_size, space.input_size)
    feed = {"x": np.ascontiguousarray(x.numpy())}
    float_model = onnx_bytes(model, x)
    recipe = Int8Recipe.from_dict(json.loads(args.recipe_json))
    sessions = {"fp32": session(float_model, 1), "int8": session(quantize_onnx(float_model, recipe, [feed]), 1)}
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(5):
            s.run(None, feed)
    # blocks of BLOCK calls per form, the forms taking turns (a drift hits both alike), the first calls of each
    # block dropped: one call of each in turn had each model evict the other's weights from the cache every
    # call, which slowed the fp32 model (the larger) by ~12% against a table timed one model at a time
    for _ in range(max(1, args.runs // BLOCK)):
        for name, s in sessions.items():
            for k in range(BLOCK + DROPPED):
                t = time.perf_counter()
                s.run(None, feed)
                if k >= DROPPED:
                    samples[name].append(1e3 * (time.perf_counter() - t))
    print(json.dumps({f"{k}_ms": statistics.median(v) for k, v in samples.items()}))


if __name__ == "__main__":
    main()
