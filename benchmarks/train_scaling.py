"""Supernet training throughput: the local loop vs Ray Train with 1 and 2 workers, and what --sync-bn costs.

Every configuration trains the same run (tiny space, builtin:digits, global batch ``--batch-size``, ``--epochs``
epochs of ``--steps`` steps, SGD); the figure is the last epoch's images/s as the trainer logs it (training steps
only: the evaluation and checkpoint at each epoch's end are outside the clock), so Ray's start-up and the first
epoch's warm-up do not count. Step time = batch / (images/s).

- ``local, 1 thread``: the plain loop with ``torch.set_num_threads(1)``, the fair baseline for one Ray worker (Ray
  gives each 1-CPU worker one thread);
- ``local, all threads``: the plain loop as a user runs it without --num-workers;
- ``ray xN``: ``--num-workers N`` (gloo); with ``--sync-bn`` as well for N = 2.

Also written: how far the weights of 2 workers end from one local process's after ``--equivalence-steps`` steps
(batch 16), with and without --sync-bn, next to the float noise floor (the same local run on 1 vs all threads).
SGD, so that the difference is the math's, not Adam's amplification of rounding; and few steps, because this
training amplifies float noise: after 30 steps the 1-thread and 2-thread local runs differ by ~0.5 (measured), and
no comparison of weights means anything there.

    python benchmarks/train_scaling.py [--steps 10] [--epochs 3] [--batch-size 32]

Target (issue 16): the Ray Train overhead per step at one worker <= 10% of the local loop's (1 thread each). On a
2-core machine two workers cannot exceed 2x one; the sandwich step's all-reduce and sync BatchNorm are the cost.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from supernet.checkpoint import load_checkpoint_payload  # noqa: E402
from supernet.config import TrainConfig  # noqa: E402
from supernet.distributed import train_on_ray  # noqa: E402
from supernet.train import train_supernet  # noqa: E402


def run(cfg: TrainConfig, out: Path, workers: int | None) -> dict[str, Any]:
    started = time.perf_counter()
    if workers:
        result = train_on_ray(cfg, out, workers, progress=False, save_every=10**9)
    else:
        result = train_supernet(cfg, out, progress=False, save_every=10**9)
    last = result["history"][-1]
    return {"images_per_s": last["images_per_s"], "step_ms": 1000 * cfg.batch_size / last["images_per_s"],
            "wall_s": time.perf_counter() - started}


def max_difference(a: Path, b: Path) -> float:
    x, y = load_checkpoint_payload(a)["state_dict"], load_checkpoint_payload(b)["state_dict"]
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x if x[k].is_floating_point())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--equivalence-steps", type=int, default=4)
    p.add_argument("--out", default="bench_out/train_scaling.json")
    args = p.parse_args()

    base = dict(space="tiny", data="builtin:digits", epochs=args.epochs, batch_size=args.batch_size,
                max_train_images=args.batch_size * args.steps, val_images=64, bn_images=32, opt="sgd", lr=0.05)
    rows: dict[str, dict[str, Any]] = {}
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        torch.set_num_threads(1)
        rows["local, 1 thread"] = run(TrainConfig(**base), scratch / "local1.pt", None)
        torch.set_num_threads(threads)
        rows[f"local, {threads} threads"] = run(TrainConfig(**base), scratch / "local.pt", None)
        rows["ray x1"] = run(TrainConfig(**base), scratch / "ray1.pt", 1)
        rows["ray x2"] = run(TrainConfig(**base), scratch / "ray2.pt", 2)
        rows["ray x2 --sync-bn"] = run(TrainConfig(**base, sync_bn=True), scratch / "ray2s.pt", 2)

        short = {**base, "epochs": 1, "batch_size": 16, "max_train_images": 16 * args.equivalence_steps}
        eq = scratch / "eq"
        eq.mkdir()
        torch.set_num_threads(1)
        train_supernet(TrainConfig(**short, sync_bn=True), eq / "local1.pt", progress=False)
        torch.set_num_threads(threads)
        train_supernet(TrainConfig(**short, sync_bn=True), eq / "local.pt", progress=False)
        train_on_ray(TrainConfig(**short, sync_bn=True), eq / "ray2s.pt", 2, progress=False)
        train_on_ray(TrainConfig(**short), eq / "ray2.pt", 2, progress=False)
        long_noise = f"local, 1 vs {threads} threads after {args.epochs * args.steps} steps (float noise, amplified)"
        difference = {  # after --equivalence-steps steps, except the first
            long_noise: max_difference(scratch / "local1.pt", scratch / "local.pt"),
            "local, 1 vs all threads (float noise)": max_difference(eq / "local.pt", eq / "local1.pt"),
            "ray x2 --sync-bn vs local": max_difference(eq / "ray2s.pt", eq / "local.pt"),
            "ray x2 (per-worker BatchNorm) vs local": max_difference(eq / "ray2.pt", eq / "local.pt")}
    overhead = rows["ray x1"]["step_ms"] / rows["local, 1 thread"]["step_ms"] - 1
    print(f"{'configuration':<26}{'images/s':>10}{'step ms':>10}{'wall s':>9}")
    for name, row in rows.items():
        print(f"{name:<26}{row['images_per_s']:>10.1f}{row['step_ms']:>10.1f}{row['wall_s']:>9.1f}")
    print(f"Ray Train overhead per step at 1 worker: {100 * overhead:+.1f}% (target <= 10%)")
    speedup = rows["ray x2"]["images_per_s"] / rows["ray x1"]["images_per_s"]
    sync_cost = rows["ray x2 --sync-bn"]["step_ms"] / rows["ray x2"]["step_ms"] - 1
    print(f"2 workers vs 1 (Ray): {speedup:.2f}x; --sync-bn adds {100 * sync_cost:+.1f}% to the step")
    for name, value in difference.items():
        print(f"max |weight difference|, {name}: {value:.2e}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"config": base, "cores": threads, "rows": rows,
                                          "equivalence_steps": args.equivalence_steps,
                                          "ray_overhead_1_worker": overhead, "speedup_2_workers": speedup,
                                          "sync_bn_cost": sync_cost, "weight_difference": difference},
                                         indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
