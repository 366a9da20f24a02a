"""``nas predict``: the predicted latency of an arch (from a device's table) or of any timm model (from the
device's cost model)."""
from __future__ import annotations

import argparse
import sys

from nas.cli._common import (
    Commands,
    add_output_args,
    add_precision_arg,
    add_space_arg,
    coverage,
    emit,
    positive_int,
    print_trust,
)
from nas.errors import UsageError


def register(commands: Commands) -> None:
    p = commands.add_parser("predict", help="predicted latency of an arch, or of a timm model, on a device")
    p.add_argument("--device", required=True, help="latency device (nas.latency.devices)")
    add_precision_arg(p)
    p.add_argument("--arch", help="preset name, arch JSON file, or run directory (uses the device's table)")
    p.add_argument("--timm", metavar="NAME",
                   help="any timm model, estimated by the device's cost model (random weights, re-parameterised)")
    p.add_argument("--input-size", type=positive_int, help="with --timm: image side (default: the model's)")
    add_space_arg(p)
    p.add_argument("--lut", help="latency table file (default: the device's table)")
    p.add_argument("--breakdown", action="store_true", help="print every op's entry (or op category)")
    p.add_argument("--coverage", type=coverage, default=0.9, metavar="C",
                   help="the prediction interval's coverage, from the table's held-out errors (default 0.9)")
    add_output_args(p, progress=False)
    p.set_defaults(func=predict)


def predict(args: argparse.Namespace) -> int:
    if (args.arch is None) == (args.timm is None):
        raise UsageError("give exactly one of --arch (an arch of a space) or --timm NAME (any timm model)")
    if args.timm is not None:
        return _predict_timm(args)
    from nas.latency.predict import estimate_notice, load_predictor
    from nas.space import resolve_arch

    if args.input_size is not None:
        raise UsageError("--input-size goes with --timm; an arch's input size is its space's")
    arch = resolve_arch(args.arch, args.space)
    predictor = load_predictor(args.device, arch.space, args.lut)
    interval = predictor.interval(arch, args.coverage)
    ms = interval["latency_ms"]
    result = {**interval, "raw_sum_ms": predictor.raw_ms(arch), "device": args.device,
              "table": predictor.path, "table_kind": predictor.kind, "arch": arch.to_dict(),
              "table_fidelity": predictor.table.header.get("fidelity")}
    notice = estimate_notice(predictor)
    if notice:
        print(notice, file=sys.stderr)

    def text() -> None:
        kind = "" if predictor.kind == "measured" else f" ({predictor.kind} table)"
        print(f"{ms:.3f} ms on {args.device}{kind}: sum of {len(predictor.breakdown(arch))} ops "
              f"{result['raw_sum_ms']:.3f} ms, corrected with the table's end-to-end fit")
        if interval["latency_low_ms"] is not None:
            print(f"  {args.coverage:.0%} interval {interval['latency_low_ms']:.3f} .. "
                  f"{interval['latency_high_ms']:.3f} ms, one-sided upper bound "
                  f"{interval['latency_upper_ms']:.3f} ms (from {interval['interval_source']})")
        else:
            print(f"  no interval: {interval['interval_source']}")
        print_trust(result["table_fidelity"], "  the table: ")
        if args.breakdown:
            for key, op_ms in predictor.breakdown(arch):
                print(f"  {op_ms:9.4f} ms  {key}")

    emit(args, result, text)
    return 0


def _predict_timm(args: argparse.Namespace) -> int:
    from nas.latency.predict import predict_timm

    result = predict_timm(args.timm, args.device, args.input_size, args.breakdown)

    def text() -> None:
        lofo = result["cost_model_lofo_mape"]
        print(f"{result['latency_ms']:.3f} ms on {args.device} (estimated by the cost model, protocol "
              f"{result['cost_model_protocol']}" + (f", leave-one-family-out MAPE {lofo:.1f}%" if lofo is not None
                                                     else "")
              + f"): {args.timm} at {result['input_size']}px, {result['macs_g']:.2f} GMACs, {result['kernels']} "
                f"kernels")
        if args.breakdown:
            for cat, cat_ms in result["breakdown_ms"].items():
                print(f"  {cat_ms:9.4f} ms  {cat}")

    emit(args, result, text)
    return 0
