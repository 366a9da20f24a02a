"""``nas devices``: the registered latency devices and the state of their tables."""
from __future__ import annotations

import argparse

from nas.cli._common import Commands, add_output_args, add_space_arg, emit, print_trust


def register(commands: Commands) -> None:
    p = commands.add_parser("devices", help="every latency device: its backend and its table's source, path, age "
                                            "and held-out error")
    add_space_arg(p)
    add_output_args(p, progress=False)
    p.set_defaults(func=devices)


def devices(args: argparse.Namespace) -> int:
    from nas.latency.inventory import device_inventory
    from nas.space import load_space

    space = load_space(args.space).name       # refuse an unknown or unreadable space in one line
    rows = device_inventory(space)

    def text() -> None:
        print(f"{'device':<18} {'backend':<12} {'precision':<9} {'table source':<14} {'age (d)':>8} "
              f"{'held-out err':>13}  table")
        for r in rows:
            age = f"{r['age_days']:.1f}" if r["age_days"] is not None else "-"
            err = f"{r['held_out_error_pct']:.1f}% (n={r['held_out_points']})" \
                if r["held_out_error_pct"] is not None else "-"
            where = r["table"] or "none yet (nas lut build / estimate / ingest)"
            print(f"{r['device']:<18} {r['backend']:<12} {r['precision']:<9} {r['source']:<14} {age:>8} {err:>13}  "
                  f"{where}"
                  + ("  [shipped]" if r["shipped"] else ""))
            print_trust(r.get("fidelity"), f"{'':<18} ")

    emit(args, {"space": space, "devices": rows}, text)
    return 0
