"""What every command module shares: argument types whose refusals name the value and what is accepted, the
``--space`` and ``--json`` arguments, and the one way a result leaves (``emit``)."""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any

from nas.errors import UsageError
from nas.fileio import json_text
from nas.space import DEFAULT_SPACE


class Parser(argparse.ArgumentParser):
    """argparse that reports bad input in one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see '{self.prog} --help')")


Commands = Any   # argparse's _SubParsersAction (private in typeshed)
Handler = Callable[[argparse.Namespace], int]


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type for integers >= ``minimum``."""
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


def int_between(low: int, high: int, what: str = "an integer") -> Callable[[str], int]:
    """An argparse type for integers in [low, high] (seeds end up in numpy and Optuna, which take 32 bits)."""
    accepted = f"{what} from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected {accepted}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; expected {accepted}")
        return value

    return parse


seed = int_between(0, 2**32 - 1, "a seed")
port = int_between(1, 65535, "a TCP port")


def float_where(ok: Callable[[float], bool], accepted: str) -> Callable[[str], float]:
    """An argparse type for numbers passing ``ok``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected {accepted}") from None
        if not math.isfinite(value):   # inf and nan pass float() and most comparisons' negations
            raise argparse.ArgumentTypeError(f"{text!r} is not finite; expected {accepted}")
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{value} is not allowed; expected {accepted}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
positive_float = float_where(lambda v: v > 0, "a positive number")
non_negative_float = float_where(lambda v: v >= 0, "a number >= 0")
fraction = float_where(lambda v: 0 <= v < 1, "a number in [0, 1)")
coverage = float_where(lambda v: 0.5 <= v < 1, "a coverage in [0.5, 1), e.g. 0.9")


def add_space_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default=DEFAULT_SPACE,
                   help=f"space name (search_spaces/NAME.yaml) or path to a YAML file (default: {DEFAULT_SPACE})")


def add_output_args(p: argparse.ArgumentParser, progress: bool = True) -> None:
    """``--json`` (and ``--no-progress`` for long commands)."""
    if progress:
        p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


def emit(args: argparse.Namespace, result: Any, text: Callable[[], None]) -> None:
    """The one way a command reports: the result as one JSON line with ``--json``, else ``text()`` prints it."""
    if getattr(args, "json", False):
        sys.stdout.write(json_text(result) + "\n")
    else:
        text()


def print_trust(fidelity: dict[str, Any] | None, prefix: str) -> None:
    """A measured table's "within ±x% on this machine ..." line (``nas.latency.fidelity``), when it has one."""
    from nas.latency.fidelity import words

    line = words(fidelity)
    if line:
        print(prefix + line)


AUTO_PRECISION = "auto"


def add_precision_arg(p: argparse.ArgumentParser, auto: bool = False) -> None:
    """``--precision``: which precision of ``--device`` (its table is another table: ``onnxruntime`` at int8 is the
    device ``onnxruntime-int8``); ``nas devices`` lists each device's precisions. ``auto`` (``nas search``): each
    arch at the most precise precision whose table meets its budget (``nas.search.auto_precision``)."""
    from nas.latency.precision import PRECISIONS

    p.add_argument("--precision", choices=(*PRECISIONS, *([AUTO_PRECISION] if auto else [])), default=None,
                   help="the precision the model runs in on --device (default: the device's own; `nas devices` "
                        "lists them): another precision is another table"
                        + ("; auto: each arch at the most precise one whose table meets the budget" if auto else ""))


def apply_precision(args: argparse.Namespace) -> None:
    """``--device D --precision P`` becomes the device of D's family at P, so every command after this sees one
    device name (its table, its refusals) and nothing else branches on precision."""
    precision = getattr(args, "precision", None)
    device = getattr(args, "device", None)
    if precision in (None, AUTO_PRECISION) or device is None:    # auto: every precision, chosen per arch
        return
    from nas.latency.devices import device_at_precision

    named = device if isinstance(device, list) else [device]
    at = {d: device_at_precision(d, precision) for d in named}
    args.device = [at[d] for d in device] if isinstance(device, list) else at[device]
    luts = getattr(args, "lut", None)
    if isinstance(luts, list):      # nas search's --lut DEVICE=FILE may name the device as given
        args.lut = [f"{at.get(d, d)}{sep}{path}" for d, sep, path in (v.partition("=") for v in luts)]
