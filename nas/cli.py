"""The ``nas`` command line.

Contract (shared DESIGN.md): every command has ``--help``; commands that report a result have ``--json`` (one
JSON object on stdout, nothing else there); exit 0 on success, 2 on bad input with a one-line message naming the
value and what is accepted, 1 on other failures. Heavy imports (torch) happen inside the handlers, so the
``space`` commands answer quickly.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any, Callable, Sequence

from nas.errors import UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input in one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; expected a positive integer")
    return value


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
    return parser


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
