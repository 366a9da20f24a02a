"""``nas space show`` / ``nas space sample``: a search space's choices, size and presets; random archs."""
from __future__ import annotations

import argparse
import random
import sys

from nas.cli._common import Commands, Parser, add_output_args, add_space_arg, emit, positive_int, seed


def register(commands: Commands) -> None:
    group = commands.add_parser("space", help="inspect and sample a search space")
    sub = group.add_subparsers(dest="space_command", metavar="SUBCOMMAND", parser_class=Parser)
    sub.required = True

    show = sub.add_parser("show", help="choices, size of the space and its presets")
    add_space_arg(show)
    add_output_args(show, progress=False)
    show.set_defaults(func=show_space)

    sample = sub.add_parser("sample", help="N random archs, one JSON object a line")
    add_space_arg(sample)
    sample.add_argument("--n", type=positive_int, required=True, help="number of archs")
    sample.add_argument("--seed", type=seed, default=0, help="random seed (same seed, same archs)")
    add_output_args(sample, progress=False)
    sample.set_defaults(func=sample_space)


def show_space(args: argparse.Namespace) -> int:
    from nas.space import format_choices, load_space

    space = load_space(args.space)
    info = space.describe()

    def text() -> None:
        print(f"space {space.name}: {space.description}")
        print(f"  input {space.input_size}x{space.input_size}, {space.num_classes} classes, "
              f"stage resolutions {', '.join(map(str, space.resolutions()))}")
        for s, st in enumerate(space.stages):
            print(f"  stage {s + 1}: width {format_choices(st.widths)}; depth {format_choices(st.depths)}")
        print(f"  MLP ratio per block: {format_choices(space.mlp_ratios)}")
        print(f"  MB3D blocks at the end of stage {space.num_stages}: {format_choices(space.n3d)} (at most its depth)")
        print(f"  per MB3D block: a token mixer of {format_choices(space.mixers)}, with its own knobs:")
        for name, knobs in space.mixer_choices:
            parts = [f"heads {format_choices(knobs.heads)}"] if knobs.heads else []
            parts += [f"key dim {format_choices(knobs.key_dims)}"] if knobs.key_dims else []
            parts += [f"value dim = {knobs.attn_ratio} x key dim"] if knobs.attn_ratio else []
            print(f"    {name}: {'; '.join(parts) or 'no knobs besides the width'}")
        size = info["size"]
        print(f"  size: {size['fine']:.3e} archs (every knob); {size['macro']:,} macro archs (widths, depths, n3d)")
        if space.presets:
            print("  presets:")
            for name in space.preset_names():
                a = space.preset(name)
                print(f"    {name}: widths {list(a.widths)}, depths {list(a.depths)}, n3d {a.n3d}")

    emit(args, info, text)
    return 0


def sample_space(args: argparse.Namespace) -> int:
    from nas.space import load_space

    space = load_space(args.space)
    rng = random.Random(args.seed)
    if args.json:          # one object, as every command's --json; without it, one arch a line (streams)
        emit(args, {"space": space.name, "seed": args.seed, "archs": [space.sample(rng=rng).to_dict()
                                                                      for _ in range(args.n)]}, lambda: None)
        return 0
    for _ in range(args.n):
        sys.stdout.write(space.sample(rng=rng).to_json() + "\n")
    return 0
