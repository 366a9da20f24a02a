"""EfficientFormer's latency-driven slimming (paper §4.3, shared SEEDS.md §1.4), generalised to the space's knobs.

Start from the largest subnet. At each step, try every action that keeps the arch in the space:

- drop a block (any position of a stage whose depth can shrink; in the last stage a 4D or a 3D block),
- turn the first 3D block into 4D,
- narrow a stage to its next smaller width (16 channels in the paper's space),
- lower one block's MLP ratio, or one 3D block's heads or key dim,

price each with the latency tables and the objective, and take the one that loses the least objective per
millisecond saved (milliseconds as a fraction of each budget still exceeded). Stop when every budget is met.
Each step is written to ``slim.json`` in the run directory as it is taken, so a killed run resumes where it was.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.fileio import read_json, write_json_atomic
from nas.search.budgets import Budgets
from nas.search.objectives import Objective
from nas.search.records import TrialRecord
from nas.search.strategy import SearchContext, Strategy
from nas.search.workers import Evaluator
from nas.space import Arch, SearchSpace, first_3d_index

SLIM_SCHEMA = "nas-slim/1"


def _smaller(choices: Sequence[int], value: int) -> int | None:
    lower = [c for c in choices if c < value]
    return max(lower) if lower else None


def actions(arch: Arch, space: SearchSpace) -> list[tuple[str, Arch]]:
    """Every one-step slimming of ``arch`` that is still a point of ``space``, in a fixed order."""
    out: list[tuple[str, Arch]] = []
    ratios = [list(r) for r in arch.mlp_ratios]

    def add(name: str, **changes: Any) -> None:
        candidate = replace(arch, **changes)
        try:
            out.append((name, space.validate(candidate)))
        except UsageError:
            pass          # not a point of the space (e.g. a depth or n3d value the space does not allow)

    for s in range(space.num_stages):
        first_3d = first_3d_index(arch.depths, arch.n3d, s)
        for i in range(arch.depths[s]):
            depths = list(arch.depths)
            depths[s] -= 1
            stage = ratios[s][:i] + ratios[s][i + 1:]
            new_ratios = tuple(tuple(stage) if k == s else tuple(r) for k, r in enumerate(ratios))
            if i >= first_3d:     # a 3D block goes, with its attention settings
                j = i - first_3d
                add(f"drop 3D block {j + 1} of stage {s + 1}", depths=tuple(depths), n3d=arch.n3d - 1,
                    mlp_ratios=new_ratios, heads=arch.heads[:j] + arch.heads[j + 1:],
                    key_dims=arch.key_dims[:j] + arch.key_dims[j + 1:], mixers=arch.mixers[:j] + arch.mixers[j + 1:])
            else:
                add(f"drop block {i + 1} of stage {s + 1}", depths=tuple(depths), mlp_ratios=new_ratios)
        width = _smaller(space.stages[s].widths, arch.widths[s])
        if width is not None:
            add(f"narrow stage {s + 1} to {width}",
                widths=tuple(width if k == s else w for k, w in enumerate(arch.widths)))
        for i, e in enumerate(ratios[s]):
            lower = _smaller(space.mlp_ratios, e)
            if lower is not None:
                new = tuple(tuple(lower if (k, b) == (s, i) else x for b, x in enumerate(r))
                            for k, r in enumerate(ratios))
                add(f"MLP ratio of stage {s + 1} block {i + 1} to {lower}", mlp_ratios=new)
    if arch.n3d:
        add("turn the first 3D block into 4D", n3d=arch.n3d - 1, heads=arch.heads[1:], key_dims=arch.key_dims[1:],
            mixers=arch.mixers[1:])
    for j, mixer in enumerate(arch.mixers):
        knobs = space.knobs(mixer)
        h = _smaller(knobs.heads, arch.heads[j])
        if h is not None:
            add(f"heads of 3D block {j + 1} to {h}", heads=_set(arch.heads, j, h))
        kd = _smaller(knobs.key_dims, arch.key_dims[j])
        if kd is not None:
            add(f"key dim of 3D block {j + 1} to {kd}", key_dims=_set(arch.key_dims, j, kd))
        for other in space.mixers:   # another paper's attention in this block (kept only if it saves time)
            if other != mixer:
                target = space.knobs(other)
                add(f"mixer of 3D block {j + 1} to {other}", mixers=_set(arch.mixers, j, other),
                    heads=_set(arch.heads, j, _nearest(target.allowed_heads, arch.heads[j])),
                    key_dims=_set(arch.key_dims, j, _nearest(target.allowed_key_dims, arch.key_dims[j])))
    return out


def _set(values: tuple[Any, ...], j: int, value: Any) -> tuple[Any, ...]:
    return tuple(value if k == j else x for k, x in enumerate(values))


def _nearest(choices: Sequence[int], value: int) -> int:
    """The choice closest to ``value``, the smaller one on a tie (a mixer swap keeps the block's knobs if it can)."""
    return min(choices, key=lambda c: (abs(c - value), c))


def _step(name: str, arch: Arch, value: float, latencies: dict[str, float]) -> dict[str, Any]:
    return {"action": name, "arch": arch.to_dict(), "objective": value, "latency_ms": latencies}


def slim(space: SearchSpace, objective: Objective, budgets: Budgets, evaluator: Evaluator, path: Path,
         on_step: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """The steps from the largest arch to the first that meets every budget (the last step)."""
    config = {"space": space.name, "objective": objective.name,
              "budgets": [[b.device, b.budget_ms] for b in budgets.items]}
    steps: list[dict[str, Any]] = []
    if path.exists():
        saved = read_json(path, "slimming record")
        if saved.get("schema") != SLIM_SCHEMA or saved.get("config") != config:
            raise UsageError(f"{path} records a slimming with other settings ({saved.get('config')}); "
                             "use another --out")
        steps = saved["steps"]
    if not steps:
        start = space.largest()
        value = evaluator.map([start])[0][0]
        steps.append(_step("start: the largest arch", start, value, budgets.latencies(start)))
        write_json_atomic(path, {"schema": SLIM_SCHEMA, "config": config, "steps": steps})
    for step in steps:
        if on_step:
            on_step(step)
    while not budgets.feasible(steps[-1]["latency_ms"]):
        current = steps[-1]
        arch = space.arch_from_dict(current["arch"])
        over = [b for b in budgets.items if current["latency_ms"][b.device] > b.budget_ms]
        scored = []
        for name, candidate in actions(arch, space):
            latencies = budgets.latencies(candidate)
            saved = sum((current["latency_ms"][b.device] - latencies[b.device]) / b.budget_ms for b in over)
            if saved > 0:
                scored.append((name, candidate, latencies, saved))
        if not scored:
            raise UsageError(f"slimming stopped at {budgets.latencies(arch)}: no action saves time; the budgets "
                             f"({budgets.describe()}) cannot be met")
        values = [v for v, _ in evaluator.map([c for _, c, _, _ in scored])]
        best = min(range(len(scored)), key=lambda k: ((current["objective"] - values[k]) / scored[k][3], k))
        name, candidate, latencies, _ = scored[best]
        steps.append(_step(name, candidate, values[best], latencies))
        write_json_atomic(path, {"schema": SLIM_SCHEMA, "config": config, "steps": steps})
        if on_step:
            on_step(steps[-1])
    return steps


class SlimStrategy(Strategy):
    name = "slim"
    unit = "step"

    def run(self, ctx: SearchContext) -> list[TrialRecord]:
        def record(i: int, step: dict[str, Any]) -> TrialRecord:
            return TrialRecord(i, step["objective"], step["arch"], step["latency_ms"],
                               ctx.budgets.feasible(step["latency_ms"]), action=step["action"])

        count = iter(range(1 << 62))
        on_record = ctx.on_record
        on_step = (lambda step: on_record(record(next(count), step))) if on_record else None
        steps = slim(ctx.space, ctx.objective, ctx.budgets, ctx.evaluator, ctx.out / "slim.json", on_step)
        return [record(i, s) for i, s in enumerate(steps)]
