"""``nas measure``: time an arch (or an export's arch) end to end on a device of this machine, with the backend and
timing policy its latency table uses, beside the table's prediction: "does my winner meet the budget here?"."""
from __future__ import annotations

import argparse

from nas.cli._common import Commands, add_output_args, add_precision_arg, add_space_arg, emit


def register(commands: Commands) -> None:
    p = commands.add_parser("measure", help="time an arch end to end on a device of this machine, beside the "
                                            "table's prediction")
    p.add_argument("--device", required=True, help="a device this machine can run (cpu, cuda, onnxruntime, ...)")
    add_precision_arg(p)
    p.add_argument("--arch", required=True,
                   help="preset name, arch JSON file, run directory of nas search, or export folder")
    add_space_arg(p)
    p.add_argument("--lut", help="the device's table to compare with (default: its table of the space, if any)")
    add_output_args(p, progress=False)
    p.set_defaults(func=measure)


def measure(args: argparse.Namespace) -> int:
    from nas.latency.measure_arch import measure_against_table
    from nas.space import resolve_arch

    arch = resolve_arch(args.arch, args.space)
    result = measure_against_table(args.device, arch, args.lut)

    def text() -> None:
        m = result["measured"]
        print(f"{m['median_ms']:.3f} ms measured on {args.device} (median of {m['n']}; p10 {m['p10_ms']:.3f}, "
              f"p90 {m['p90_ms']:.3f} ms; {result['backend']})")
        if result["predicted_ms"] is None:
            print(f"  no {args.device} table of space {arch.space!r} to compare with ({result['table_note']})")
        else:
            print(f"  predicted {result['predicted_ms']:.3f} ms by {result['table']} (measured/predicted "
                  f"{result['ratio']:.3f})")
            if result["inside_interval"] is not None:
                print(f"  90% interval {result['low_ms']:.3f} .. {result['high_ms']:.3f} ms: the measurement is "
                      + ("inside" if result["inside_interval"] else "OUTSIDE"))

    emit(args, result, text)
    return 0
