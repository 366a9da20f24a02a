"""Does the trained supernet rank subnets as training them would? Inherited vs stand-alone accuracy.

    python benchmarks/supernet_ranking.py                      # tiny space, builtin:digits, 15 epochs, 10 archs
    python benchmarks/supernet_ranking.py --epochs 30 --archs 16

1. ``nas supernet train`` recipe (sandwich rule + in-place distillation) on the data, timed per step;
2. for the largest, the smallest and random archs: top-1 with inherited weights (BatchNorm recalibrated);
3. the same archs trained from scratch alone, same data order, schedule, optimiser and number of steps;
4. Kendall's tau between inherited and stand-alone top-1, and between the capacity proxy (the objective
   ``nas search`` uses without a supernet) and stand-alone top-1.

The weight-sharing claim holds if inherited accuracy ranks subnets like stand-alone training does (tau well above
0). Runs offline on a built-in dataset; on ImageNet the same script measures the real thing (``--data DIR``,
``--space efficientformer``), given the GPU hours. Writes bench_out/supernet_ranking.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas.latency.validate import kendall_tau  # noqa: E402
from nas.plots import plot_ranking  # noqa: E402
from nas.search.objectives import CapacityProxy  # noqa: E402
from supernet.config import TrainConfig  # noqa: E402
from supernet.evaluate import evaluate_model, evaluate_subnet  # noqa: E402
from supernet.static import EfficientFormerNet  # noqa: E402
from supernet.train import SupernetTrainer, make_optimizer  # noqa: E402


def train_standalone(trainer: SupernetTrainer, arch) -> EfficientFormerNet:
    """``arch`` trained alone with the supernet's data order, schedule and optimiser settings."""
    cfg = trainer.cfg
    torch.manual_seed(cfg.seed)
    model = EfficientFormerNet.from_arch(arch, trainer.space).train()
    opt = make_optimizer(model, cfg)
    for step in range(trainer.total_steps):
        images, labels = trainer.batch(step)
        for g in opt.param_groups:
            g["lr"] = trainer.lr_at(step)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels, label_smoothing=cfg.label_smoothing).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="tiny")
    p.add_argument("--data", default="builtin:digits")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--archs", type=int, default=10, help="archs compared (largest, smallest and random ones)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_out/supernet_ranking.json")
    args = p.parse_args()

    cfg = TrainConfig(space=args.space, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                      seed=args.seed)
    trainer = SupernetTrainer(cfg)
    size = trainer.space.input_size
    start = time.perf_counter()
    for _ in range(trainer.total_steps):
        trainer.train_step()
    supernet_s = time.perf_counter() - start
    print(f"supernet: {trainer.total_steps} steps ({args.epochs} epochs of {trainer.steps_per_epoch}) in "
          f"{supernet_s:.1f} s, {1000 * supernet_s / trainer.total_steps:.0f} ms/step "
          f"(largest + smallest + {cfg.num_random} random subnets per step)")

    rng = random.Random(args.seed + 1)
    archs = {"largest": trainer.space.largest(), "smallest": trainer.space.smallest()}
    while len(archs) < args.archs:
        a = trainer.space.sample(rng=rng)
        archs.setdefault(f"random{len(archs) - 1}", a)
    proxy = CapacityProxy(trainer.space)
    rows: list[dict[str, Any]] = []
    standalone_s = 0.0
    for name, arch in archs.items():
        inherited = evaluate_subnet(trainer.net, arch, cfg.data, cfg.val_images, cfg.bn_images)
        t0 = time.perf_counter()
        alone = evaluate_model(train_standalone(trainer, arch), cfg.data, size, cfg.val_images, cfg.bn_images)
        standalone_s += time.perf_counter() - t0
        rows.append({"name": name, "arch": arch.to_dict(), "inherited_top1": inherited, "standalone_top1": alone,
                     "capacity_proxy": proxy(arch)})
        print(f"  {name:<10} inherited {inherited:5.1f}%  stand-alone {alone:5.1f}%  proxy "
              f"{rows[-1]['capacity_proxy']:.4f}",
              flush=True)
    proxy.flush()

    inherited_all: list[float] = [r["inherited_top1"] for r in rows]
    alone_all: list[float] = [r["standalone_top1"] for r in rows]
    result = {
        "space": args.space, "data": args.data, "epochs": args.epochs, "steps": trainer.total_steps,
        "supernet_seconds": supernet_s, "supernet_ms_per_step": 1000 * supernet_s / trainer.total_steps,
        "standalone_seconds_total": standalone_s,
        "kendall_tau_inherited_vs_standalone": kendall_tau(inherited_all, alone_all),
        "kendall_tau_proxy_vs_standalone": kendall_tau([r["capacity_proxy"] for r in rows], alone_all),
        "mean_gap_pct_points": sum(a - i for a, i in zip(alone_all, inherited_all)) / len(rows),
        "archs": rows,
    }
    print(f"\n{'arch':<10} {'inherited':>9} {'stand-alone':>11}")
    for r in rows:
        print(f"{r['name']:<10} {r['inherited_top1']:9.1f} {r['standalone_top1']:11.1f}")
    print(f"Kendall tau, inherited vs stand-alone top-1: {result['kendall_tau_inherited_vs_standalone']:+.3f}")
    print(f"Kendall tau, capacity proxy vs stand-alone top-1: {result['kendall_tau_proxy_vs_standalone']:+.3f}")
    print(f"stand-alone minus inherited, mean: {result['mean_gap_pct_points']:+.1f} points; training the supernet "
          f"once took {supernet_s:.0f} s, training the {len(rows)} archs alone {standalone_s:.0f} s")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot_ranking(alone_all, inherited_all, [r["name"] for r in rows], out.with_suffix(".png"),
                 f"{args.space} on {args.data}: Kendall tau {result['kendall_tau_inherited_vs_standalone']:+.2f}")
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
