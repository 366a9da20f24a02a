"""The objective seam (issue #27): each objective is a registered record; ``nas search`` makes ``--score`` and each
objective's options from the records, builds the chosen one with its settings, and refuses another's setting."""
from __future__ import annotations

import json

import pytest

from nas.cli import main
from nas.latency.counts import OpCounts
from nas.search.budgets import Budgets
from nas.search.objectives import OBJECTIVES, Objective, ObjectiveEntry, make_objective, register_objective
from nas.space import Arch, SearchSpace
from tests.helpers import run_nas


class FewerParams(Objective):
    """A contributor's objective, as CONTRIBUTING.md's recipe writes it: minus the parameter count."""

    name = "fewer_params"
    label = "minus the parameter count (M)"
    cheap = True

    def __init__(self, space: SearchSpace):
        self.counts = OpCounts(space)

    def __call__(self, arch: Arch) -> float:
        return -self.counts.counts(arch)[0] / 1e6


def fewer_params(space: SearchSpace, settings: object | None) -> Objective:
    return FewerParams(space)


@pytest.fixture(scope="module")
def budget_args(tiny, tiny_iphone12) -> list[str]:
    fastest = Budgets.load(tiny, [1e9], ["iphone12"], {"iphone12": str(tiny_iphone12)}).fastest(tiny)["iphone12"]
    return ["--space", "tiny", "--budget-ms", f"{fastest * 1.3:.6f}", "--device", "iphone12",
            "--lut", f"iphone12={tiny_iphone12}"]


def test_a_new_objective_is_one_registration(tmp_path, tiny, budget_args, monkeypatch, capsys):
    monkeypatch.setitem(OBJECTIVES, "fewer-params", ObjectiveEntry(f"{__name__}:fewer_params",
                                                                   "minus the parameter count"))
    assert main(["search", *budget_args, "--score", "fewer-params", "--trials", "8", "--out", str(tmp_path / "r"),
                 "--export", "none", "--json", "--no-progress"]) == 0
    best = json.loads(capsys.readouterr().out)["best"]
    assert best["objective_name"] == "fewer_params" and best["objective_label"] == FewerParams.label
    arch = tiny.arch_from_dict(best["arch"])
    assert best["objective"] == pytest.approx(-OpCounts(tiny).counts(arch)[0] / 1e6)


def test_an_objective_name_registers_once():
    with pytest.raises(ValueError, match="already registered"):
        register_objective("capacity", ObjectiveEntry("nas.search.objectives:capacity_objective", "again"))


def test_naswot_scores_the_winner_as_the_objective_computed_alone(tmp_path, tiny, budget_args):
    """``--score naswot --data``, end to end as a user runs it: the winner's objective is its NASWOT score."""
    from nas.search.zero_cost_objective import ZeroCostSettings

    proc = run_nas("search", *budget_args, "--score", "naswot", "--data", "builtin:digits", "--proxy-images", "16",
                   "--trials", "4", "--out", str(tmp_path / "r"), "--export", "none", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    best = json.loads(proc.stdout)["best"]
    assert best["objective_name"] == "naswot_images16" and "naswot" in best["objective_label"]
    objective = make_objective(tiny, "naswot", ZeroCostSettings("builtin:digits", 16))
    assert best["objective"] == pytest.approx(objective(tiny.arch_from_dict(best["arch"])))
    assert best["details"]["params_m"] > 0          # sizes recorded: the objective-latency-size front is written


@pytest.mark.parametrize("args, message", [
    (["--score", "naswot"], "add --data"),
    (["--score", "capacity", "--val-images", "10"], "--val-images: a setting of --score supernet"),
    (["--proxy-images", "8", "--supernet", "x.pt", "--data", "builtin:digits"],
     "--proxy-images: a setting of --score naswot"),
    (["--score", "nope"], "invalid choice: 'nope'"),
    (["--score", "naswot", "--data", "builtin:digits", "--proxy-images", "1"], "--proxy-images 1: accepted"),
])
def test_objective_settings_are_refused_in_one_line(tmp_path, budget_args, args, message):
    proc = run_nas("search", *budget_args, *args, "--out", str(tmp_path / "r"), "--export", "none")
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()
