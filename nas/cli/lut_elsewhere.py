"""``nas lut ...`` for tables whose numbers come from elsewhere than this machine's measurements: a device's ops
converted to packages here (``build``; Core ML, ONNX), timed on the device's machine (``measure``) and turned into
a table (``ingest``), or priced by a cost model (``estimate``) fitted to published latencies (``calibrate``). The
subcommands are registered with the others in ``nas.cli.lut``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas.cli._common import emit
from nas.errors import UsageError


def correction_text(corr: dict[str, Any] | None) -> str:
    corr = corr or {}
    return f"correction scale {corr.get('scale', 1):.3f}, offset {corr.get('offset_ms', 0):.3f} ms"


def build_packages(args: argparse.Namespace) -> int:
    """A device measured on another machine: here its ops become packages of its format, plus a manifest."""
    import dataclasses

    from nas.latency.devices import get_device
    from nas.latency.remote import get_package_format
    from nas.latency.remote.manifest import build_packages as build
    from nas.latency.remote.manifest import default_package_dir, load_manifest
    from nas.space import load_space

    device = get_device(args.device)
    assert device.package_format is not None
    fmt = get_package_format(device.package_format)
    if args.ray_address or args.workers:
        raise UsageError(f"--ray-address/--workers measure on this machine's devices; {device.name} packages are "
                         f"converted here and timed on {fmt.runs_on} (nas lut measure)")
    if args.compute_units:
        if fmt.name != "coreml":
            raise UsageError(f"--compute-units is for Core ML devices; {args.device!r} is not one")
        device = dataclasses.replace(device, compute_units=args.compute_units)
    space = load_space(args.space)
    out = Path(args.out) if args.out else default_package_dir(device, space)
    manifest = build(device, space, out, resume=args.resume, progress=not args.no_progress, calibrate=args.calibrate)
    packages = load_manifest(manifest)["packages"]
    timings = out / "timings.json"
    if fmt.runner_files:    # a stand-alone runner beside the packages: the copied folder is all it needs
        measure = f"cd {out.name} && python3 {fmt.runner_files[0][1]} manifest.json --out timings.json"
    else:
        measure = f"nas lut measure {manifest} --out {timings}" + (" --on mac" if fmt.name == "coreml" else "")
    summary: dict[str, Any] = {"manifest": str(manifest), "packages": len(packages), "device": device.name,
                               "space": space.name, "package_format": fmt.name,
                               **({"compute_units": device.compute_units} if fmt.name == "coreml" else {}),
                               "next": [measure, f"nas lut ingest {manifest} {timings}"]}

    def text() -> None:
        print(f"wrote {len(packages)} {fmt.name} packages and {manifest}")
        print(f"next, on {fmt.runs_on} (with {out}/ copied there):  {measure}")
        print(f"then, here (with timings.json copied back into {out}/):  {summary['next'][1]}")

    emit(args, summary, text)
    return 0


def measure_packages(args: argparse.Namespace) -> int:
    from nas.latency.remote.manifest import load_manifest, package_format_of

    fmt = package_format_of(load_manifest(args.manifest))
    options = {k: v for k, v in (("on", args.on), ("iterations", args.iterations)) if v is not None}
    if options and fmt.name != "coreml":
        raise UsageError(f"{', '.join('--' + k for k in options)}: settings of the Core ML runner; "
                         f"{args.manifest} lists {fmt.name} packages")
    try:
        out = fmt.function("measure")(args.manifest, args.out, resume=args.resume, progress=not args.no_progress,
                                      **options)
    except (ValueError, FileExistsError) as exc:
        if not fmt.runner_files:
            raise
        raise UsageError(str(exc)) from None    # a stand-alone runner cannot raise nas's own refusal
    emit(args, {"timings": str(out)},
         lambda: print(f"wrote {out}; turn it into a table with: nas lut ingest {args.manifest} {out}"))
    return 0


def ingest_timings(args: argparse.Namespace) -> int:
    from nas.latency.paths import local_table_path
    from nas.latency.remote.ingest import ingest
    from nas.latency.remote.manifest import load_manifest

    header = load_manifest(args.manifest)["header"]
    out = args.out or str(local_table_path(header["device"], header["space"]))
    table = ingest(args.manifest, args.timings, out)
    summary = {"out": out, "entries": len(table.entries), "calibration_archs": len(table.calibration),
               "correction": table.correction, "device": header["device"], "kind": table.header["kind"]}
    emit(args, summary, lambda: print(f"wrote {out}: measured table, {len(table.entries)} ops, "
                                      f"{len(table.calibration)} archs end to end; "
                                      f"{correction_text(table.correction)}"))
    return 0


def estimate_table(args: argparse.Namespace) -> int:
    from nas.latency.costmodel.estimate import estimate_table as estimate
    from nas.latency.costmodel.model import CostModel, load_cost_model
    from nas.latency.devices import get_device
    from nas.latency.paths import local_table_path
    from nas.latency.table import extrapolation_note
    from nas.space import load_space

    device = get_device(args.device)
    space = load_space(args.space)
    model = CostModel.load(args.cost_model) if args.cost_model else load_cost_model(device.name)
    out = args.out or str(local_table_path(device.name, space.name))
    table = estimate(device, space, model, out, progress=not args.no_progress)
    summary = {"out": out, "entries": len(table.entries), "kind": "estimated", "device": device.name,
               "space": space.name, "cross_validation": model.fit.get("cv"),
               "extrapolated_mixers": table.header["estimate"]["extrapolated_mixers"]}
    note = extrapolation_note(table.header)
    beyond = f"; {note}" if note else ""
    emit(args, summary, lambda: print(f"wrote {out}: {len(table.entries)} ops estimated by the {device.name} cost "
                                      f"model (protocol {model.fit.get('protocol')}){beyond}"))
    return 0


def calibrate_cost_model(args: argparse.Namespace) -> int:
    from nas.latency.costmodel.calibration import calibrate, format_report
    from nas.latency.costmodel.published import load_published, shipped_calibration_csv, trace_published
    from nas.latency.devices import get_device
    from nas.latency.paths import local_table_dir
    from nas.plots import plot_calibration

    device = get_device(args.device)
    csv_path = Path(args.csv) if args.csv else shipped_calibration_csv(device.name)
    rows = load_published(csv_path, args.protocol)
    traces = trace_published(rows, progress=not args.no_progress and not args.json)
    source = csv_path.name if not args.csv else str(csv_path)
    model, report = calibrate(device.name, rows, traces, source)
    out = Path(args.out) if args.out else local_table_dir() / f"{device.name}.costmodel.json"
    model.save(out)
    plot = Path(args.plot) if args.plot else out.with_name(out.stem + ".calibration.png")
    plot_calibration(report, plot)
    report.update({"cost_model": str(out), "plot": str(plot)})
    emit(args, report, lambda: print(f"{format_report(report)}\ncost model: {out}\nplot: {plot}"))
    return 0
