"""The evolutionary strategy (Once-for-All's): children stay in the space and within the budgets, the search beats
its own first (random) generation, and a killed search resumes at the same children without evaluating any twice."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from nas.errors import UsageError
from nas.search.budgets import Budgets
from nas.search.evolution import EvolutionSettings, EvolutionStrategy, child
from nas.search.objectives import CapacityProxy
from nas.search.records import best_record
from nas.search.strategy import SearchContext
from nas.search.workers import LocalEvaluator


class CountingProxy(CapacityProxy):
    """The capacity proxy, counting the archs it is asked to evaluate."""

    calls = 0

    def __call__(self, arch):
        self.calls += 1
        return super().__call__(arch)


@pytest.fixture(scope="module")
def budgets(tiny, tiny_iphone12):
    fastest = Budgets.load(tiny, [1e9], ["iphone12"], {"iphone12": str(tiny_iphone12)}).fastest(tiny)["iphone12"]
    return Budgets.load(tiny, [fastest * 1.3], ["iphone12"], {"iphone12": str(tiny_iphone12)})


def _context(tmp_path, tiny, budgets, trials, settings=None, seed=0):
    objective = CountingProxy(tiny)
    objective.counts.cache = tmp_path / "counts.json"
    return SearchContext(tiny, objective, budgets, LocalEvaluator(objective), tmp_path, "s",
                         trials=trials, seed=seed, settings=settings)


@pytest.mark.parametrize("space_name", ["tiny", "tiny_hybrid"])
def test_children_of_any_parents_are_in_the_space(request, space_name):
    space = request.getfixturevalue(space_name)
    rng = random.Random(0)
    for _ in range(300):
        parents = [space.sample(rng=rng) for _ in range(rng.choice([1, 2]))]
        arch = child(space, rng, parents, rng.choice([0.0, 0.1, 1.0]))
        space.validate(arch)
        assert child(space, rng, parents[:1], 0.0).to_json() == parents[0].to_json()   # no redraw: a copy


def test_a_crossover_takes_each_gene_from_a_parent(tiny):
    rng = random.Random(1)
    a, b = tiny.largest(), tiny.smallest(tiny.mixers[0])
    for _ in range(50):
        c = child(tiny, rng, [a, b], 0.0)
        assert all(w in (wa, wb) for w, wa, wb in zip(c.widths, a.widths, b.widths))
        assert all(d in (da, db) for d, da, db in zip(c.depths, a.depths, b.depths))


def test_evolution_improves_on_its_random_first_generation(tmp_path, tiny, budgets):
    settings = EvolutionSettings(population=8)
    ctx = _context(tmp_path, tiny, budgets, trials=48, settings=settings)
    records = EvolutionStrategy().run(ctx)
    assert len(records) == 48 and [r.number for r in records] == list(range(48))
    assert len({r.arch.to_json() for r in records}) == 48      # no arch evaluated twice
    assert ctx.objective.calls == 48
    first, rest = records[:8], records[8:]
    assert sum(r.feasible for r in rest) / len(rest) >= 0.9      # children are redrawn into the budgets
    assert best_record(rest).objective > best_record(first).objective
    for r in records:
        assert r.latency_ms == pytest.approx(budgets.latencies(r.arch))


def test_a_killed_evolution_resumes_at_the_same_children(tmp_path, tiny, budgets):
    settings = EvolutionSettings(population=6)
    whole = EvolutionStrategy().run(_context(tmp_path / "whole", tiny, budgets, 20, settings))
    # a search killed after its 9th evaluation: evolution.json holds the first nine
    killed = tmp_path / "killed"
    EvolutionStrategy().run(_context(killed, tiny, budgets, 20, settings))
    log = json.loads((killed / "evolution.json").read_text())
    log["records"] = log["records"][:9]
    (killed / "evolution.json").write_text(json.dumps(log))
    ctx = _context(killed, tiny, budgets, 20, settings)
    resumed = EvolutionStrategy().run(ctx)
    assert [r.to_dict() | {"worker_pid": 0} for r in resumed] == [r.to_dict() | {"worker_pid": 0} for r in whole]
    assert ctx.objective.calls == 11


def test_a_record_of_other_settings_or_a_corrupt_one_is_refused(tmp_path, tiny, budgets):
    EvolutionStrategy().run(_context(tmp_path, tiny, budgets, 6, EvolutionSettings(population=3)))
    with pytest.raises(UsageError, match="other settings"):
        EvolutionStrategy().run(_context(tmp_path, tiny, budgets, 6, EvolutionSettings(population=4)))
    log = json.loads((tmp_path / "evolution.json").read_text())
    log["records"][0]["objective"] = "NaN"
    (tmp_path / "evolution.json").write_text(json.dumps(log))
    with pytest.raises(UsageError, match="evolution.json"):
        EvolutionStrategy().run(_context(tmp_path, tiny, budgets, 6, EvolutionSettings(population=3)))


def test_nas_search_strategy_evolution_end_to_end_and_again_resumes(tmp_path, tiny, tiny_iphone12):
    """The command line as a user types it: the run directory is named by the changed setting, holds
    evolution.json beside the usual files, run.json reports the generations, and the same command again resumes
    from evolution.json: the same trials, none evaluated twice."""
    import csv

    fastest = Budgets.load(tiny, [1e9], ["iphone12"], {"iphone12": str(tiny_iphone12)}).fastest(tiny)["iphone12"]
    args = ["search", "--space", "tiny", "--budget-ms", f"{fastest * 1.3:.4f}", "--device", "iphone12", "--lut",
            f"iphone12={tiny_iphone12}", "--strategy", "evolution", "--population", "6", "--trials", "12",
            "--export", "none", "--no-progress", "--json"]
    runs = tmp_path / "work"
    runs.mkdir()

    def search() -> dict:
        proc = subprocess.run([sys.executable, "-m", "nas", *args], cwd=runs, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    result = search()
    out = runs / result["out"]
    assert out.name.endswith("_evolution-population6_seed0") and (out / "evolution.json").is_file()
    assert result["trials"] == 12 and result["best"]["latency_ms"] > 0
    assert (result["evolution"]["generations"], result["evolution"]["evaluations"]) == (2, 12)
    rows = list(csv.DictReader((out / "trials.csv").open()))
    again = search()
    assert (again["evolution"]["resumed"], again["evolution"]["evaluations"]) == (12, 0)
    assert list(csv.DictReader((out / "trials.csv").open())) == rows and again["best"] == result["best"]


@pytest.mark.slow
@pytest.mark.ray
def test_evolution_with_inherited_accuracy_evaluates_on_ray_workers(tmp_path, tiny, tiny_iphone12):
    """``--workers 2`` with a supernet objective: each generation's children go to the Ray workers a batch at a
    time, and the records are the same plain records as in one process."""
    from tests.helpers import OwnProcesses, random_supernet_and_images, run_nas

    random_supernet_and_images(tmp_path, tiny, per_class=8)
    own = OwnProcesses()
    fastest = Budgets.load(tiny, [1e9], ["iphone12"], {"iphone12": str(tiny_iphone12)}).fastest(tiny)["iphone12"]
    proc = run_nas("search", "--space", "tiny", "--budget-ms", f"{fastest * 1.5:.4f}", "--device", "iphone12",
                   "--lut", f"iphone12={tiny_iphone12}", "--strategy", "evolution", "--population", "4", "--trials",
                   "8", "--workers", "2", "--supernet", str(tmp_path / "supernet.pt"), "--data",
                   str(tmp_path / "data"), "--val-images", "8", "--bn-images", "8", "--out", str(tmp_path / "run"),
                   "--export", "none", "--no-progress", "--json", env=own.env())
    own.kill()
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["trials"] == 8 and result["workers"] == 2 and result["evolution"]["evaluations"] == 8
    log = json.loads((tmp_path / "run" / "evolution.json").read_text())
    pids = {r["worker_pid"] for r in log["records"]}
    assert len(log["records"]) == 8 and os.getpid() not in pids and all(0 <= r["objective"] <= 100
                                                                         for r in log["records"])
