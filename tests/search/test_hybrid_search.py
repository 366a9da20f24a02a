"""Searching a space whose MB3D blocks choose among token mixers: conditional Optuna parameters, mixer-swap
slimming, and a run that reports the winner's mixers and how often each was tried."""
from __future__ import annotations

import json

import optuna
import pytest

from nas.search.budgets import Budgets
from nas.search.objectives import CapacityProxy
from nas.search.optuna_settings import OptunaSettings
from nas.search.records import best_record
from nas.search.slim import actions
from nas.search.strategy import STRATEGIES, SearchContext, get_strategy
from nas.search.workers import LocalEvaluator
from tests.helpers import run_nas


@pytest.fixture(scope="module")
def budgets(tiny_hybrid, tiny_hybrid_iphone12):
    luts = {"iphone12": str(tiny_hybrid_iphone12)}
    fastest = Budgets.load(tiny_hybrid, [1e9], ["iphone12"], luts).fastest(tiny_hybrid)["iphone12"]
    return Budgets.load(tiny_hybrid, [fastest * 1.3], ["iphone12"], luts)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_searches_the_hybrid_space(tmp_path, tiny_hybrid, budgets, strategy):
    objective = CapacityProxy(tiny_hybrid)
    objective.counts.cache = tmp_path / "counts.json"
    settings = OptunaSettings(storage=f"sqlite:///{tmp_path / 'study.db'}") if strategy == "optuna" else None
    ctx = SearchContext(tiny_hybrid, objective, budgets, LocalEvaluator(objective), tmp_path, "s", trials=12,
                        seed=0, settings=settings)
    records = get_strategy(strategy).run(ctx)
    best = best_record(records)
    assert best is not None and best.latency_ms["iphone12"] <= budgets.primary.budget_ms
    for r in records:
        assert tiny_hybrid.validate(r.arch)
    if strategy == "optuna":   # each block's knobs are parameters of its mixer only (conditional, per mixer)
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
        for trial in study.trials:
            for j in range(trial.params.get("n3d", 0)):
                mixer = trial.params.get(f"mixer{j}")
                if mixer is None:
                    continue
                names = {k for k in trial.params if k.startswith((f"heads{j}_", f"key_dim{j}_"))}
                assert names == (set() if mixer == "ssa" else {f"heads{j}_{mixer}", f"key_dim{j}_{mixer}"})


def test_slimming_can_swap_a_blocks_mixer(tiny_hybrid):
    arch = tiny_hybrid.largest()                          # every 3D block MHSA, the largest knobs
    names = [name for name, _ in actions(arch, tiny_hybrid)]
    assert "mixer of 3D block 1 to cga" in names and "mixer of 3D block 3 to ssa" in names
    swapped = dict(actions(arch, tiny_hybrid))["mixer of 3D block 2 to ssa"]
    assert swapped.mixers[1] == "ssa" and swapped.heads[1] == 0 and swapped.key_dims[1] == 0
    ssa = dict(actions(tiny_hybrid.largest("ssa"), tiny_hybrid))
    assert not [n for n in ssa if n.startswith(("heads of", "key dim of"))]       # SSA has no such knobs
    back = ssa["mixer of 3D block 1 to cga"]
    assert back.heads[0] in tiny_hybrid.knobs("cga").heads


def test_main_command_on_the_hybrid_space_reports_the_winners_mixers(tmp_path):
    out = tmp_path / "run"
    proc = run_nas("search", "--space", "efficientformer_hybrid", "--budget-ms", "1.6", "--device", "iphone12",
                   "--trials", "20", "--out", str(out), "--json", "--no-progress", "--export", "none")
    assert proc.returncode == 0, proc.stderr
    assert "mixer(s) cga, ssa are extrapolated" in proc.stderr
    result = json.loads(proc.stdout)
    best, usage = result["best"], result["mixers"]
    assert best["latency_ms"] <= 1.6 and result["space"] == "efficientformer_hybrid"
    assert sum(usage["winner"].values()) == best["arch"]["n3d"]
    assert set(usage["trials_using"]) == {"mhsa", "cga", "ssa"} and sum(usage["blocks_tried"].values()) > 0
    text = run_nas("search", "--space", "efficientformer_hybrid", "--budget-ms", "1.6", "--device", "iphone12",
                   "--trials", "20", "--out", str(out), "--no-progress", "--export", "none")
    assert text.returncode == 0, text.stderr
    assert "mixers of the winner:" in text.stdout and "tried: mhsa in" in text.stdout
