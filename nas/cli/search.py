"""``nas search``: the best arch under latency budgets (an Optuna study or EfficientFormer's slimming, optionally on
Ray), written to a run directory and exported."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nas.cli._common import (
    AUTO_PRECISION,
    Commands,
    add_output_args,
    add_precision_arg,
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
from nas.search.objectives import OBJECTIVES, objective_options
from nas.search.strategy import STRATEGIES, setting_options, settings_type
from nas.settings import SettingOption

if TYPE_CHECKING:
    from nas.search.objectives import Objective
    from nas.search.run import SearchResult
    from nas.space import SearchSpace


def register(commands: Commands) -> None:
    p = commands.add_parser("search", help="find the best arch under latency budgets (Optuna or slimming, "
                                           "optionally on Ray) and export it")
    p.add_argument("--budget-ms", type=float, action="append", metavar="MS",
                   help="latency budget; repeat with --device for several budgets that must all hold")
    p.add_argument("--device", action="append", help="latency device of the budget before it (same order)")
    add_precision_arg(p, auto=True)
    add_space_arg(p)
    p.add_argument("--trials", type=positive_int, default=100,
                   help="the study's total number of trials (a resumed study runs the missing ones; default 100)")
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
    p.add_argument("--score", choices=tuple(OBJECTIVES),
                   help="what the search maximises: " + "; ".join(f"{name}: {entry.help}"
                                                                    for name, entry in OBJECTIVES.items())
                        + " (default: supernet with --supernet, else capacity)")
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
    _add_settings(p, "--strategy", {name: setting_options(name) for name in STRATEGIES})
    _add_settings(p, "--score", {name: objective_options(name) for name in OBJECTIVES})
    p.set_defaults(func=search)


def _add_settings(p: argparse.ArgumentParser, chooser: str, options: dict[str, list[SettingOption]]) -> None:
    """Each plug-in's settings, as its settings dataclass declares them, in a group of their own; a setting that
    several plug-ins declare (the objectives' --data) is one option, in the group of the first."""
    added: dict[str, SettingOption] = {}
    for name, declared in options.items():
        group = p.add_argument_group(f"{chooser} {name} settings") if declared else None
        for o in declared:
            if o.dest in added:
                first = added[o.dest]
                if (first.flag, first.value_type) != (o.flag, o.value_type):
                    raise ValueError(f"{chooser} {first.owner} and {name} both have a setting {o.field!r}, as "
                                     f"{first.flag} and {o.flag}: one name, one flag and one type, or two names")
                continue
            added[o.dest] = o
            assert group is not None
            if isinstance(o.default, bool):
                group.add_argument(o.flag, dest=o.dest, action="store_true", default=None, help=o.help)
            else:
                metavar = o.metavar or (None if o.choices else ("N" if o.value_type is int else "X"))
                shown = o.choices is None and o.default is not None    # else the help says it
                group.add_argument(o.flag, dest=o.dest, type=o.value_type, choices=o.choices, default=None,
                                   metavar=metavar, help=f"{o.help} (default {o.default})" if shown else o.help)


def _given(args: argparse.Namespace, declared: list[SettingOption]) -> list[SettingOption]:
    return [o for o in declared if getattr(args, o.dest, None) is not None]


def _chosen_settings(args: argparse.Namespace, chooser: str, chosen: str,
                     options: dict[str, list[SettingOption]], cls: type | None) -> object | None:
    """The chosen plug-in's settings from the options given (its defaults for the rest); a setting only other
    plug-ins declare is refused, naming the one it belongs to."""
    own = {o.flag for o in options[chosen]}
    for name, declared in options.items():
        stray = [o.flag for o in _given(args, declared) if o.flag not in own]
        if stray:
            raise UsageError(f"{', '.join(stray)}: {'settings' if len(stray) > 1 else 'a setting'} of {chooser} "
                             f"{name}; add {chooser} {name}")
    if cls is None:
        return None
    return cls(**{o.field: o.check(getattr(args, o.dest)) for o in _given(args, options[chosen])})


def _objective(args: argparse.Namespace, space: SearchSpace) -> Objective:
    """``--score``'s objective with its settings; without --score, the supernet's when --supernet is given."""
    from nas.search.objectives import make_objective, objective_settings_type

    options = {name: objective_options(name) for name in OBJECTIVES}
    # without --score: the first objective whose settings were given (--supernet's), else the default
    name = args.score or next((n for n, declared in options.items() if _given(args, declared)), "capacity")
    settings = _chosen_settings(args, "--score", name, options, objective_settings_type(name))
    return make_objective(space, name, settings)


def search(args: argparse.Namespace) -> int:
    from nas.export.formats import parse_formats, require_packages
    from nas.search.auto_precision import objective_as_shipped
    from nas.search.budgets import Budgets, parse_luts
    from nas.search.run import SearchRequest, run_search
    from nas.space import load_space

    space = load_space(args.space)
    budgets = Budgets.load(space, args.budget_ms or [], args.device or [], parse_luts(args.lut), args.max_params,
                           args.max_macs, args.guarantee, auto=args.precision == AUTO_PRECISION)
    formats: list[str] = []
    if args.export != "none":
        formats = parse_formats(args.export)
        require_packages(formats)
    settings = _chosen_settings(args, "--strategy", args.strategy,
                                {name: setting_options(name) for name in STRATEGIES}, settings_type(args.strategy))
    objective = objective_as_shipped(_objective(args, space), budgets)
    for notice in budgets.notices():
        print(notice, file=sys.stderr)
    request = SearchRequest(space, objective, budgets, args.strategy, args.trials, args.seed,
                            Path(args.out) if args.out else None, args.workers,
                            args.ray_address, formats, progress=not args.no_progress, verify=args.verify,
                            settings=settings)
    # Ray's driver prints worker deaths and retries on sys.stdout; stdout carries only our result (--json contract)
    with contextlib.redirect_stdout(sys.stderr):
        found = run_search(request)
    emit(args, found.to_dict(), lambda: _print_summary(found, bool(formats)))
    return 0


def _print_summary(found: SearchResult, exported: bool) -> None:
    """What a person reads after a search, from the typed result (``--json`` prints ``found.to_dict()``)."""
    from nas.latency.precision import PRECISIONS
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
    shipped = req.budgets.precisions(best.arch)
    for b in req.budgets.items:
        table = b.predictors[shipped[b.device]]
        print(f"  {b.device:<12} {b.budget_ms:>10.3f} {best.latency_ms[b.device]:>11.3f}  {table.kind}"
              + (f", ships in {shipped[b.device]} (--precision auto, of {', '.join(b.predictors)})"
                 if b.by_precision else ""))
        if b.guarantee is not None:
            print(f"  {'':<12} {'':>10} {upper[b.device]:>11.3f}  upper bound at {b.guarantee:.0%} coverage "
                  f"(x{b.upper_factor:.3f}: {b.interval_source})")
        print_trust(table.table.header.get("fidelity"), f"  {'':<12} the table: ")
    if found.verification:
        v = found.verification
        print(f"  verified by measurement on {', '.join(v.devices) or 'no device'}: {len(v.checked)} "
              f"candidate(s) measured; " + (", ".join(f"{d} {ms:.3f} ms" for d, ms in best.measured_ms.items())
                                              if best.measured_ms else v.note or ""))
    arch = best.arch.to_dict()         # printed as JSON lists, as best_arch.json holds it
    print(f"  arch: widths {arch['widths']}, depths {arch['depths']}, n3d {arch['n3d']}, "
          f"MLP ratios {arch['mlp_ratios']}" + (f", mixers {arch['mixers']}, heads {arch['heads']}, key dims "
                                                f"{arch['key_dims']}" if arch["n3d"] else ""))
    usage = mixer_usage(req.space.mixers, best.arch, [r.arch for r in found.records])
    if len(usage["trials_using"]) > 1:   # a space whose MB3D blocks choose among several token mixers
        winner = ", ".join(f"{n}x {m}" for m, n in usage["winner"].items()) or "none (no MB3D block)"
        tried = ", ".join(f"{m} in {n} ({usage['blocks_tried'][m]} blocks)" for m, n in usage["trials_using"].items())
        print(f"  mixers of the winner: {winner}; tried: {tried}")
    quantised = sorted({p for p in shipped.values() if PRECISIONS[p].quantized})
    if quantised:
        print(f"  it ships in {', '.join(quantised)}: nas export {found.out} --precision {quantised[0]} --data DIR "
              "writes the quantised model (calibrated on DIR's training images)")
    print(f"run directory {found.out}: best_arch.json, trials.csv, pareto.png"
          + (", export/ (model card README.md)" if exported else "") + f"; {found.wall_s:.1f} s")
