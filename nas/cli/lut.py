"""``nas lut ...``: latency lookup tables. This module registers every subcommand and handles the tables measured on
this machine: ``build`` measures every op here, ``validate`` measures held-out archs, ``check``/``refit``/``adapt``
keep a table true, ``show`` inspects one. Tables made elsewhere (a Core ML build's packages, ``measure`` on a Mac,
``ingest``, ``estimate``, ``calibrate``) are handled in ``nas.cli.lut_elsewhere``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas.cli._common import (
    Commands,
    Parser,
    add_output_args,
    add_precision_arg,
    add_space_arg,
    coverage,
    emit,
    int_between,
    non_negative_int,
    positive_float,
    positive_int,
    print_trust,
)
from nas.cli.lut_elsewhere import (
    build_packages,
    calibrate_cost_model,
    correction_text,
    estimate_table,
    ingest_timings,
    measure_packages,
)
from nas.errors import UsageError
from nas.latency.coreml.units import COMPUTE_UNITS
from nas.machine import LOAD_SAMPLE_S, busy_words, is_busy, load_now

# Upper ends of the counts (the job list is made up front: --rounds 1e9 once exhausted memory before any work).
# A day of measuring on one machine is a few thousand archs and a few dozen rounds.
MAX_ARCHS = 10_000
MAX_ROUNDS = 100
archs = int_between(1, MAX_ARCHS, "a number of archs")
rounds = int_between(1, MAX_ROUNDS, "a number of rounds")


def register(commands: Commands) -> None:
    group = commands.add_parser("lut", help="build, validate and inspect latency lookup tables")
    sub = group.add_subparsers(dest="lut_command", metavar="SUBCOMMAND", parser_class=Parser)
    sub.required = True

    build = sub.add_parser("build", help="measure every op of a space on a device (Core ML devices: convert "
                                        "them to packages to measure on a Mac)")
    build.add_argument("--device", required=True, help="latency device: a name `nas devices` lists")
    add_precision_arg(build)
    add_space_arg(build)
    build.add_argument("--out", help="table file (default: ~/.cache/nas/latency_luts/DEVICE.json, or $NAS_LUT_DIR); "
                                     "Core ML devices: package folder (default: coreml_packages/DEVICE)")
    build.add_argument("--compute-units", choices=COMPUTE_UNITS,
                       help="Core ML devices: compute units the packages may use (default: the device's)")
    build.add_argument("--resume", action="store_true", help="continue a table; measure only what it lacks")
    build.add_argument("--calibrate", type=int_between(0, MAX_ARCHS, "a number of archs"), default=10,
                       help="random archs measured end to end to fit the correction (default 10)")
    build.add_argument("--rounds", type=rounds, default=1,
                       help="passes over every op and arch, one after the other; entries are the median of the "
                            "round medians (3 repeats ~3x better on a shared machine, at 3x the time; default 1)")
    build.add_argument("--ray-address", help="join this Ray cluster; tasks need the resource device:DEVICE")
    build.add_argument("--workers", type=non_negative_int, default=0,
                       help="start a local Ray with N concurrent measurements (0: measure serially here)")
    add_output_args(build)
    build.set_defaults(func=build_table)

    validate = sub.add_parser("validate", help="measure N random archs end to end vs the prediction")
    validate.add_argument("--device", required=True, help="the device to measure on (measurable here)")
    add_precision_arg(validate)
    add_space_arg(validate)
    validate.add_argument("--lut", help="latency table file (default: the device's table)")
    validate.add_argument("--n", type=archs, default=30,
                          help="random archs (held-out seeds) measured end to end (default 30)")
    validate.add_argument("--plot", help="PNG path (default: next to the table)")
    validate.add_argument("--rounds", type=rounds, default=2,
                          help="passes over the archs, one after another; 2 or more also report the measurement's "
                               "own repeatability (default 2)")
    validate.add_argument("--coverage", type=coverage, default=0.9,
                          help="coverage of the intervals whose empirical coverage is reported (default 0.9)")
    validate.add_argument("--no-keep", action="store_true",
                          help="do not keep the measurements with the table as calibration points")
    add_output_args(validate)
    validate.set_defaults(func=validate_table)

    adapt = sub.add_parser("adapt", help="a table for a new device from an existing table and N archs measured end "
                                        "to end there (per-op-kind scales; kind: adapted)")
    adapt.add_argument("--device", required=True, help="the new device (measurable here)")
    add_precision_arg(adapt)
    adapt.add_argument("--from", dest="source", required=True, metavar="TABLE", help="a measured table to transfer")
    adapt.add_argument("--n", type=archs, default=20, help="archs measured end to end (default 20)")
    adapt.add_argument("--repeats", type=int_between(1, MAX_ROUNDS, "a number of repeats"), default=3,
                       help="timed runs per arch after one warm-up, their median kept (default 3: for a fixed time "
                            "more archs help the fit more than more repeats)")
    adapt.add_argument("--out", help="table file (default: ~/.cache/nas/latency_luts/DEVICE.json)")
    add_output_args(adapt)
    adapt.set_defaults(func=adapt_table)

    refit = sub.add_parser("refit", help="refit a measured table's end-to-end correction from all its calibration "
                                        "points (build, --verify winners, validate, check): seconds, no op measured")
    refit.add_argument("--device", required=True, help="latency device: a name `nas devices` lists")
    add_precision_arg(refit)
    add_space_arg(refit)
    refit.add_argument("--lut", help="latency table file (default: the device's table)")
    add_output_args(refit, progress=False)
    refit.set_defaults(func=refit_table)

    check = sub.add_parser("check", help="does the table still hold here today? time the reference workload and N "
                                        "new archs against their predictions (kept as calibration points)")
    check.add_argument("--device", required=True, help="the device whose table is checked (measurable here)")
    add_precision_arg(check)
    add_space_arg(check)
    check.add_argument("--lut", help="latency table file (default: the device's table)")
    check.add_argument("--n", type=archs, default=5, help="archs measured end to end (default 5)")
    check.add_argument("--tolerance", type=positive_float, default=0.05,
                       help="the table holds while the median relative error is within this (default 0.05)")
    check.add_argument("--refit", action="store_true", help="refit the correction afterwards (nas lut refit)")
    add_output_args(check)
    check.set_defaults(func=check_table)

    measure = sub.add_parser("measure", help="time the packages of a manifest where they run: Core ML on this Mac "
                                            "or a connected iPhone, ONNX with ONNX Runtime on this machine")
    measure.add_argument("manifest", help="manifest.json written by nas lut build --device DEVICE")
    measure.add_argument("--out", required=True, help="timings JSON (rewritten after every package)")
    measure.add_argument("--on", choices=("mac", "iphone"),
                         help="Core ML: mac = coremltools predictions here (default); iphone = coremltools' "
                              "remote-device benchmarker")
    measure.add_argument("--iterations", type=positive_int, help="Core ML --on iphone: predictions per package "
                                                                 "(default 100)")
    measure.add_argument("--resume", action="store_true", help="continue a timings file")
    add_output_args(measure)
    measure.set_defaults(func=measure_packages)

    ingest = sub.add_parser("ingest", help="a measured table from a manifest and its timings (JSON, or CSV "
                                          "id,median_ms from Xcode's performance report)")
    ingest.add_argument("manifest", help="manifest.json written by nas lut build for a Core ML device")
    ingest.add_argument("timings", help="what nas lut measure wrote (JSON), or a CSV of package,median_ms")
    ingest.add_argument("--out", help="table file (default: ~/.cache/nas/latency_luts/DEVICE.json, which takes "
                                      "precedence over a shipped estimate)")
    add_output_args(ingest, progress=False)
    ingest.set_defaults(func=ingest_timings)

    estimate = sub.add_parser("estimate", help="a table estimated by the device's cost model (kind: estimated)")
    estimate.add_argument("--device", required=True, help="a device with a cost model (iphone12)")
    add_space_arg(estimate)
    estimate.add_argument("--cost-model", help="cost model JSON (default: the device's)")
    estimate.add_argument("--out", help="table file (default: ~/.cache/nas/latency_luts/DEVICE.json)")
    add_output_args(estimate)
    estimate.set_defaults(func=estimate_table)

    calibrate = sub.add_parser("calibrate", help="fit a device's cost model to published latencies and report "
                                                "its cross-validated error beside a MACs-linear baseline")
    calibrate.add_argument("--device", required=True, help="the device whose cost model is fitted (iphone12)")
    calibrate.add_argument("--csv", help="published latencies (default: the device's shipped calibration CSV)")
    calibrate.add_argument("--protocol", default="P2", help="rows of this protocol only (P1 or P2; default P2)")
    calibrate.add_argument("--out", help="cost model JSON (default: ~/.cache/nas/latency_luts/DEVICE.costmodel.json)")
    calibrate.add_argument("--plot", help="PNG of published vs predicted (default: next to --out)")
    add_output_args(calibrate)
    calibrate.set_defaults(func=calibrate_cost_model)

    show = sub.add_parser("show", help="inspect a latency table")
    show.add_argument("file", help="a latency table JSON file")
    add_output_args(show, progress=False)
    show.set_defaults(func=show_table)


def build_table(args: argparse.Namespace) -> int:
    from nas.latency.devices import MEASURED, get_device

    device = get_device(args.device)
    if MEASURED not in device.table_sources and device.package_format is not None:
        return build_packages(args)
    from nas.latency.build import build_table as build

    if args.compute_units:
        raise UsageError(f"--compute-units is for Core ML devices; {args.device!r} is not one")
    table, out = build(args.device, args.space, args.out, resume=args.resume, calibrate=args.calibrate,
                       ray_address=args.ray_address, workers=args.workers, progress=not args.no_progress,
                       rounds=args.rounds)
    summary = {"out": str(out), "entries": len(table.entries), "calibration_archs": len(table.calibration),
               "correction": table.correction, "device": args.device, "space": table.header["space"]}

    def text() -> None:
        corr = table.correction or {}
        print(f"wrote {out}: {len(table.entries)} ops, {len(table.calibration)} archs end to end; "
              f"{correction_text(corr)} (calibration MAPE {corr.get('mape_before', 0):.1f}% -> "
              f"{corr.get('mape_after', 0):.1f}%)")
        print_trust(table.header.get("fidelity"), "  ")

    emit(args, summary, text)
    return 0


def _require_measurable_here(name: str) -> None:
    """Before any table is looked for: a device this machine cannot time is refused for what it is."""
    from nas.latency.devices import get_device

    ok, why = get_device(name).measurable_here()
    if not ok:
        raise UsageError(f"--device {name} cannot be measured here: {why}")


def validate_table(args: argparse.Namespace) -> int:
    from nas.latency.predict import load_predictor
    from nas.latency.validate import validate_table as validate

    _require_measurable_here(args.device)
    predictor = load_predictor(args.device, args.space, args.lut)
    plot = args.plot or str(Path(predictor.path or ".").with_suffix("")) + "-validate.png"
    load = load_now(LOAD_SAMPLE_S)
    report = validate(predictor, args.device, args.n, plot=plot, progress=not args.no_progress, rounds=args.rounds,
                      coverage=args.coverage, keep=not args.no_keep)
    report.update(conditions(load, predictor.table.header))

    def text() -> None:
        print(f"{args.device}: {report['n']} random archs measured end to end ({report['rounds']} rounds) vs "
              f"predicted from {predictor.path}")
        print_conditions(report)
        print(f"  prediction:  bias {report['bias_pct']:+.1f}%  MAPE {report['mape']:.2f}%  within ±5% "
              f"{100 * report['within_5pct']:.0f}%  within ±10% {100 * report['within_10pct']:.0f}%  Kendall tau "
              f"{report['kendall_tau']:.3f}")
        if "repeatability" in report:
            r = report["repeatability"]
            print(f"  measurement: bias {r['bias_pct']:+.1f}%  MAPE {r['mape']:.2f}%  within ±5% "
                  f"{100 * r['within_5pct']:.0f}%  within ±10% {100 * r['within_10pct']:.0f}%  (round 2 against "
                  f"round 1: the floor)")
        iv = report["intervals"]
        if iv["inside_interval"] is not None:
            print(f"  intervals:   {100 * iv['inside_interval']:.0f}% inside the {iv['coverage']:.0%} interval, "
                  f"{100 * iv['under_upper_bound']:.0f}% under the one-sided bound ({iv['interval_source']})")
        if report.get("kept_as_calibration_points"):
            print(f"  kept {report['kept_as_calibration_points']} calibration points with the table; refit with: "
                  f"nas lut refit --device {args.device}" + (f" --lut {args.lut}" if args.lut else ""))
        print(f"  plot: {report['plot']}")

    emit(args, report, text)
    return 0


def conditions(load: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """The load this measurement ran at and the table was built at, and the table's own warnings."""
    return {"load": load, "busy": is_busy(load), "table_load": header.get("load"),
            "table_warnings": header.get("warnings", [])}


def print_conditions(report: dict[str, Any]) -> None:
    if report["busy"]:
        print(f"  note: measured on a busy machine ({busy_words(report['load'])}): these errors include the load")
    for warning in report["table_warnings"]:
        print(f"  the table says: {warning}")


def show_table(args: argparse.Namespace) -> int:
    from nas.latency.table import LatencyTable, extrapolation_note

    table = LatencyTable.load(args.file)
    by_kind = table.ops_by_kind()

    def text() -> None:
        note = extrapolation_note(table.header)
        if note:
            print(f"note: {note}")
        print_trust(table.header.get("fidelity"), "trust: ")
        for k, v in table.header.items():
            print(f"{k:>15}: {v}")
        print(f"{'entries':>15}: {len(table.entries)}")
        for kind, s in by_kind.items():
            print(f"{kind:>15}: {s['ops']} ops, {s['min_ms']:.4f} .. {s['max_ms']:.4f} ms")

    emit(args, {"header": table.header, "entries": len(table.entries), "calibration_archs": len(table.calibration),
                "ops_by_kind": by_kind}, text)
    return 0


def _measured_table_path(args: argparse.Namespace) -> Path:
    """The table ``--device``/``--lut`` name, which must be measured (refit and check act on measurements)."""
    from nas.latency.predict import load_predictor

    predictor = load_predictor(args.device, args.space, args.lut)
    if predictor.kind == "estimated":
        raise UsageError(f"{predictor.path} is an estimated table; refit and check need a measured or adapted one "
                         f"(accepted: a table of nas lut build, ingest or adapt)")
    return Path(str(predictor.path))


def refit_table(args: argparse.Namespace) -> int:
    from nas.latency.loop import refit_table as refit

    path = _measured_table_path(args)
    table, fit = refit(path)
    if fit is None:
        raise UsageError(f"{path} has no end-to-end calibration points to fit (accepted: a table of nas lut build "
                         f"--calibrate N with N > 0, or run nas lut check --device {args.device})")
    summary = {"table": str(path), "correction": table.correction}

    def text() -> None:
        print(f"refitted {path} on {fit.n} end-to-end points: scale {fit.scale:.4f}, offset {fit.offset_ms:.4f} ms, "
              f"drift x{fit.current_drift:.3f} (session {fit.current}); MAPE on the points {fit.mape_before:.1f}% "
              f"(op sum) -> {fit.mape_after:.1f}%")
        print_trust(table.header.get("fidelity"), "  ")

    emit(args, summary, text)
    return 0


def check_table(args: argparse.Namespace) -> int:
    from nas.latency.loop import check_table as check
    from nas.latency.table import LatencyTable

    path = _measured_table_path(args)        # an estimated table is refused for what it is first
    _require_measurable_here(args.device)
    load = load_now(LOAD_SAMPLE_S)
    report = check(path, args.device, args.n, tolerance=args.tolerance, refit_after=args.refit,
                   progress=not args.no_progress)
    report.update(conditions(load, LatencyTable.load(path).header))

    def text() -> None:
        ref = report["reference"]
        verdict = "holds" if report["holds"] else "does NOT hold"
        print(f"{path} {verdict} on {args.device}: median error {100 * report['median_error']:+.1f}% over "
              f"{report['n']} new archs (tolerance ±{100 * args.tolerance:.0f}%)")
        print_conditions(report)
        if ref["ratio"] is not None:
            print(f"  reference workload {ref['now_ms']:.3f} ms now, {ref['at_build_ms']:.3f} ms at build "
                  f"(x{ref['ratio']:.3f})")
        if "refit" in report:
            r = report["refit"]
            print(f"  refitted on {r['points']} points: drift x{r['drift']:.3f}; median error on these archs now "
                  f"{100 * r['median_error_after']:+.1f}% (in sample)")
        elif not report["holds"]:
            print(f"  refit it from every point kept: nas lut refit --device {args.device}"
                  + (f" --lut {args.lut}" if args.lut else "") + "  (or nas lut check ... --refit)")

    emit(args, report, text)
    return 0


def adapt_table(args: argparse.Namespace) -> int:
    from nas.latency.adapt import adapt_table as adapt
    from nas.latency.paths import local_table_path
    from nas.latency.table import LatencyTable

    space = LatencyTable.load(args.source).header["space"]
    out = args.out or str(local_table_path(args.device, space))
    if Path(out).resolve() == Path(args.source).resolve():
        raise UsageError(f"--out {out} is the --from table; choose another --out")
    _, report = adapt(args.device, args.source, args.n, out, progress=not args.no_progress,
                      repeats=args.repeats)

    def text() -> None:
        scales = ", ".join(f"{k} x{v:.3f}" for k, v in report["scales"].items())
        print(f"wrote {out}: {report['from_device']} table adapted to {args.device} from {args.n} archs measured end "
              f"to end in {report['seconds']:.1f} s; leave-one-out MAPE {report['loo_mape']:.1f}% "
              f"({100 * report['loo_within_10pct']:.0f}% within ±10%)")
        print(f"  scales per op kind: {scales}; offset {report['offset_ms']:.3f} ms")

    emit(args, report, text)
    return 0
