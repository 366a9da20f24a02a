"""Once-for-All's evolutionary search (Cai et al. 2020, ``EvolutionFinder``; HAT's is the same), under the budgets.

A first population of random archs that meet every budget (latency by the tables, sizes by the op counts: both
cost microseconds, so an arch is priced before it is evaluated and never evaluated to be thrown away); then, each
generation, the best ``parent_ratio`` of the feasible archs so far are parents, ``mutation_ratio`` of the children
are a parent with each gene redrawn with probability ``mutate_prob`` and the rest a uniform crossover of two
parents, each child redrawn until it meets the budgets and was not evaluated before (from the space at random
when the parents are too alike to give a new one). It stops at ``--trials`` evaluations.

Draws are a function of the seed, the generation and the records before it, and the records are written to
``evolution.json`` as they are evaluated, so a killed search resumes at the same children and evaluates none twice.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from nas.search.records import RecordLog, TrialRecord
from nas.search.strategy import SearchContext, Strategy
from nas.settings import setting
from nas.space import Arch, SearchSpace

if TYPE_CHECKING:
    from nas.search.budgets import Budgets

DRAWS_PER_CHILD = 50      # redraws of a child that misses the budgets or repeats an arch, before taking it anyway


@dataclass(frozen=True)
class EvolutionSettings:
    """How the population evolves (``nas search --strategy evolution``); OFA's values but a smaller population,
    so that the default 100 trials make five generations."""

    population: int = setting(20, "archs per generation", minimum=2, maximum=100_000)
    parent_ratio: float = setting(0.25, "the best fraction of a population that parents the next", minimum=0.01,
                                  maximum=1.0)
    mutation_ratio: float = setting(0.5, "the fraction of children made by mutating one parent (the rest cross "
                                    "two over)", minimum=0.0, maximum=1.0)
    mutate_prob: float = setting(0.1, "the probability that a mutation redraws each gene", minimum=0.0,
                                 maximum=1.0)


def child(space: SearchSpace, rng: random.Random, parents: Sequence[Arch], redraw: float) -> Arch:
    """An arch whose every gene (a stage's width and depth, the 3D block count, a block's MLP ratio, a 3D block's
    mixer and its knobs) comes from one of ``parents`` at random (one parent: a copy; two: uniform crossover), or
    with probability ``redraw`` from the space, as ``SearchSpace.sample`` draws it. A gene a parent lacks (a
    block past its depth, a knob of a mixer it does not use) comes from the others, else from the space, so the
    child is always in the space."""

    def gene(values: list[Any], allowed: Sequence[Any]) -> Any:
        inherited = [v for v in values if v in allowed]
        return rng.choice(inherited) if inherited and rng.random() >= redraw else rng.choice(list(allowed))

    def at(seq: Sequence[Any], i: int) -> list[Any]:
        return [seq[i]] if i < len(seq) else []

    widths = [gene([p.widths[s] for p in parents], stage.widths) for s, stage in enumerate(space.stages)]
    depths = [gene([p.depths[s] for p in parents], stage.depths) for s, stage in enumerate(space.stages)]
    n3d = gene([p.n3d for p in parents], [n for n in space.n3d if n <= depths[-1]])
    ratios = tuple(tuple(gene([r for p in parents for r in at(p.mlp_ratios[s], i)], space.mlp_ratios)
                         for i in range(depth)) for s, depth in enumerate(depths))
    mixers = [gene([m for p in parents for m in at(p.mixers, j)], space.mixers) for j in range(n3d)]
    heads = [gene([p.heads[j] for p in parents if j < p.n3d and p.mixers[j] == m], space.knobs(m).allowed_heads)
             for j, m in enumerate(mixers)]
    key_dims = [gene([p.key_dims[j] for p in parents if j < p.n3d and p.mixers[j] == m],
                     space.knobs(m).allowed_key_dims) for j, m in enumerate(mixers)]
    return Arch(space.name, tuple(widths), tuple(depths), n3d, ratios, tuple(heads), tuple(key_dims), tuple(mixers))


def _rank_key(record: TrialRecord, primary: str) -> tuple[bool, float]:
    """Better first: feasible before not, then a higher objective (feasible) or a lower latency (not)."""
    return (not record.feasible, -record.objective if record.feasible else record.latency_ms[primary])


class EvolutionStrategy(Strategy):
    name = "evolution"
    state_files = ("evolution.json",)

    def run(self, ctx: SearchContext) -> list[TrialRecord]:
        settings: EvolutionSettings = self.settings_of(ctx.settings, EvolutionSettings)
        config = {"space": ctx.space.name, "objective": ctx.objective.name, "budgets": ctx.budgets.config(),
                  "seed": ctx.seed, **asdict(settings)}
        log = RecordLog(ctx.out / "evolution.json", self.name, config, ctx.space)
        # resumed: evaluated already, in the order drawn (keyed by the arch's canonical JSON)
        done = {r.arch.to_json(): r for r in log.records}
        resumed = len(done)
        for r in log.records:
            if ctx.on_record:
                ctx.on_record(r)
        records: list[TrialRecord] = []
        evaluated: set[str] = set()      # the archs of ``records``
        chunk = settings.population if ctx.objective.cheap else max(1, ctx.evaluator.workers)
        generation = 0
        while len(records) < ctx.trials:
            size = min(settings.population, ctx.trials - len(records))
            rng = random.Random(f"{ctx.seed}/{generation}")
            parents = self._parents(records, settings, ctx.budgets.primary.device) if generation else []
            archs = self._children(ctx.space, ctx.budgets, rng, parents, settings, size, evaluated)
            if not archs:
                break               # every arch the space holds has been evaluated
            for start in range(0, len(archs), chunk):
                batch = archs[start:start + chunk]
                fresh = [a for a in batch if a.to_json() not in done]
                for a, (value, pid) in zip(fresh, ctx.evaluator.map(fresh) if fresh else []):
                    record = self._record(ctx, len(done), a, value, pid)
                    done[a.to_json()] = record
                    log.append(record)
                    if ctx.on_record:
                        ctx.on_record(record)
                log.save()
                records += [done[a.to_json()] for a in batch]
                evaluated.update(a.to_json() for a in batch)
            generation += 1
        self.summary = {"generations": generation, **asdict(settings), "resumed": resumed,
                        "evaluations": len(done) - resumed}      # evaluated by this run
        return sorted(records, key=lambda r: r.number)

    def describe(self, summary: dict[str, Any]) -> str | None:
        return (f"evolution: {summary['generations']} generations of {summary['population']} (parents: the best "
                f"{summary['parent_ratio']:.0%}; {summary['mutation_ratio']:.0%} mutations with a gene redrawn at "
                f"p={summary['mutate_prob']:g}, the rest crossovers)"
                + (f"; {summary['resumed']} records resumed from evolution.json" if summary.get("resumed") else ""))

    @staticmethod
    def _parents(records: list[TrialRecord], settings: EvolutionSettings, primary: str) -> list[Arch]:
        """The best ``parent_ratio`` × ``population`` archs (at least two) among all the records so far, those within
        the budgets first (OFA keeps the best of the population; every record so far includes them)."""
        count = max(2, math.ceil(settings.parent_ratio * settings.population))
        best = sorted(records, key=lambda r: (*_rank_key(r, primary), r.number))[:count]
        return [r.arch for r in best]

    @staticmethod
    def _children(space: SearchSpace, budgets: Budgets, rng: random.Random, parents: list[Arch],
                  settings: EvolutionSettings, size: int, seen: set[str]) -> list[Arch]:
        """``size`` new archs, each redrawn until it meets the budgets and is new (a first generation: random)."""
        out: list[Arch] = []
        taken = set(seen)
        mutations = round(size * settings.mutation_ratio)
        for k in range(size):
            last = None
            for draw in range(2 * DRAWS_PER_CHILD):
                # parents too alike to give a new child (a converged population, a small space): a random arch
                if not parents or draw >= DRAWS_PER_CHILD:
                    arch = space.sample(rng=rng)
                elif k < mutations or len(parents) < 2:
                    arch = child(space, rng, [rng.choice(parents)], settings.mutate_prob)
                else:
                    arch = child(space, rng, rng.sample(parents, 2), 0.0)
                if arch.to_json() in taken:
                    continue
                last = arch
                if budgets.feasible(budgets.latencies(arch), budgets.limited_sizes(arch)):
                    break
            if last is not None:        # new, and within the budgets unless none of its draws was
                out.append(last)
                taken.add(last.to_json())
        return out

    @staticmethod
    def _record(ctx: SearchContext, number: int, arch: Arch, value: float, pid: int) -> TrialRecord:
        latencies, sizes = ctx.budgets.latencies(arch), ctx.budgets.limited_sizes(arch)
        return TrialRecord(number, value, arch, latencies, ctx.budgets.feasible(latencies, sizes),
                           details={**ctx.objective.details(arch), **sizes}, worker_pid=pid)
