"""Every registered search strategy and Optuna sampler, run in process on the tiny space under an estimated
iPhone 12 budget: each ends with a feasible winner and records that agree with the budgets."""
from __future__ import annotations

import pytest

from nas.latency.costmodel.estimate import estimate_table
from nas.latency.costmodel.model import load_cost_model
from nas.latency.devices import get_device
from nas.search.budgets import Budgets
from nas.search.objectives import CapacityProxy
from nas.search.optuna_settings import SAMPLERS, OptunaSettings
from nas.search.records import best_record
from nas.search.strategy import STRATEGIES, SearchContext, Strategy, StrategyEntry, get_strategy
from nas.search.workers import LocalEvaluator


@pytest.fixture(scope="module")
def budgets(tmp_path_factory, tiny):
    table = tmp_path_factory.mktemp("luts") / "iphone12-tiny.json"
    estimate_table(get_device("iphone12"), tiny, load_cost_model("iphone12"), table, progress=False)
    fastest = Budgets.load(tiny, [1e9], ["iphone12"], {"iphone12": str(table)}).fastest(tiny)["iphone12"]
    return Budgets.load(tiny, [fastest * 1.3], ["iphone12"], {"iphone12": str(table)})


def _run(tmp_path, tiny, budgets, strategy: str, sampler: str = "tpe"):
    objective = CapacityProxy(tiny)
    objective.counts.cache = tmp_path / "counts.json"
    seen = []
    settings = OptunaSettings(sampler, f"sqlite:///{tmp_path / 'study.db'}") if strategy == "optuna" else None
    ctx = SearchContext(tiny, objective, budgets, LocalEvaluator(objective), tmp_path, "s", trials=8, seed=0,
                        on_record=seen.append, settings=settings)
    records = get_strategy(strategy).run(ctx)
    return records, seen


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_finds_a_feasible_arch(tmp_path, tiny, budgets, strategy):
    assert isinstance(get_strategy(strategy), Strategy)
    records, seen = _run(tmp_path, tiny, budgets, strategy)
    best = best_record(records)
    assert best is not None and best.latency_ms["iphone12"] <= budgets.primary.budget_ms
    assert [r.number for r in seen] == [r.number for r in records]      # progress saw every record once
    for r in records:
        assert r.feasible == budgets.feasible(r.latency_ms)
        assert r.latency_ms == pytest.approx(budgets.latencies(r.arch)) and tiny.validate(r.arch)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_the_study_to_its_trial_count(tmp_path, tiny, budgets, sampler):
    records, _ = _run(tmp_path, tiny, budgets, "optuna", sampler)
    assert len(records) == 8 and best_record(records) is not None


class RandomStrategy(Strategy):
    """A contributor's strategy, as CONTRIBUTING.md's recipe writes it: random archs, nothing else."""

    name = "random-test"

    def run(self, ctx: SearchContext) -> list:
        import random

        from nas.search.records import TrialRecord

        rng, records = random.Random(ctx.seed), []
        for number in range(ctx.trials):
            arch = ctx.space.sample(rng=rng)
            latencies = ctx.budgets.latencies(arch)
            records.append(TrialRecord(number, ctx.objective(arch), arch, latencies,
                                       ctx.budgets.feasible(latencies)))
            if ctx.on_record:
                ctx.on_record(records[-1])
        return records


def test_a_new_strategy_gets_its_own_progress_and_no_slimming_output(tmp_path, tiny, budgets, monkeypatch, capsys):
    """Issue #27: a strategy that is neither Optuna nor slimming ran under slimming's "ms to shed" bar and wrote
    slimming's ``path`` into pareto.json; the orchestration now asks the strategy."""
    import json

    from nas.search.run import SearchRequest, run_search

    monkeypatch.setitem(STRATEGIES, "random-test", StrategyEntry(f"{__name__}:RandomStrategy", "random archs"))
    objective = CapacityProxy(tiny)
    objective.counts.cache = tmp_path / "counts.json"
    result = run_search(SearchRequest(tiny, objective, budgets, strategy="random-test", trials=12, out=tmp_path / "r",
                                      export_formats=[], progress=True))
    err = capsys.readouterr().err
    assert "search (random-test)" in err and "ms to shed" not in err and "12/12" in err
    pareto = json.loads((tmp_path / "r" / "pareto.json").read_text())
    assert "path" not in pareto and len(result.records) == 12


def test_settings_modules_import_neither_torch_nor_optuna():
    """The command line reads every strategy's and objective's settings on every ``nas`` command: their modules
    stay light."""
    import subprocess
    import sys

    from nas.search.objectives import OBJECTIVES
    from nas.search.strategy import STRATEGIES

    entries = [*STRATEGIES.values(), *OBJECTIVES.values()]
    modules = sorted({e.settings.split(":")[0] for e in entries if e.settings})
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(m for m in ('torch', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]" and len(modules) >= 5
