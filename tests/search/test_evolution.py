"""The evolutionary strategy (Once-for-All's): children stay in the space and within the budgets, the search beats
its own first (random) generation, and a killed search resumes at the same children without evaluating any twice."""
from __future__ import annotations

import json
import random

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
    return SearchContext(tiny, objective, budgets, LocalEvaluator(objective), tmp_path, "s", "unused",
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
    assert len({json.dumps(r.arch, sort_keys=True) for r in records}) == 48      # no arch evaluated twice
    assert ctx.objective.calls == 48
    first, rest = records[:8], records[8:]
    assert sum(r.feasible for r in rest) / len(rest) >= 0.9      # children are redrawn into the budgets
    assert best_record(rest).objective > best_record(first).objective
    for r in records:
        assert r.latency_ms == pytest.approx(budgets.latencies(tiny.arch_from_dict(r.arch)))


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
