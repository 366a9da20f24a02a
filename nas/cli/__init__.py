"""The ``nas`` command line: one module per command group, each adding its parsers with their handlers.

Contract (shared DESIGN.md): every command has ``--help``; commands that report a result have ``--json`` (one
JSON object on stdout, nothing else there); exit 0 on success, 2 on bad input with a one-line message naming the
value and what is accepted, 1 on other failures. Heavy imports (torch) happen inside the handlers, so the
``space`` commands answer quickly. A handler parses nothing and computes nothing itself: it calls one library
function and hands the result to ``emit``.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence

from nas import __version__
from nas.cli import dashboard, devices, export, lut, predict, search, space, supernet
from nas.cli._common import Handler, Parser
from nas.errors import EnvironmentFailure, UsageError

GROUPS = (space, devices, predict, lut, supernet, search, export, dashboard)   # each has register(commands)
# Options that name where a command writes: checked before the command starts, so no hour of work ends in
# "Permission denied" (a command's own rules, e.g. --out must not exist without --resume, stay with it).
OUTPUT_OPTIONS = {"out": "--out", "plot": "--plot", "log_dir": "--log-dir"}
# errno values that mean the machine, not the input: one line and exit 1, like EnvironmentFailure
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nas", description="Latency-driven neural architecture search for efficient ViTs.")
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        check_outputs(args)
        yield_idle_threads(args)
        if getattr(args, "ray_address", None):
            from nas.ray_cluster import prepare_auth

            prepare_auth()        # before any handler imports Ray
        handler: Handler = args.func
        return handler(args)
    except UsageError as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 2
    except EnvironmentFailure as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"nas: error: cannot write{where}: {exc.strerror}; nothing finished before this was lost",
              file=sys.stderr)
        return 1
    except UnicodeDecodeError as exc:   # a last resort: the readers name the file where they can
        print(f"nas: error: a file given is not UTF-8 text ({exc.reason} at byte {exc.start}); expected JSON, YAML "
              "or CSV text", file=sys.stderr)
        return 2
    except IsADirectoryError as exc:
        print(f"nas: error: {exc.filename} is a folder; expected a file", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # e.g. `nas space sample --n 1000 | head`
        return 0


# Commands that train or evaluate networks but time nothing: their OpenMP threads sleep when idle instead of
# spinning. With the default (spinning) policy, a 2-thread training on 2 cores shared with one other busy process
# ran a tiny_hybrid forward + backward in 3.9 s instead of 0.23 s (17x); passive, in 0.27 s. Latency
# measurements keep the default: tables are timed as deployed code runs.
_TRAINING_COMMANDS = ("supernet", "export")


def yield_idle_threads(args: argparse.Namespace) -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` for the training commands (and a search that measures nothing), unless the
    user set a policy; torch is not imported yet here, and OpenMP reads the variable when torch loads it."""
    search_without_timing = args.command == "search" and not getattr(args, "verify", 0)
    if args.command in _TRAINING_COMMANDS or search_without_timing:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def check_outputs(args: argparse.Namespace) -> None:
    from nas.fileio import check_output

    for dest, flag in OUTPUT_OPTIONS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and "://" not in value:
            check_output(value, flag)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
