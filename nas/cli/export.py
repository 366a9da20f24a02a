"""``nas export``: an arch (or a search's winner) as PyTorch, timm, TorchScript, ONNX and Core ML, each reloaded
and checked against PyTorch, with a model card."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas.cli._common import Commands, add_output_args, add_space_arg, emit, positive_int
from nas.errors import UsageError
from nas.export.formats import FORMATS
from nas.latency.precision import PRECISIONS


def register(commands: Commands) -> None:
    p = commands.add_parser("export", help="write an arch (or a search's winner) as PyTorch, timm, TorchScript, "
                                           "ONNX and Core ML, each checked against PyTorch, with a model card")
    p.add_argument("arch", metavar="ARCH_OR_RUN", help="preset name, arch JSON file, or run directory of nas search")
    p.add_argument("--format", default=None,
                   help=f"comma-separated formats among {', '.join(FORMATS)} (default: every format whose extra is "
                        "installed; a format named here without its extra is an error)")
    p.add_argument("--out", required=True, help="output folder: new, empty, or an earlier export, which is replaced "
                                                "whole at the end")
    p.add_argument("--supernet", metavar="CKPT", help="supernet checkpoint to inherit weights from "
                                                    "(default: freshly initialised weights)")
    p.add_argument("--data", metavar="DIR", help="ImageFolder tree (its train/ split if it has one) or "
                                                 "builtin:NAME, to recalibrate BatchNorm statistics on")
    p.add_argument("--bn-images", type=positive_int, help="images for the recalibration (default 1024)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default=None,
                   help="write each format at this precision (int8: onnx-int8, quantised by this machine's "
                        "onnxruntime-int8 table's recipe); default: each format's own")
    add_space_arg(p)
    add_output_args(p)
    p.set_defaults(func=export)


def export(args: argparse.Namespace) -> int:
    from nas.export.card import run_notes
    from nas.export.exporter import check_export_folder, export_subnet
    from nas.export.formats import check_tables, default_formats, parse_formats, require_packages
    from nas.export.subnet import build_subnet
    from nas.space import load_space, resolve_arch

    if args.format is None:
        formats, note = default_formats(args.precision)
        if note:
            print(f"nas: note: {note}", file=sys.stderr)
    else:
        formats = parse_formats(args.format, args.precision)
        require_packages(formats)
    check_export_folder(args.out)
    if args.bn_images is not None and args.data is None:
        raise UsageError("--bn-images goes with --data (the images to recalibrate BatchNorm on)")
    arch = resolve_arch(args.arch, args.space, flag="ARCH_OR_RUN")
    check_tables(formats, load_space(arch.space))
    if args.supernet is None:
        print("nas: note: no --supernet given, so the weights are freshly initialised (fine for latency and "
              "deployment checks, not for accuracy)", file=sys.stderr)
    notes = run_notes(args.arch)
    if args.precision is None and "precision" in notes:      # the search priced it quantised
        print(f"nas: note: the run's winner ships in {notes['precision']}; --precision with that precision "
              "writes the quantised model", file=sys.stderr)
    sub = build_subnet(arch, args.supernet, args.data, args.bn_images or 1024)
    report = export_subnet(sub, args.out, formats, notes=notes, progress=not args.no_progress)

    def text() -> None:
        print(f"exported {report['params'] / 1e6:.2f} M params, {report['macs_g']:.3f} GMACs to {args.out}:")
        for fmt in formats:
            check = report["checks"][fmt]
            diff = f", max diff {check['max_abs_diff']:.1e}" if "max_abs_diff" in check else ""
            print(f"  {fmt:<12} {'ok' if check['ok'] else 'FAILED'}{diff}  {', '.join(report['files'][fmt])}"
                  + ("" if check["ok"] else f"  ({check.get('detail', '')})"))
        print(f"model card: {Path(args.out) / 'README.md'}")

    emit(args, report, text)
    return 0 if report["ok"] else 1
