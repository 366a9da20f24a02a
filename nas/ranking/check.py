"""``nas supernet rank``: does a trained supernet rank archs the way training each of them alone would?

A search trusts inherited accuracy (a subnet's weights taken from the supernet, BatchNorm recalibrated) to order
archs as their stand-alone training would; this check measures that trust on the user's own supernet and data:

1. **archs**: ``archs`` points spread over the latency range of a device's table (the smallest and the largest,
   and one arch from each of ``archs - 2`` equal-width latency bins in between, drawn from a seeded pool), so the
   check covers what a search under any budget chooses among;
2. **inherited** top-1 of each from the checkpoint, and the training-free scores of each (the capacity proxy the
   search defaults to, the parameter count, and the zero-cost proxies of ``nas.search.zero_cost``);
3. **stand-alone** top-1 of each, trained from scratch with the supernet's own recipe (``supernet.standalone``),
   here or on Ray workers, one training per task;
4. the **noise floor**: the arch of median latency trained again with ``seeds - 1`` more seeds; its seed-to-seed
   spread gives the τ a perfect predictor would be measured at (``stats.noise_ceiling``);
5. the **report**: Kendall τ, Spearman ρ and top-k overlap of every score against stand-alone top-1 with bootstrap
   95% intervals, a plot, and ``report.json``.

Everything lands in ``OUT/`` (default: ``CKPT`` with ``.rank``): ``state.json`` is rewritten atomically after every
finished piece, so ``--resume`` after a kill redoes nothing that finished; ``report.json`` and ``rank.png`` at the
end.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import UsageError
from nas.fileio import mark_owned, write_json_atomic
from nas.ranking.jobs import Job
from nas.ranking.settings import RankSettings, check_settings, parallelism
from nas.ranking.state import RankState
from nas.ranking.stats import Agreement, agreement, default_top_k, noise_ceiling
from nas.ranking.training import train_missing
from nas.space import Arch, SearchSpace

POOL = 4000             # random archs the stratified sample is drawn from
# scores reported beside inherited accuracy: the search's default objective and the parameter count; the
# zero-cost proxies are added from their registry
BASELINES = ("capacity", "params")


@dataclass
class RankedArch:
    name: str
    arch: Arch
    latency_ms: float
    scores: dict[str, float] = field(default_factory=dict)   # inherited, capacity, params, zero-cost proxies
    standalone: float | None = None                            # replica 0's top-1

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arch": self.arch.to_dict(), "latency_ms": self.latency_ms,
                "standalone_top1": self.standalone, **{k: v for k, v in self.scores.items()}}


# --------------------------------------------------------------------------------------------------- setup


def _supernet_recipe(s: RankSettings, meta: dict[str, Any]) -> Any:
    """The TrainConfig the supernet was trained with (stand-alone trainings follow it)."""
    from supernet.config import TrainConfig

    config = (meta.get("trained") or {}).get("config")
    if not isinstance(config, dict):
        raise UsageError(f"{s.checkpoint} records no training recipe (not written by nas supernet train); the "
                         "check trains each arch alone with the supernet's recipe, so it needs one")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in config.items() if k in known})
    unknown = sorted(set(s.recipe) - known)
    if unknown:
        raise UsageError(f"stand-alone recipe setting {unknown[0]!r} is not a training setting")
    return dataclasses.replace(cfg, **s.recipe)


def _predictor(s: RankSettings, space: SearchSpace, out: Path) -> Any:
    """The table the archs are spread over: ``--lut``, the device's table of this space, or, for a device priced
    by a cost model (iphone12), an estimate written into ``out`` (seconds; said on stderr)."""
    from nas.latency.devices import ESTIMATED, get_device
    from nas.latency.paths import default_table_path
    from nas.latency.predict import LutPredictor, load_predictor

    device = get_device(s.device)
    if s.lut or default_table_path(s.device, space.name).exists() or ESTIMATED not in device.table_sources:
        return load_predictor(s.device, space.name, s.lut)
    from nas.latency.costmodel.estimate import estimate_table
    from nas.latency.costmodel.model import load_cost_model

    path = out / f"latency-{s.device}-{space.name}.json"
    if not path.exists():
        print(f"nas: note: no {s.device} table of space {space.name!r}; spreading the archs over an estimated one "
              f"({path})", file=sys.stderr)
        estimate_table(device, space, load_cost_model(s.device), path, progress=False)
    return LutPredictor.from_file(path)


def stratified_archs(space: SearchSpace, predictor: Any, k: int, seed: int) -> list[tuple[str, Arch, float]]:
    """``k`` archs spread over the predicted latency range: the smallest, the largest, and one from each of
    ``k - 2`` equal-width bins between their latencies (the pool arch nearest the bin's centre, from a seeded
    random pool; a bin no pool arch falls in takes the nearest one not taken)."""
    from nas.latency.predict import sample_batch

    ends = [("smallest", space.smallest()), ("largest", space.largest())]
    lo, hi = (predictor.predict(a) for _, a in ends)
    batch = sample_batch(space, POOL, seed)
    latency = np.asarray(predictor.predict_batch(batch), float)
    taken: set[int] = set()
    chosen: list[tuple[str, Arch, float]] = [(ends[0][0], ends[0][1], lo)]
    width = (hi - lo) / max(1, k - 2)
    for b in range(k - 2):
        centre = lo + (b + 0.5) * width
        order = np.argsort(np.abs(latency - centre), kind="stable")
        i = int(next(j for j in order if int(j) not in taken))
        taken.add(i)
        chosen.append((f"arch{b + 1:02d}", batch.arch(space, i), float(latency[i])))
    chosen.append((ends[1][0], ends[1][1], hi))
    return chosen


# --------------------------------------------------------------------------------------------------- the check


def run_check(s: RankSettings) -> dict[str, Any]:
    """Run (or resume) the check and return its report (also written to ``OUT/report.json``)."""
    from nas.data import num_classes
    from supernet.checkpoint import file_digest, load_supernet
    from supernet.standalone import standalone_config

    check_settings(s)
    started = time.perf_counter()
    net, meta = load_supernet(s.checkpoint)
    space = net.space
    if s.space and s.space not in (space.name, space.source):
        raise UsageError(f"--space {s.space}: {s.checkpoint} is a supernet of space {space.name!r}; drop --space or "
                         "give that supernet's space")
    cfg = _supernet_recipe(s, meta)
    data = s.data or cfg.data
    if num_classes(data) > net.num_classes:
        raise UsageError(f"--data {data} has {num_classes(data)} classes, the supernet {s.checkpoint} was trained for "
                         f"{net.num_classes}; give the data it was trained on")
    val_images, bn_images = s.val_images or cfg.val_images, s.bn_images or cfg.bn_images
    alone = standalone_config(dataclasses.replace(cfg, data=data), cfg.seed, s.epochs)
    out = s.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    mark_owned(out, "supernet rank")
    at_once, threads = parallelism(s)
    fingerprint = {"archs": s.archs, "seeds": s.seeds, "seed": s.seed, "device": s.device, "data": data,
                   "val_images": val_images, "bn_images": bn_images, "standalone_recipe": alone.to_dict(),
                   "threads": threads, "torch_device": s.torch_device,
                   "supernet_sha256": file_digest(s.checkpoint)}
    state = RankState.open(out / "state.json", fingerprint, s.resume)
    if not state.archs:
        predictor = _predictor(s, space, out)
        state.archs = [{"name": n, "arch": a.to_dict(), "latency_ms": ms}
                       for n, a, ms in stratified_archs(space, predictor, s.archs, s.seed)]
        state.save()
    ranked = [RankedArch(r["name"], space.arch_from_dict(r["arch"]), float(r["latency_ms"])) for r in state.archs]

    _score_archs(state, ranked, net, space, data, val_images, bn_images, s)
    noise_index = int(np.argsort([r.latency_ms for r in ranked])[len(ranked) // 2])
    jobs = [Job(i, 0, space, r.arch, alone, net.num_classes, data, val_images, bn_images, s.torch_device, threads)
            for i, r in enumerate(ranked)]
    jobs += [Job(noise_index, rep, space, ranked[noise_index].arch, dataclasses.replace(alone, seed=alone.seed + rep),
                 net.num_classes, data, val_images, bn_images, s.torch_device, threads) for rep in range(1, s.seeds)]
    from supernet.batches import StepBatches

    steps_per_job = StepBatches(alone, space.input_size).total_steps
    # slowest first (latency stands in for training time), so that parallel trainings end together rather than
    # one large arch running alone at the end; each training is seeded on its own, so the order changes no figure
    missing = sorted((j for j in jobs if j.key not in state.trainings), key=lambda j: -ranked[j.index].latency_ms)
    train_missing(state, missing, s, steps_per_job, at_once)
    for i, r in enumerate(ranked):
        r.scores = dict(state.scores[r.name])
        r.standalone = float(state.trainings[f"{i}:0"]["top1"])
    floor = [float(state.trainings[f"{noise_index}:{rep}"]["top1"]) for rep in range(s.seeds)]
    report = _report(s, ranked, floor, ranked[noise_index].name, alone, data, val_images, bn_images, space,
                     net.num_classes, time.perf_counter() - started, out)
    write_json_atomic(out / "report.json", report)
    return report


def _score_archs(state: RankState, ranked: list[RankedArch], net: Any, space: SearchSpace, data: str,
                 val_images: int, bn_images: int, s: RankSettings) -> None:
    """Inherited top-1 and the training-free scores of every arch not scored yet (here: seconds each)."""
    from tqdm import tqdm

    from nas.latency.counts import OpCounts
    from nas.search.zero_cost import ZERO_COST, proxy_batch, score
    from supernet.evaluate import evaluate_subnet

    todo = [r for r in ranked if r.name not in state.scores]
    if not todo:
        return
    counts = OpCounts(space)
    images, labels = proxy_batch(data, space.input_size)
    net.to(s.torch_device)
    for r in tqdm(todo, desc="inherited top-1", unit="arch", disable=not s.progress, dynamic_ncols=True):
        params, macs = counts.counts(r.arch)
        scores = {"inherited": evaluate_subnet(net, r.arch, data, val_images, bn_images, s.torch_device),
                  "capacity": math.sqrt(params / 1e6 * macs / 1e9), "params": params / 1e6}
        for name in ZERO_COST:
            scores[name] = score(name, r.arch, space, images, labels, net.num_classes)
        state.scores[r.name] = scores
        state.save()
    counts.save()


# --------------------------------------------------------------------------------------------------- report


def _report(s: RankSettings, ranked: list[RankedArch], floor: list[float], floor_arch: str, alone: Any, data: str,
            val_images: int, bn_images: int, space: SearchSpace, classes: int, wall_s: float,
            out: Path) -> dict[str, Any]:
    from nas.data import describe
    from nas.plots import plot_rank_check

    truth = [float(r.standalone) for r in ranked if r.standalone is not None]
    k = s.top_k or default_top_k(len(ranked))
    names = ["inherited", *BASELINES, *[n for n in ranked[0].scores if n not in ("inherited", *BASELINES)]]
    agreements: dict[str, Agreement] = {n: agreement([r.scores[n] for r in ranked], truth, k, s.bootstrap)
                                        for n in names}
    noise_std = float(np.std(floor, ddof=1))
    ceiling = noise_ceiling(truth, noise_std)
    tau = agreements["inherited"].kendall_tau
    proxy = agreements["capacity"].kendall_tau
    report: dict[str, Any] = {
        "supernet": s.checkpoint, "space": space.name, "data": data, "val": describe(data, "val"),
        "classes": classes, "archs": [r.to_dict() for r in ranked],
        "agreement": {n: a.to_dict() for n, a in agreements.items()},
        "noise_floor": {"arch": floor_arch, "top1": floor, "std": noise_std, "range": max(floor) - min(floor),
                        "tau_ceiling": ceiling, "standalone_spread_std": float(np.std(truth, ddof=1))},
        "standalone_recipe": {"epochs": alone.epochs, "batch_size": alone.batch_size, "lr": alone.lr,
                              "weight_decay": alone.weight_decay, "warmup_epochs": alone.warmup_epochs,
                              "label_smoothing": alone.label_smoothing, "opt": alone.opt, "seed": alone.seed,
                              "proxy_for": "training each arch alone to convergence: the supernet's own schedule, "
                                           "from scratch; a shorter --epochs ranks like the full schedule only "
                                           "approximately"},
        "evaluation": {"val_images": val_images, "bn_images": bn_images},
        "device": s.device, "top_k": k, "bootstrap": s.bootstrap, "seed": s.seed,
        "verdict": verdict(tau.value, tau.low, proxy.value, ceiling),
        "out": str(out), "plot": str(out / "rank.png"), "wall_s": round(wall_s, 1),
    }
    plot_rank_check(report, out / "rank.png")
    return report


def verdict(tau: float, tau_low: float, proxy_tau: float, ceiling: float) -> str:
    """One line a user acts on."""
    if not math.isfinite(tau):
        return "no verdict: the stand-alone top-1 of every arch is equal (train longer or use harder data)"
    if ceiling < 0.5:
        return (f"inconclusive: seed-to-seed noise alone limits a perfect ranking to tau {ceiling:.2f}; train the "
                "archs longer, score more validation images, or check more archs")
    if tau_low > proxy_tau:
        return (f"trust it: tau {tau:.2f} (the lower end of its interval, {tau_low:.2f}, is above the capacity "
                f"proxy's {proxy_tau:.2f}); search with --supernet")
    if tau > proxy_tau:
        return (f"probably better than the proxy (tau {tau:.2f} against {proxy_tau:.2f}) but not clear of it; check "
                "more archs before relying on it")
    return (f"do not trust it: tau {tau:.2f} is not above the capacity proxy's {proxy_tau:.2f}; see "
            "docs/supernet-training.md (when the ranking is poor)")
