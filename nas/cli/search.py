"""``nas search``: the best arch under latency budgets (an Optuna study or EfficientFormer's slimming, optionally on
Ray), written to a run directory and exported."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nas.cli._common import (
    Commands,
    add_output_args,
    add_space_arg,
    coverage,
    emit,
    non_negative_int,
    positive_float,
    positive_int,
    print_trust,
    seed,
)
from nas.errors import UsageError
from nas.search.strategy import SAMPLERS, STRATEGIES, setting_options, settings_type
from supernet.config import EVAL_BN_IMAGES, EVAL_VAL_IMAGES

if TYPE_CHECKING:
    from nas.search.run import SearchResult


def register(commands: Commands) -> None:
    p = commands.add_parser("search", help="find the best arch under latency budgets (Optuna or slimming, "
                                           "optionally on Ray) and export it")
    p.add_argument("--budget-ms", type=float, action="append", metavar="MS",
                   help="latency budget; repeat with --device for several budgets that must all hold")
    p.add_argument("--device", action="append", help="latency device of the budget before it (same order)")
    add_space_arg(p)
    p.add_argument("--trials", type=positive_int, default=100,
                   help="the study's total number of trials (a resumed study runs the missing ones; default 100)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                   help="Optuna sampler (nsga2: objective-latency Pareto front; default tpe)")
    p.add_argument("--strategy", choices=tuple(STRATEGIES), default="optuna",
                   help="; ".join(f"{name}: {entry.help}" for name, entry in STRATEGIES.items()))
    p.add_argument("--max-params", type=positive_float, metavar="M",
                   help="also a size limit: at most M million parameters (a budget that must hold like latency)")
    p.add_argument("--max-macs", type=positive_float, metavar="G",
                   help="also a size limit: at most G GMACs per image")
    p.add_argument("--guarantee", type=coverage, metavar="P",
                   help="hold the budgets with the latency's upper bound at coverage P (e.g. 0.9: the table's "
                        "held-out errors say the measured latency is below the bound 90%% of the time) instead of "
                        "the median prediction")
    p.add_argument("--supernet", metavar="CKPT", help="trained supernet: the objective becomes the inherited "
                                                    "top-1 on --data's validation split (default: capacity proxy)")
    p.add_argument("--data", metavar="DIR", help="ImageFolder tree (DIR/val and DIR/train, or DIR itself), or "
                                                 "builtin:objects / builtin:digits (no download)")
    p.add_argument("--val-images", type=positive_int, default=EVAL_VAL_IMAGES, metavar="N",
                   help=f"--supernet: validation images per evaluation (default {EVAL_VAL_IMAGES}; fewer is faster "
                        "and coarser)")
    p.add_argument("--bn-images", type=positive_int, default=EVAL_BN_IMAGES, metavar="N",
                   help=f"--supernet: training images BatchNorm is recalibrated on per evaluation (default "
                        f"{EVAL_BN_IMAGES})")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage: a journal file path or a SQLAlchemy URL (default: OUT/study.log)")
    p.add_argument("--study", metavar="NAME", help="study name; the same name resumes (default: from the settings)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/STUDY)")
    p.add_argument("--workers", type=non_negative_int, default=0,
                   help="evaluate trials on a local Ray with N workers (0: in this process)")
    p.add_argument("--ray-address", metavar="ADDR", help="evaluate trials on this Ray cluster")
    p.add_argument("--seed", type=seed, default=0, help="sampler seed (same seed, same result; default 0)")
    p.add_argument("--lut", action="append", metavar="DEVICE=FILE",
                   help="latency table of a device (default: the device's table)")
    p.add_argument("--export", default="pt", metavar="FORMATS",
                   help="formats of the exported winner (as nas export --format), or none (default pt)")
    p.add_argument("--verify", type=non_negative_int, default=0, metavar="K",
                   help="measure up to K best candidates end to end on the budget devices measurable here "
                        "(cpu, cuda, onnxruntime) and keep the best that really meets the budgets (default 0)")
    add_output_args(p)
    _add_strategy_settings(p)
    p.set_defaults(func=search)


def _add_strategy_settings(p: argparse.ArgumentParser) -> None:
    """Each strategy's settings, as its settings dataclass declares them, in a group of their own."""
    for name in STRATEGIES:
        options = setting_options(name)
        if not options:
            continue
        group = p.add_argument_group(f"--strategy {name} settings")
        for o in options:
            if isinstance(o.default, bool):
                group.add_argument(o.flag, dest=o.dest, action="store_true", default=None, help=o.help)
            else:
                group.add_argument(o.flag, dest=o.dest, type=type(o.default), choices=o.choices, default=None,
                                   metavar=None if o.choices else ("N" if isinstance(o.default, int) else "X"),
                                   help=f"{o.help} (default {o.default})" if o.choices is None else o.help)


def _strategy_settings(args: argparse.Namespace) -> object | None:
    """The chosen strategy's settings from the options given (its defaults for the rest); a setting of another
    strategy is refused, naming the strategy it belongs to."""
    for name in STRATEGIES:
        given = [o.flag for o in setting_options(name) if getattr(args, o.dest) is not None]
        if given and name != args.strategy:
            raise UsageError(f"{', '.join(given)}: {'settings' if len(given) > 1 else 'a setting'} of --strategy "
                             f"{name}; add --strategy {name}")
    cls = settings_type(args.strategy)
    if cls is None:
        return None
    return cls(**{o.field: o.check(getattr(args, o.dest)) for o in setting_options(args.strategy)
                  if getattr(args, o.dest) is not None})


def search(args: argparse.Namespace) -> int:
    from nas.export.formats import parse_formats, require_packages
    from nas.search.budgets import Budgets, parse_luts
    from nas.search.objectives import make_objective
    from nas.search.run import SearchRequest, run_search
    from nas.search.strategy import get_strategy
    from nas.space import load_space

    space = load_space(args.space)
    budgets = Budgets.load(space, args.budget_ms or [], args.device or [], parse_luts(args.lut), args.max_params,
                           args.max_macs, args.guarantee)
    formats: list[str] = []
    if args.export != "none":
        formats = parse_formats(args.export)
        require_packages(formats)
    strategy = get_strategy(args.strategy)
    if not strategy.uses_optuna_settings and (args.storage or args.study or args.sampler != "tpe"):
        raise UsageError(f"--storage, --study and --sampler are Optuna settings; --strategy {args.strategy} "
                         "resumes from its own record in --out instead")
    settings = _strategy_settings(args)
    if args.supernet is None and (args.val_images, args.bn_images) != (EVAL_VAL_IMAGES, EVAL_BN_IMAGES):
        raise UsageError("--val-images and --bn-images are settings of the inherited-accuracy objective; add "
                         "--supernet CKPT --data DIR")
    objective = make_objective(space, args.supernet, args.data, args.val_images, args.bn_images)
    for notice in budgets.notices():
        print(notice, file=sys.stderr)
    request = SearchRequest(space, objective, budgets, args.strategy, args.sampler, args.trials, args.seed,
                            args.storage, args.study, Path(args.out) if args.out else None, args.workers,
                            args.ray_address, formats, progress=not args.no_progress, verify=args.verify,
                            settings=settings)
    # Ray's driver prints worker deaths and retries on sys.stdout; stdout carries only our result (--json contract)
    with contextlib.redirect_stdout(sys.stderr):
        found = run_search(request)
    emit(args, found.to_dict(), lambda: _print_summary(found, bool(formats)))
    return 0


def _print_summary(found: SearchResult, exported: bool) -> None:
    """What a person reads after a search, from the typed result (``--json`` prints ``found.to_dict()``)."""
    from nas.search.run import mixer_usage

    req, best, strategy = found.request, found.best, found.strategy
    print(f"objective: {req.objective.label}")
    print(f"best of {len(found.records)} {strategy.records_called} ({sum(r.feasible for r in found.records)} meet "
          f"every budget): objective {best.objective:.4g}"
          + "".join(f", {k.replace('_', ' ')} {v:.3g}" for k, v in best.details.items()))
    line = strategy.describe(strategy.summary) if strategy.summary else None
    if line:
        print(f"  {line}")
    for key, limit in req.budgets.size_limits.items():
        print(f"  {key.replace('_m', ' (M)').replace('gmacs', 'GMACs'):<12} {'limit':>10} {limit:>11.3f}  "
              f"winner {best.details[key]:.3f}")
    print(f"  {'device':<12} {'budget ms':>10} {'latency ms':>11}  table")
    upper = req.budgets.upper_bounds(best.latency_ms)
    for b in req.budgets.items:
        print(f"  {b.device:<12} {b.budget_ms:>10.3f} {best.latency_ms[b.device]:>11.3f}  {b.predictor.kind}")
        if b.guarantee is not None:
            print(f"  {'':<12} {'':>10} {upper[b.device]:>11.3f}  upper bound at {b.guarantee:.0%} coverage "
                  f"(x{b.upper_factor:.3f}: {b.interval_source})")
        print_trust(b.predictor.table.header.get("fidelity"), f"  {'':<12} the table: ")
    if found.verification:
        v = found.verification
        print(f"  verified by measurement on {', '.join(v['devices']) or 'no device'}: {len(v['checked'])} "
              f"candidate(s) measured; " + (", ".join(f"{d} {ms:.3f} ms" for d, ms in best.measured_ms.items())
                                              if best.measured_ms else v.get("note", "")))
    arch = best.arch.to_dict()         # printed as JSON lists, as best_arch.json holds it
    print(f"  arch: widths {arch['widths']}, depths {arch['depths']}, n3d {arch['n3d']}, "
          f"MLP ratios {arch['mlp_ratios']}" + (f", mixers {arch['mixers']}, heads {arch['heads']}, key dims "
                                                f"{arch['key_dims']}" if arch["n3d"] else ""))
    usage = mixer_usage(req.space.mixers, best.arch, [r.arch for r in found.records])
    if len(usage["trials_using"]) > 1:   # a space whose MB3D blocks choose among several token mixers
        winner = ", ".join(f"{n}x {m}" for m, n in usage["winner"].items()) or "none (no MB3D block)"
        tried = ", ".join(f"{m} in {n} ({usage['blocks_tried'][m]} blocks)" for m, n in usage["trials_using"].items())
        print(f"  mixers of the winner: {winner}; tried: {tried}")
    print(f"run directory {found.out}: best_arch.json, trials.csv, pareto.png"
          + (", export/ (model card README.md)" if exported else "") + f"; {found.wall_s:.1f} s")
