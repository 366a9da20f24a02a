"""``nas dashboard``: optuna-dashboard over a search's study, naming as best the trials that meet the budgets."""
from __future__ import annotations

import argparse

from nas.cli._common import Commands, add_output_args, port


def register(commands: Commands) -> None:
    p = commands.add_parser("dashboard", help="optuna-dashboard over a search's study (best = best feasible trial)")
    p.add_argument("target", metavar="RUN_OR_STORAGE",
                   help="run directory of nas search, a study journal file, or a database URL")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8080, help="port to listen on (default 8080)")
    add_output_args(p, progress=False)
    p.set_defaults(func=dashboard)


def dashboard(args: argparse.Namespace) -> int:
    from nas.search.dashboard import serve

    serve(args.target, args.host, args.port, args.json)
    return 0
