"""The ``nas`` command line.

Contract (shared DESIGN.md): every command has ``--help``; commands that report a result have ``--json`` (one
JSON object on stdout, nothing else there); exit 0 on success, 2 on bad input with a one-line message naming the
value and what is accepted, 1 on other failures. Heavy imports (torch) happen inside the handlers, so the
``space`` commands answer quickly.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from nas.errors import UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input in one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type for integers >= ``minimum``, whose refusal names the value and what is accepted."""
    accepted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected {accepted}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; expected {accepted}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


# ------------------------------------------------------------------------------------------------ nas space


def cmd_space_show(args: argparse.Namespace) -> int:
    from nas.space import format_choices, load_space

    space = load_space(args.space)
    info = space.describe()
    if args.json:
        _emit(info)
        return 0
    print(f"space {space.name}: {space.description}")
    print(f"  input {space.input_size}x{space.input_size}, {space.num_classes} classes, "
          f"stage resolutions {', '.join(map(str, space.resolutions()))}")
    for s, st in enumerate(space.stages):
        print(f"  stage {s + 1}: width {format_choices(st.widths)}; depth {format_choices(st.depths)}")
    print(f"  MLP ratio per block: {format_choices(space.mlp_ratios)}")
    print(f"  MB3D blocks at the end of stage {space.num_stages}: {format_choices(space.n3d)} (at most its depth)")
    print(f"  per MB3D block: mixer {format_choices(space.mixers)}; heads {format_choices(space.heads)}; "
          f"key dim {format_choices(space.key_dims)}; value dim = {space.attn_ratio} x key dim")
    size = info["size"]
    print(f"  size: {size['fine']:.3e} archs (every knob); {size['macro']:,} macro archs (widths, depths, n3d)")
    if space.presets:
        print("  presets:")
        for name in space.preset_names():
            a = space.preset(name)
            print(f"    {name}: widths {list(a.widths)}, depths {list(a.depths)}, n3d {a.n3d}")
    return 0


def cmd_space_sample(args: argparse.Namespace) -> int:
    from nas.space import load_space

    space = load_space(args.space)
    rng = random.Random(args.seed)
    for _ in range(args.n):
        sys.stdout.write(space.sample(rng=rng).to_json() + "\n")
    return 0


# ------------------------------------------------------------------------------------------------ nas predict, nas lut


def resolve_arch(value: str, space_name: str, flag: str = "--arch"):
    """An arch from a preset name of the space, an arch JSON file, or a run directory holding best_arch.json."""
    from nas.space import Arch, load_space

    space = load_space(space_name)
    path = Path(value)
    if path.is_dir():
        if not (path / "best_arch.json").exists():
            raise UsageError(f"{flag} {value!r} is a folder without best_arch.json; expected a run directory of "
                             "nas search, an arch JSON file or a preset name")
        path = path / "best_arch.json"
    if path.is_file():
        return Arch.from_json(path.read_text())
    if value in space.presets:
        return space.preset(value)
    raise UsageError(f"{flag} {value!r} is neither a preset of space {space.name!r} "
                     f"({', '.join(space.preset_names())}) nor an arch JSON file or run directory")


def cmd_predict(args: argparse.Namespace) -> int:
    from nas.latency import estimate_notice, load_predictor

    if (args.arch is None) == (args.timm is None):
        raise UsageError("give exactly one of --arch (an arch of a space) or --timm NAME (any timm model)")
    if args.timm is not None:
        return _predict_timm(args)
    if args.input_size is not None:
        raise UsageError("--input-size goes with --timm; an arch's input size is its space's")
    arch = resolve_arch(args.arch, args.space)
    predictor = load_predictor(args.device, arch.space, args.lut)
    ms = predictor.predict(arch)
    result = {"latency_ms": ms, "raw_sum_ms": predictor.raw_ms(arch), "device": args.device,
              "table": predictor.path, "table_kind": predictor.kind, "arch": arch.to_dict()}
    notice = estimate_notice(predictor)
    if notice:
        print(notice, file=sys.stderr)
    if args.json:
        _emit(result)
        return 0
    kind = "" if predictor.kind == "measured" else f" ({predictor.kind} table)"
    print(f"{ms:.3f} ms on {args.device}{kind}: sum of {len(predictor.breakdown(arch))} ops "
          f"{result['raw_sum_ms']:.3f} ms, corrected with the table's end-to-end fit")
    if args.breakdown:
        for key, op_ms in predictor.breakdown(arch):
            print(f"  {op_ms:9.4f} ms  {key}")
    return 0


def _predict_timm(args: argparse.Namespace) -> int:
    from nas.latency.costmodel import load_cost_model, timm_input_size, timm_model
    from nas.latency.devices import get_device
    from nas.latency.costmodel import example_input
    from nas.latency.trace import summarize, trace_ops

    get_device(args.device)
    model = load_cost_model(args.device)
    net = timm_model(args.timm)   # re-parameterised, as it runs on the device
    size = args.input_size or timm_input_size(args.timm)
    try:
        records = trace_ops(net, example_input(size))
    except RuntimeError as exc:   # e.g. attention biases sized for the model's native resolution
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"timm model {args.timm!r} does not run at --input-size {size} ({first}); "
                         f"its default is {timm_input_size(args.timm)}") from None
    ms = model.predict_records(records)
    totals = summarize(records)
    result = {"latency_ms": ms, "device": args.device, "model": args.timm, "input_size": size,
              "method": "cost model (estimated)", "macs_g": totals["macs_g"], "kernels": int(totals["kernels"]),
              "cost_model_protocol": model.fit.get("protocol"),
              "cost_model_lofo_mape": (model.fit.get("cv") or {}).get("lofo", {}).get("mape")}
    if args.breakdown:
        result["breakdown_ms"] = _category_breakdown(model, records)
    if args.json:
        _emit(result)
        return 0
    lofo = result["cost_model_lofo_mape"]
    print(f"{ms:.3f} ms on {args.device} (estimated by the cost model, protocol {result['cost_model_protocol']}"
          + (f", leave-one-family-out MAPE {lofo:.1f}%" if lofo is not None else "") + f"): {args.timm} at "
          f"{size}px, {totals['macs_g']:.2f} GMACs, {result['kernels']} kernels")
    if args.breakdown:
        for cat, cat_ms in result["breakdown_ms"].items():
            print(f"  {cat_ms:9.4f} ms  {cat}")
    return 0


def _category_breakdown(model, records) -> dict[str, float]:
    from nas.latency.trace import CATEGORIES

    out = {"fixed": model.fixed_ms}
    for cat in CATEGORIES:
        out[cat] = model.op_ms(r for r in records if r.category == cat)
    return out


def cmd_lut_build(args: argparse.Namespace) -> int:
    from nas.latency.devices import get_device

    if get_device(args.device).backend == "coreml":
        return _lut_build_coreml(args)
    from nas.latency.build import build_table

    if args.compute_units:
        raise UsageError(f"--compute-units is for Core ML devices; {args.device!r} is not one")
    table, out = build_table(args.device, args.space, args.out, resume=args.resume, calibrate=args.calibrate,
                             ray_address=args.ray_address, workers=args.workers, progress=not args.no_progress)
    summary = {"out": str(out), "entries": len(table.entries), "calibration_archs": len(table.calibration),
               "correction": table.correction, "device": args.device, "space": table.header["space"]}
    if args.json:
        _emit(summary)
    else:
        corr = table.correction or {}
        print(f"wrote {out}: {len(table.entries)} ops, {len(table.calibration)} archs end to end; correction "
              f"scale {corr.get('scale', 1):.3f}, offset {corr.get('offset_ms', 0):.3f} ms "
              f"(calibration MAPE {100 * corr.get('mape_before', 0):.1f}% -> {100 * corr.get('mape_after', 0):.1f}%)")
    return 0


def _lut_build_coreml(args: argparse.Namespace) -> int:
    """Core ML devices are measured on Apple hardware: here the ops become packages plus a manifest."""
    import dataclasses

    from nas.latency.coreml import build_packages, load_manifest
    from nas.latency.devices import get_device
    from nas.space import load_space

    if args.ray_address or args.workers:
        raise UsageError("--ray-address/--workers measure on this machine's devices; a Core ML build converts "
                         "packages here and is measured with `nas lut measure` on a Mac")
    device = get_device(args.device)
    if args.compute_units:
        device = dataclasses.replace(device, compute_units=args.compute_units)
    space = load_space(args.space)
    out = Path(args.out or f"coreml_packages/{device.name}" + ("" if space.name == "efficientformer"
                                                                else f"-{space.name}"))
    manifest = build_packages(device, space, out, resume=args.resume, progress=not args.no_progress)
    packages = load_manifest(manifest)["packages"]
    summary = {"manifest": str(manifest), "packages": len(packages), "device": device.name, "space": space.name,
               "compute_units": device.compute_units,
               "next": [f"nas lut measure {manifest} --out {out}/timings.json --on mac   # on a Mac (or --on iphone)",
                        f"nas lut ingest {manifest} {out}/timings.json"]}
    if args.json:
        _emit(summary)
    else:
        print(f"wrote {len(packages)} Core ML packages (mlprogram, fp16, iOS16, compute units "
              f"{device.compute_units}) and {manifest}")
        print("next, on a Mac:  " + summary["next"][0])
        print("then, anywhere:  " + summary["next"][1])
    return 0


def cmd_lut_measure(args: argparse.Namespace) -> int:
    from nas.latency.coreml import measure_packages

    out = measure_packages(args.manifest, args.out, on=args.on, resume=args.resume, iterations=args.iterations,
                           progress=not args.no_progress)
    if args.json:
        _emit({"timings": str(out)})
    else:
        print(f"wrote {out}; turn it into a table with: nas lut ingest {args.manifest} {out}")
    return 0


def cmd_lut_ingest(args: argparse.Namespace) -> int:
    from nas.latency.coreml import ingest, load_manifest
    from nas.latency.devices import local_table_path

    header = load_manifest(args.manifest)["header"]
    out = args.out or str(local_table_path(header["device"], header["space"]))
    table = ingest(args.manifest, args.timings, out)
    corr = table.correction or {}
    summary = {"out": out, "entries": len(table.entries), "calibration_archs": len(table.calibration),
               "correction": table.correction, "device": header["device"], "kind": table.header["kind"]}
    if args.json:
        _emit(summary)
    else:
        print(f"wrote {out}: measured table, {len(table.entries)} ops, {len(table.calibration)} archs end to end; "
              f"correction scale {corr.get('scale', 1):.3f}, offset {corr.get('offset_ms', 0):.3f} ms")
    return 0


def cmd_lut_estimate(args: argparse.Namespace) -> int:
    from nas.latency.costmodel import CostModel, load_cost_model
    from nas.latency.devices import get_device, local_table_path
    from nas.latency.estimate import estimate_table
    from nas.space import load_space

    device = get_device(args.device)
    space = load_space(args.space)
    model = CostModel.load(args.cost_model) if args.cost_model else load_cost_model(device.name)
    out = args.out or str(local_table_path(device.name, space.name))
    table = estimate_table(device, space, model, out, progress=not args.no_progress)
    summary = {"out": out, "entries": len(table.entries), "kind": "estimated", "device": device.name,
               "space": space.name, "cross_validation": model.fit.get("cv")}
    if args.json:
        _emit(summary)
    else:
        print(f"wrote {out}: {len(table.entries)} ops estimated by the {device.name} cost model "
              f"(protocol {model.fit.get('protocol')})")
    return 0


def cmd_lut_calibrate(args: argparse.Namespace) -> int:
    from nas.latency.costmodel import (calibrate, format_report, load_published, plot_report,
                                       shipped_calibration_csv, trace_published)
    from nas.latency.devices import get_device, local_table_dir

    device = get_device(args.device)
    csv_path = Path(args.csv) if args.csv else shipped_calibration_csv(device.name)
    rows = load_published(csv_path, args.protocol)
    traces = trace_published(rows, progress=not args.no_progress and not args.json)
    source = csv_path.name if not args.csv else str(csv_path)
    model, report = calibrate(device.name, rows, traces, source)
    out = Path(args.out) if args.out else local_table_dir() / f"{device.name}.costmodel.json"
    model.save(out)
    plot = Path(args.plot) if args.plot else out.with_name(out.stem + ".calibration.png")
    plot_report(report, plot)
    report.update({"cost_model": str(out), "plot": str(plot)})
    if args.json:
        _emit(report)
    else:
        print(format_report(report))
        print(f"cost model: {out}\nplot: {plot}")
    return 0


def cmd_lut_validate(args: argparse.Namespace) -> int:
    from nas.latency import load_predictor
    from nas.latency.validate import validate_table

    predictor = load_predictor(args.device, args.space, args.lut)
    plot = args.plot or str(Path(predictor.path or ".").with_suffix("")) + "-validate.png"
    report = validate_table(predictor, args.device, args.n, plot=plot, progress=not args.no_progress)
    if args.json:
        _emit(report)
    else:
        print(f"{args.device}: {report['n']} random archs measured end to end vs predicted from {predictor.path}")
        print(f"  MAPE {100 * report['mape']:.2f}%  within ±5% {100 * report['within_5pct']:.0f}%  "
              f"within ±10% {100 * report['within_10pct']:.0f}%  Kendall tau {report['kendall_tau']:.3f}")
        print(f"  plot: {report['plot']}")
    return 0


def cmd_lut_show(args: argparse.Namespace) -> int:
    from nas.latency.table import LatencyTable

    table = LatencyTable.load(args.file)
    if args.json:
        _emit({"header": table.header, "entries": len(table.entries), "calibration_archs": len(table.calibration)})
        return 0
    for k, v in table.header.items():
        print(f"{k:>15}: {v}")
    print(f"{'entries':>15}: {len(table.entries)}")
    by_kind: dict[str, list[float]] = {}
    for key, e in table.entries.items():
        by_kind.setdefault(key.split("|")[0], []).append(e["median_ms"])
    for kind, values in by_kind.items():
        print(f"{kind:>15}: {len(values)} ops, {min(values):.4f} .. {max(values):.4f} ms")
    return 0


# ------------------------------------------------------------------------------------------------ nas search


def cmd_search(args: argparse.Namespace) -> int:
    from nas.search.budgets import Budgets, parse_luts
    from nas.search.objectives import make_objective
    from nas.search.run import SearchRequest, run_search
    from nas.space import load_space

    space = load_space(args.space)
    budgets = Budgets.load(space, args.budget_ms or [], args.device or [], parse_luts(args.lut))
    formats: list[str] = []
    if args.export != "none":
        from nas.export import parse_formats, require_packages

        formats = parse_formats(args.export)
        require_packages(formats)
    if args.strategy == "slim" and (args.storage or args.study or args.sampler != "tpe"):
        raise UsageError("--storage, --study and --sampler are Optuna settings; --strategy slim resumes from "
                         "slim.json in --out instead")
    objective = make_objective(space, args.supernet, args.data)
    for notice in budgets.notices():
        print(notice, file=sys.stderr)
    request = SearchRequest(space, objective, budgets, args.strategy, args.sampler, args.trials, args.seed,
                            args.storage, args.study, Path(args.out) if args.out else None, args.workers,
                            args.ray_address, formats, progress=not args.no_progress, verify=args.verify)
    # Ray's driver prints worker deaths and retries on sys.stdout; stdout carries only our result (--json contract)
    with contextlib.redirect_stdout(sys.stderr):
        result = run_search(request)
    if args.json:
        _emit(result)
        return 0
    best = result["best"]
    kinds = {b["device"]: b["table_kind"] for b in result["budgets"]}
    what = "trials" if args.strategy == "optuna" else "slimming steps"
    print(f"objective: {objective.label}")
    print(f"best of {result['trials']} {what} ({result['feasible']} meet every budget): objective "
          f"{best['objective']:.4g}" + "".join(f", {k.replace('_', ' ')} {v:.3g}"
                                               for k, v in best.get("details", {}).items()))
    print(f"  {'device':<12} {'budget ms':>10} {'latency ms':>11}  table")
    for b in result["budgets"]:
        print(f"  {b['device']:<12} {b['budget_ms']:>10.3f} {best['latencies_ms'][b['device']]:>11.3f}  "
              f"{kinds[b['device']]}")
    if "verification" in result:
        v = result["verification"]
        measured = best.get("measured_ms")
        print(f"  verified by measurement on {', '.join(v['devices']) or 'no device'}: {len(v['checked'])} "
              f"candidate(s) measured; " + (", ".join(f"{d} {ms:.3f} ms" for d, ms in measured.items())
                                              if measured else v.get("note", "")))
    arch = best["arch"]
    print(f"  arch: widths {arch['widths']}, depths {arch['depths']}, n3d {arch['n3d']}, "
          f"MLP ratios {arch['mlp_ratios']}" + (f", heads {arch['heads']}, key dims {arch['key_dims']}"
                                                if arch["n3d"] else ""))
    print(f"run directory {result['out']}: best_arch.json, trials.csv, pareto.png"
          + (", export/ (model card README.md)" if formats else "") + f"; {result['wall_s']:.1f} s")
    return 0


# ------------------------------------------------------------------------------------------------ nas supernet


def _torch_device(asked: str | None) -> str:
    """Where to run training or evaluation: what was asked, else cuda when there is one."""
    import torch

    if asked == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible here; use --device cpu")
    return asked or ("cuda" if torch.cuda.is_available() else "cpu")


def cmd_supernet_train(args: argparse.Namespace) -> int:
    from nas.space import load_space
    from supernet.train import TrainConfig, train_supernet

    space = load_space(args.space)
    device = _torch_device(args.device)
    cfg = TrainConfig(space=args.space, data=str(args.data), epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                      num_random=args.num_random, label_smoothing=args.label_smoothing,
                      max_train_images=args.max_train_images, val_images=args.val_images,
                      bn_images=args.bn_images, seed=args.seed, init_timm=args.init_timm)
    result = train_supernet(cfg, args.out, resume=args.resume, device=device, save_every=args.save_every,
                            progress=not args.no_progress, workers=args.workers)
    if args.json:
        _emit(result)
        return 0
    top1 = ", ".join(f"{k} {v:.1f}%" for k, v in result["top1"].items())
    resumed = (f" (resumed at step {result['resumed_from_step']})" if result["resumed_from_step"] else "")
    print(f"supernet of space {space.name!r} trained on {args.data}: {result['steps']} steps, {args.epochs} epochs"
          f"{resumed}; top-1 of the subnets at the ends of the space: {top1 or 'not evaluated'}")
    print(f"checkpoint {result['out']} ({result['wall_s']:.1f} s this run); use it with "
          f"nas search --supernet {result['out']} --data {args.data}")
    return 0


def cmd_supernet_eval(args: argparse.Namespace) -> int:
    from supernet.checkpoint import load_checkpoint_payload
    from supernet.train import evaluate_checkpoint

    space_name = load_checkpoint_payload(args.supernet)["space"]
    archs = None
    if args.arch:
        archs = {value: resolve_arch(value, space_name) for value in args.arch}
    device = _torch_device(args.device)
    result = evaluate_checkpoint(args.supernet, args.data, archs, args.val_images, args.bn_images, device)
    if args.json:
        _emit(result)
        return 0
    print(f"top-1 of inherited weights of {args.supernet} (space {result['space']!r}) on {result['val']}, "
          f"BatchNorm recalibrated on {args.bn_images} training images:")
    for row in result["archs"]:
        a = row["arch"]
        print(f"  {row['name']:<24} {row['top1']:6.2f}%   widths {a['widths']}, depths {a['depths']}, n3d {a['n3d']}")
    return 0


def _float_where(ok: Callable[[float], bool], accepted: str) -> Callable[[str], float]:
    """An argparse type for numbers passing ``ok``, whose refusal names the value and what is accepted."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected {accepted}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{value} is not allowed; expected {accepted}")
        return value

    return parse


_positive_float = _float_where(lambda v: v > 0, "a positive number")
_non_negative_float = _float_where(lambda v: v >= 0, "a number >= 0")
_fraction = _float_where(lambda v: 0 <= v < 1, "a number in [0, 1)")


# ------------------------------------------------------------------------------------------------ nas export


def cmd_export(args: argparse.Namespace) -> int:
    from nas.export import build_subnet, export_subnet, parse_formats, require_packages, run_notes

    formats = parse_formats(args.format)
    require_packages(formats)
    if args.bn_images is not None and args.data is None:
        raise UsageError("--bn-images goes with --data (the images to recalibrate BatchNorm on)")
    arch = resolve_arch(args.arch, args.space, flag="ARCH_OR_RUN")
    if args.supernet is None:
        print("nas: note: no --supernet given, so the weights are freshly initialised (fine for latency and "
              "deployment checks, not for accuracy)", file=sys.stderr)
    sub = build_subnet(arch, args.supernet, args.data, args.bn_images or 1024)
    report = export_subnet(sub, args.out, formats, notes=run_notes(args.arch), progress=not args.no_progress)
    if args.json:
        _emit(report)
    else:
        print(f"exported {report['params'] / 1e6:.2f} M params, {report['macs_g']:.3f} GMACs to {args.out}:")
        for fmt in formats:
            check = report["checks"][fmt]
            diff = f", max diff {check['max_abs_diff']:.1e}" if "max_abs_diff" in check else ""
            print(f"  {fmt:<12} {'ok' if check['ok'] else 'FAILED'}{diff}  {', '.join(report['files'][fmt])}"
                  + ("" if check["ok"] else f"  ({check.get('detail', '')})"))
        print(f"model card: {Path(args.out) / 'README.md'}")
    return 0 if report["ok"] else 1


# ------------------------------------------------------------------------------------------------ the parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description="Latency-driven neural architecture search for efficient ViTs.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    space = commands.add_parser("space", help="inspect and sample a search space")
    space_cmds = space.add_subparsers(dest="space_command", metavar="SUBCOMMAND", parser_class=_Parser)
    space_cmds.required = True

    show = space_cmds.add_parser("show", help="choices, size of the space and its presets")
    _add_space_arg(show)
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")
    show.set_defaults(func=cmd_space_show)

    sample = space_cmds.add_parser("sample", help="N random archs, one JSON object a line")
    _add_space_arg(sample)
    sample.add_argument("--n", type=_positive_int, required=True, help="number of archs")
    sample.add_argument("--seed", type=int, default=0, help="random seed (same seed, same archs)")
    sample.set_defaults(func=cmd_space_sample)

    predict = commands.add_parser("predict", help="predicted latency of an arch, or of a timm model, on a device")
    predict.add_argument("--device", required=True, help="device name (see nas.latency.devices)")
    predict.add_argument("--arch", help="preset name, arch JSON file, or run directory (uses the device's table)")
    predict.add_argument("--timm", metavar="NAME",
                         help="any timm model, estimated by the device's cost model (random weights, re-parameterised)")
    predict.add_argument("--input-size", type=_positive_int, help="with --timm: image side (default: the model's)")
    _add_space_arg(predict)
    predict.add_argument("--lut", help="latency table file (default: the device's table)")
    predict.add_argument("--breakdown", action="store_true", help="print every op's entry (or op category)")
    predict.add_argument("--json", action="store_true", help="one JSON object on stdout")
    predict.set_defaults(func=cmd_predict)

    search = commands.add_parser("search", help="find the best arch under latency budgets (Optuna or slimming, "
                                                "optionally on Ray) and export it")
    search.add_argument("--budget-ms", type=float, action="append", metavar="MS",
                        help="latency budget; repeat with --device for several budgets that must all hold")
    search.add_argument("--device", action="append", help="device of the budget before it (same order)")
    _add_space_arg(search)
    search.add_argument("--trials", type=_positive_int, default=100,
                        help="the study's total number of trials (a resumed study runs the missing ones; default 100)")
    search.add_argument("--sampler", choices=("tpe", "nsga2", "random"), default="tpe",
                        help="Optuna sampler (nsga2: objective-latency Pareto front; default tpe)")
    search.add_argument("--strategy", choices=("optuna", "slim"), default="optuna",
                        help="optuna: a sampled study; slim: EfficientFormer's greedy slimming from the largest arch")
    search.add_argument("--supernet", metavar="CKPT", help="trained supernet: the objective becomes the inherited "
                                                         "top-1 on --data's validation split (default: capacity proxy)")
    search.add_argument("--data", metavar="DIR", help="ImageFolder tree (DIR/val and DIR/train, or DIR itself), or "
                                                      "builtin:digits")
    search.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite:///OUT/study.db)")
    search.add_argument("--study", metavar="NAME", help="study name; the same name resumes (default: from the settings)")
    search.add_argument("--out", metavar="DIR", help="run directory (default: runs/STUDY)")
    search.add_argument("--workers", type=_non_negative_int, default=0,
                        help="evaluate trials on a local Ray with N workers (0: in this process)")
    search.add_argument("--ray-address", metavar="ADDR", help="evaluate trials on this Ray cluster")
    search.add_argument("--seed", type=int, default=0, help="sampler seed (same seed, same result; default 0)")
    search.add_argument("--lut", action="append", metavar="DEVICE=FILE",
                        help="latency table of a device (default: the device's table)")
    search.add_argument("--export", default="pt", metavar="FORMATS",
                        help="formats of the exported winner (as nas export --format), or none (default pt)")
    search.add_argument("--verify", type=_non_negative_int, default=0, metavar="K",
                        help="measure up to K best candidates end to end on the budget devices measurable here "
                             "(cpu, cuda, onnxruntime) and keep the best that really meets the budgets (default 0)")
    search.add_argument("--no-progress", action="store_true")
    search.add_argument("--json", action="store_true", help="one JSON object on stdout")
    search.set_defaults(func=cmd_search)

    export = commands.add_parser("export", help="write an arch (or a search's winner) as PyTorch, timm, TorchScript, "
                                                "ONNX and Core ML, each checked against PyTorch, with a model card")
    export.add_argument("arch", metavar="ARCH_OR_RUN", help="preset name, arch JSON file, or run directory of nas search")
    export.add_argument("--format", default=",".join(("pt", "timm", "torchscript", "onnx", "coreml")),
                        help="comma-separated formats among pt, timm, torchscript, onnx, coreml (default: all)")
    export.add_argument("--out", required=True, help="output folder (files are replaced whole)")
    export.add_argument("--supernet", metavar="CKPT", help="supernet checkpoint to inherit weights from "
                                                         "(default: freshly initialised weights)")
    export.add_argument("--data", metavar="DIR", help="ImageFolder tree (its train/ split if it has one) or "
                                                      "builtin:digits, to recalibrate BatchNorm statistics on")
    export.add_argument("--bn-images", type=_positive_int, help="images for the recalibration (default 1024)")
    _add_space_arg(export)
    export.add_argument("--no-progress", action="store_true")
    export.add_argument("--json", action="store_true", help="one JSON object on stdout")
    export.set_defaults(func=cmd_export)

    supernet = commands.add_parser("supernet", help="train the weight-sharing supernet")
    supernet_cmds = supernet.add_subparsers(dest="supernet_command", metavar="SUBCOMMAND", parser_class=_Parser)
    supernet_cmds.required = True
    train = supernet_cmds.add_parser(
        "train", help="train the supernet once (sandwich rule + in-place distillation); resumable",
        description="Each step trains the largest subnet on the labels and the smallest plus --num-random random "
                    "subnets on the largest's predictions, with AdamW and a warmup + cosine schedule. The top-1 of "
                    "the largest and smallest subnets (BatchNorm recalibrated) is measured after every epoch.")
    _add_space_arg(train)
    train.add_argument("--data", required=True,
                       help="ImageFolder tree (DIR/train and DIR/val, or DIR/<class>/<image>) or builtin:digits "
                            "(scikit-learn's handwritten digits, no download)")
    train.add_argument("--epochs", type=_positive_int, required=True)
    train.add_argument("--out", required=True, help="checkpoint file (written atomically while training)")
    train.add_argument("--resume", action="store_true", help="continue the training saved in --out")
    train.add_argument("--batch-size", type=_positive_int, default=64)
    train.add_argument("--lr", type=_positive_float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    train.add_argument("--weight-decay", type=_non_negative_float, default=0.05)
    train.add_argument("--warmup-epochs", type=_non_negative_float, default=1.0)
    train.add_argument("--num-random", type=_non_negative_int, default=2,
                       help="random subnets per step besides the largest and smallest (default 2)")
    train.add_argument("--label-smoothing", type=_fraction, default=0.1)
    train.add_argument("--max-train-images", type=_positive_int, default=None,
                       help="train on a fixed random subset of this many images")
    train.add_argument("--val-images", type=_positive_int, default=1000, help="validation images per evaluation")
    train.add_argument("--bn-images", type=_positive_int, default=256,
                       help="training images to recalibrate BatchNorm with before each evaluation")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--init-timm", default=None, metavar="FILE",
                       help="start from a timm EfficientFormer state dict (.safetensors or weights-only .pth), "
                            "e.g. efficientformer_l7's, loaded into the supernet's slots")
    train.add_argument("--workers", type=_non_negative_int, default=0,
                       help="data-loading processes (default 0: the training process); results do not depend on it")
    train.add_argument("--device", choices=("cpu", "cuda"), default=None,
                       help="where to train (default: cuda if available, else cpu)")
    train.add_argument("--save-every", type=_positive_int, default=100,
                       help="also checkpoint every N steps, besides each epoch's end (default 100)")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("--json", action="store_true")
    train.set_defaults(func=cmd_supernet_train)

    evaluate = supernet_cmds.add_parser(
        "eval", help="top-1 of inherited weights for archs of a trained supernet (BatchNorm recalibrated)")
    evaluate.add_argument("--supernet", required=True, metavar="CKPT", help="checkpoint of nas supernet train")
    evaluate.add_argument("--data", required=True, help="ImageFolder tree (DIR/train and DIR/val) or builtin:digits")
    evaluate.add_argument("--arch", action="append", metavar="PRESET_FILE_OR_RUN",
                          help="arch to evaluate (repeatable): a preset, an arch JSON file or a nas search run "
                               "directory (default: the largest, the smallest and the presets)")
    evaluate.add_argument("--val-images", type=_positive_int, default=1000)
    evaluate.add_argument("--bn-images", type=_positive_int, default=256)
    evaluate.add_argument("--device", choices=("cpu", "cuda"), default=None)
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_supernet_eval)

    lut = commands.add_parser("lut", help="build, validate and inspect latency lookup tables")
    lut_cmds = lut.add_subparsers(dest="lut_command", metavar="SUBCOMMAND", parser_class=_Parser)
    lut_cmds.required = True
    build = lut_cmds.add_parser("build", help="measure every op of a space on a device (Core ML devices: convert "
                                             "them to packages to measure on a Mac)")
    build.add_argument("--device", required=True)
    _add_space_arg(build)
    build.add_argument("--out", help="table file (default: ~/.cache/nas/latency_luts/DEVICE.json, or $NAS_LUT_DIR); "
                                     "Core ML devices: package folder (default: coreml_packages/DEVICE)")
    build.add_argument("--compute-units", choices=COMPUTE_UNITS_CHOICES,
                       help="Core ML devices: compute units the packages may use (default: the device's)")
    build.add_argument("--resume", action="store_true", help="continue a table; measure only what it lacks")
    build.add_argument("--calibrate", type=_non_negative_int, default=10,
                       help="random archs measured end to end to fit the correction (default 10)")
    build.add_argument("--ray-address", help="join this Ray cluster; tasks need the resource device:DEVICE")
    build.add_argument("--workers", type=_non_negative_int, default=0,
                       help="start a local Ray with N concurrent measurements (0: measure serially here)")
    build.add_argument("--no-progress", action="store_true")
    build.add_argument("--json", action="store_true")
    build.set_defaults(func=cmd_lut_build)

    validate = lut_cmds.add_parser("validate", help="measure N random archs end to end vs the prediction")
    validate.add_argument("--device", required=True)
    _add_space_arg(validate)
    validate.add_argument("--lut", help="latency table file (default: the device's table)")
    validate.add_argument("--n", type=_positive_int, default=30)
    validate.add_argument("--plot", help="PNG path (default: next to the table)")
    validate.add_argument("--no-progress", action="store_true")
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(func=cmd_lut_validate)

    measure = lut_cmds.add_parser("measure", help="(macOS) time the Core ML packages of a manifest on this Mac "
                                                 "or a connected iPhone")
    measure.add_argument("manifest", help="manifest.json written by nas lut build --device iphone12")
    measure.add_argument("--out", required=True, help="timings JSON (rewritten after every package)")
    measure.add_argument("--on", choices=("mac", "iphone"), default="mac",
                         help="mac: coremltools predictions here; iphone: coremltools' remote-device benchmarker")
    measure.add_argument("--iterations", type=_positive_int, default=100, help="--on iphone: predictions per package")
    measure.add_argument("--resume", action="store_true", help="continue a timings file")
    measure.add_argument("--no-progress", action="store_true")
    measure.add_argument("--json", action="store_true")
    measure.set_defaults(func=cmd_lut_measure)

    ingest = lut_cmds.add_parser("ingest", help="a measured table from a manifest and its timings (JSON, or CSV "
                                               "id,median_ms from Xcode's performance report)")
    ingest.add_argument("manifest")
    ingest.add_argument("timings")
    ingest.add_argument("--out", help="table file (default: ~/.cache/nas/latency_luts/DEVICE.json, which takes "
                                      "precedence over a shipped estimate)")
    ingest.add_argument("--json", action="store_true")
    ingest.set_defaults(func=cmd_lut_ingest)

    estimate = lut_cmds.add_parser("estimate", help="a table estimated by the device's cost model (kind: estimated)")
    estimate.add_argument("--device", required=True)
    _add_space_arg(estimate)
    estimate.add_argument("--cost-model", help="cost model JSON (default: the device's)")
    estimate.add_argument("--out", help="table file (default: ~/.cache/nas/latency_luts/DEVICE.json)")
    estimate.add_argument("--no-progress", action="store_true")
    estimate.add_argument("--json", action="store_true")
    estimate.set_defaults(func=cmd_lut_estimate)

    calibrate = lut_cmds.add_parser("calibrate", help="fit a device's cost model to published latencies and "
                                                     "report its cross-validated error beside a MACs-linear baseline")
    calibrate.add_argument("--device", required=True)
    calibrate.add_argument("--csv", help="published latencies (default: the device's shipped calibration CSV)")
    calibrate.add_argument("--protocol", default="P2", help="rows of this protocol only (P1 or P2; default P2)")
    calibrate.add_argument("--out", help="cost model JSON (default: ~/.cache/nas/latency_luts/DEVICE.costmodel.json)")
    calibrate.add_argument("--plot", help="PNG of published vs predicted (default: next to --out)")
    calibrate.add_argument("--no-progress", action="store_true")
    calibrate.add_argument("--json", action="store_true")
    calibrate.set_defaults(func=cmd_lut_calibrate)

    show = lut_cmds.add_parser("show", help="inspect a latency table")
    show.add_argument("file")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_lut_show)
    return parser


COMPUTE_UNITS_CHOICES = ("ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY")  # = nas.latency.coreml.COMPUTE_UNITS


def _add_space_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="efficientformer",
                   help="space name (search_spaces/NAME.yaml) or path to a YAML file (default: efficientformer)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.func
        return handler(args)
    except UsageError as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # e.g. `nas space sample --n 1000 | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
