"""The Optuna strategy's settings (``nas search --strategy optuna``, the default): which sampler draws the trials,
where the study is stored and under which name. Kept out of ``nas.search.optuna_search`` because the command line
reads every strategy's settings on every ``nas`` command, and that module imports Optuna."""
from __future__ import annotations

from dataclasses import dataclass

from nas.settings import setting

SAMPLERS = ("tpe", "nsga2", "random")


@dataclass(frozen=True)
class OptunaSettings:
    sampler: str = setting("tpe", "Optuna sampler (nsga2: objective-latency Pareto front; default tpe)",
                           choices=SAMPLERS)
    storage: str | None = setting(None, "Optuna storage: a journal file path or a SQLAlchemy URL (default: "
                                        "OUT/study.log)", value_type=str, metavar="URL")
    study: str | None = setting(None, "study name, also the run directory's; the same name resumes (default: "
                                      "from the settings)", value_type=str, metavar="NAME")
