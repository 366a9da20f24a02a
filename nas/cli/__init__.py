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
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas import __version__
from nas.cli import dashboard, devices, export, lut, measure, predict, search, space, supernet
from nas.cli._common import Handler, Parser, apply_precision
from nas.errors import EnvironmentFailure, UsageError

GROUPS = (space, devices, predict, measure, lut, supernet, search, export, dashboard)   # each has register(commands)
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or a container's stop, ``kill PID``): raised in the main thread so that it unwinds
    like Ctrl-C does (staging files removed, Optuna's trial in flight failed, the pool's children stopped) instead
    of dying where it stands, as Python's default for SIGTERM does."""


_SIGTERM_SEEN = threading.Event()


def _raise_terminated(signum: int, frame: Any) -> None:
    _SIGTERM_SEEN.set()
    raise Terminated()


def _after_sigterm() -> tuple[type[BaseException], ...]:
    """What ``_main`` reports as the stop itself: nothing normally; once SIGTERM arrived, anything, since the
    unwinding it started can raise again on its way (a lock file the interrupted code had not made yet, which its
    ``finally`` then removes), and that second error must not be reported instead of the stop."""
    return (BaseException,) if _SIGTERM_SEEN.is_set() else ()


def main(argv: Sequence[str] | None = None) -> int:
    previous = None
    if threading.current_thread() is threading.main_thread():
        _SIGTERM_SEEN.clear()
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        check_outputs(args)
        apply_precision(args)
        yield_idle_threads(args)
        if getattr(args, "ray_address", None):
            from nas.ray_cluster import prepare_auth

            prepare_auth()        # before any handler imports Ray
        handler: Handler = args.func
        status = handler(args)
        sys.stdout.flush()      # here, not at exit: a reader that went away is a BrokenPipeError below
        return status
    except _after_sigterm():    # matches nothing unless SIGTERM arrived (the except expression is read now)
        print("nas: stopped by SIGTERM; everything finished before it is kept: run the same command again to go on "
              "(with --resume where the command has one)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except UsageError as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 2
    except EnvironmentFailure as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:   # e.g. `nas space sample --n 1000 | head`: the reader has what it wanted
        # Python's recipe (docs of signal, "Note on SIGPIPE"): point stdout at devnull so the flush at exit is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        return _os_error(exc)
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


def _os_error(exc: OSError) -> int:
    """The file system said no where no reader or writer could say more: one line, naming the path."""
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENAMETOOLONG:
        print(f"nas: error:{where}: a name in this path is too long for the file system (most allow 255 bytes a "
              "name); choose a shorter one", file=sys.stderr)
        return 2
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        print(f"nas: error: cannot make the folder{where}: a file is in the way (check --out, $NAS_LUT_DIR, "
              "$NAS_DATA_DIR and $HOME)", file=sys.stderr)
        return 1
    if exc.errno == errno.ENOENT and exc.filename:     # a folder that could not be made (a $HOME in /proc, ...)
        print(f"nas: error:{where}: no such file or folder, and it could not be made there (check the path, "
              "$HOME, $NAS_LUT_DIR and $NAS_DATA_DIR)", file=sys.stderr)
        return 1
    if exc.errno not in _ENVIRONMENT_ERRNOS:
        raise exc
    print(f"nas: error: cannot write{where}: {exc.strerror}; nothing finished before this was lost",
          file=sys.stderr)
    return 1


# Commands that train or evaluate networks but time nothing. When the machine is already busy as they start,
# their OpenMP threads sleep when idle instead of spinning (OMP_WAIT_POLICY=PASSIVE): two 2-thread trainings of a
# tiny arch on 2 cores took 390 ms a step each with spinning threads, 104 ms passive (alone: 51 ms spinning, 78
# passive, which is why a quiet machine keeps the default); a tiny_hybrid supernet step beside a busy
# 2-thread process took 3.9 s spinning, 0.27 s passive. Latency measurements always keep the default: tables are
# timed as deployed code runs.
_TRAINING_COMMANDS = ("supernet", "export")
BUSY_SAMPLE_S = 0.25


def yield_idle_threads(args: argparse.Namespace) -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` for the training commands (and a search that measures nothing) when other work
    holds a core already, unless the user set a policy; said in one line. torch is not imported yet here, and
    OpenMP reads the variable when torch loads it. "Other work" is sampled over a quarter second (the cores kept
    busy while this process sleeps), not read from the load average: that is a minute's decaying mean, and a
    training started just after a neighbour's job began kept spinning threads. Threads are cut to the cores left
    free as well. Beside 6 spinning processes on 2 cores (``benchmarks/train_under_load.py``, docs/benchmarks.md):
    2 spinning threads trained 8.0 images/s (24.7x slower than quiet; the issue #26 report's 17x), 2 sleeping
    ones 28.1, 1 thread 33.9, and this rule 30.7."""
    search_without_timing = args.command == "search" and not getattr(args, "verify", 0)
    if not (args.command in _TRAINING_COMMANDS or search_without_timing) or "OMP_WAIT_POLICY" in os.environ:
        return
    from nas.machine import busy_words, is_busy, load_now

    load = load_now(BUSY_SAMPLE_S)
    if not is_busy(load):
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    threads = ""
    if "OMP_NUM_THREADS" not in os.environ:     # as many threads as cores the other work leaves free
        free = max(1, load["cores"] - math.ceil(load.get("busy_cores", load["load_1m"])))
        os.environ["OMP_NUM_THREADS"] = str(free)
        threads = f" and run {free} thread{'s' if free > 1 else ''} (OMP_NUM_THREADS={free})"
    print(f"nas: note: this machine is busy ({busy_words(load)}): threads yield when idle "
          f"(OMP_WAIT_POLICY=PASSIVE){threads}, which keeps a shared machine from slowing this run many times over",
          file=sys.stderr)


# Commands whose --out is a folder (a run directory, an export, a check's state); every other --out, --plot and
# --log-dir... is a file, except --log-dir (TensorBoard writes a folder)
FOLDER_OUTPUTS = {("search", None), ("export", None), ("supernet", "rank")}


def _out_is_folder(args: argparse.Namespace, sub: str | None) -> bool:
    if (args.command, sub) in FOLDER_OUTPUTS:
        return True
    if (args.command, sub) == ("lut", "build"):      # a device measured elsewhere (Core ML): a package folder
        from nas.latency.devices import DEVICES, INGESTED, MEASURED

        device = DEVICES.get(args.device)
        return device is not None and MEASURED not in device.table_sources and INGESTED in device.table_sources
    return False


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output where it cannot go: an unwritable place (``check_output``), a folder
    where a file is written (it would be replaced), or a file where a folder is (it cannot hold one)."""
    from nas.fileio import check_output, check_owned, check_replaceable_file

    sub = next((getattr(args, k) for k in vars(args) if k.endswith("_command")), None)
    for dest, flag in OUTPUT_OPTIONS.items():
        value = getattr(args, dest, None)
        if not isinstance(value, str) or "://" in value:
            continue
        check_output(value, flag)
        folder = dest == "log_dir" or (dest == "out" and _out_is_folder(args, sub))
        path = Path(value).expanduser()
        if folder and path.exists() and not path.is_dir():
            raise UsageError(f"{flag} {value} is a file; give a folder (new, or one this command wrote)")
        if folder and dest == "out":
            check_owned(path, flag)
        if not folder and path.is_dir():
            raise UsageError(f"{flag} {value} is a folder; give a file path (nothing in the folder is touched)")
        if not folder:
            check_replaceable_file(path, flag)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
