"""EfficientFormer's latency-driven slimming (paper §4.3, shared SEEDS.md §1.4), generalised to the space's knobs.

Start from the largest subnet. At each step, take a set of candidate actions that keep the arch in the space:

- ``--actions importance`` (the default when the supernet was trained with ``--gumbel``): EfficientFormer's guided
  actions, a handful per step (``guided_actions``: the least important MetaPath to identity, the first MB3D to
  MB4D, the least important stage narrowed, the least important block's mixer and MLP ratio);
- ``--actions all``: every action (``actions``: drop any block, narrow any stage, lower any knob, swap any mixer).

Dropping a block sets it to identity and keeps the others on their own slots (``Arch.slots``). Price each with the
latency tables (and sizes), evaluate each distinct candidate once, and take the one that loses the least objective
per millisecond saved (milliseconds as a fraction of each budget still exceeded; ``--objective mes``: per MES
gained, EfficientFormerV2's). Stop when every budget and size limit is met, or with ``--pareto`` when no action
saves anything more. Each step is written to ``slim.json`` as it is taken, so a killed run resumes where it was.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError
from nas.fileio import read_json, write_json_atomic
from nas.schemas import check
from nas.search.records import TrialRecord
from nas.search.strategy import Progress, SearchContext, Strategy
from nas.settings import setting
from nas.space import Arch, SearchSpace, first_3d_index

if TYPE_CHECKING:     # annotations only: the command line reads SlimSettings here, so no torch at import
    from nas.search.budgets import Budgets
    from nas.search.objectives import Objective
    from nas.search.workers import Evaluator
    from supernet.gumbel import Importance

SLIM_SCHEMA = "nas-slim/2"   # /2: settings, evaluation cache and counts beside the steps


def _smaller(choices: Sequence[int], value: int) -> int | None:
    lower = [c for c in choices if c < value]
    return max(lower) if lower else None


def _all_slots(arch: Arch) -> list[tuple[int, ...]]:
    return [arch.stage_slots(s) for s in range(len(arch.depths))]


def drop_block(arch: Arch, stage: int, index: int) -> dict[str, Any]:
    """The changes that set block ``index`` of ``stage`` to identity (EfficientFormer's MetaPath I): the other
    blocks keep their slots, so their own weights (``Arch.slots``); a 3D block goes with its attention settings."""
    depths = list(arch.depths)
    depths[stage] -= 1
    ratios = tuple(r[:index] + r[index + 1:] if k == stage else r for k, r in enumerate(arch.mlp_ratios))
    slots = _all_slots(arch)
    slots[stage] = slots[stage][:index] + slots[stage][index + 1:]
    changes: dict[str, Any] = {"depths": tuple(depths), "mlp_ratios": ratios, "slots": tuple(slots)}
    first_3d = first_3d_index(arch.depths, arch.n3d, stage)
    if index >= first_3d:
        j = index - first_3d
        changes.update(n3d=arch.n3d - 1, heads=arch.heads[:j] + arch.heads[j + 1:],
                       key_dims=arch.key_dims[:j] + arch.key_dims[j + 1:], mixers=arch.mixers[:j] + arch.mixers[j + 1:])
    return changes


def _lower_ratio(arch: Arch, space: SearchSpace, stage: int, index: int) -> tuple[int, dict[str, Any]] | None:
    lower = _smaller(space.mlp_ratios, arch.mlp_ratios[stage][index])
    if lower is None:
        return None
    return lower, {"mlp_ratios": tuple(tuple(lower if (k, b) == (stage, index) else x for b, x in enumerate(r))
                                       for k, r in enumerate(arch.mlp_ratios))}


def _narrow(arch: Arch, space: SearchSpace, stage: int) -> tuple[int, dict[str, Any]] | None:
    width = _smaller(space.stages[stage].widths, arch.widths[stage])
    if width is None:
        return None
    return width, {"widths": tuple(width if k == stage else w for k, w in enumerate(arch.widths))}


def _to_4d(arch: Arch) -> dict[str, Any]:
    return {"n3d": arch.n3d - 1, "heads": arch.heads[1:], "key_dims": arch.key_dims[1:], "mixers": arch.mixers[1:]}


def _swap_mixer(arch: Arch, space: SearchSpace, j: int, other: str) -> dict[str, Any]:
    target = space.knobs(other)
    return {"mixers": _set(arch.mixers, j, other),
            "heads": _set(arch.heads, j, _nearest(target.allowed_heads, arch.heads[j])),
            "key_dims": _set(arch.key_dims, j, _nearest(target.allowed_key_dims, arch.key_dims[j]))}


class _Candidates:
    """Named one-step slimmings that are still points of the space (others are skipped silently)."""

    def __init__(self, arch: Arch, space: SearchSpace):
        self.arch, self.space = arch, space
        self.items: list[tuple[str, Arch]] = []

    def add(self, name: str, changes: dict[str, Any]) -> bool:
        try:
            self.items.append((name, self.space.validate(replace(self.arch, **changes))))
            return True
        except UsageError:
            return False      # not a point of the space (e.g. a depth or n3d value the space does not allow)


def actions(arch: Arch, space: SearchSpace) -> list[tuple[str, Arch]]:
    """Every one-step slimming of ``arch`` that is still a point of ``space``, in a fixed order (``--actions
    all``): drop any block, narrow any stage, lower any block's MLP ratio, turn the first 3D block into 4D, lower
    any 3D block's heads or key dim, swap any 3D block's mixer."""
    out = _Candidates(arch, space)
    for s in range(space.num_stages):
        first_3d = first_3d_index(arch.depths, arch.n3d, s)
        for i in range(arch.depths[s]):
            what = f"3D block {i - first_3d + 1}" if i >= first_3d else f"block {i + 1}"
            out.add(f"drop {what} of stage {s + 1}", drop_block(arch, s, i))
        narrowed = _narrow(arch, space, s)
        if narrowed is not None:
            out.add(f"narrow stage {s + 1} to {narrowed[0]}", narrowed[1])
        for i in range(arch.depths[s]):
            lowered = _lower_ratio(arch, space, s, i)
            if lowered is not None:
                out.add(f"MLP ratio of stage {s + 1} block {i + 1} to {lowered[0]}", lowered[1])
    if arch.n3d:
        out.add("turn the first 3D block into 4D", _to_4d(arch))
    for j, mixer in enumerate(arch.mixers):
        knobs = space.knobs(mixer)
        h = _smaller(knobs.heads, arch.heads[j])
        if h is not None:
            out.add(f"heads of 3D block {j + 1} to {h}", {"heads": _set(arch.heads, j, h)})
        kd = _smaller(knobs.key_dims, arch.key_dims[j])
        if kd is not None:
            out.add(f"key dim of 3D block {j + 1} to {kd}", {"key_dims": _set(arch.key_dims, j, kd)})
        for other in space.mixers:   # another paper's attention in this block (kept only if it saves time)
            if other != mixer:
                out.add(f"mixer of 3D block {j + 1} to {other}", _swap_mixer(arch, space, j, other))
    return out.items


def guided_actions(arch: Arch, space: SearchSpace, importance: Importance) -> list[tuple[str, Arch]]:
    """EfficientFormer's importance-guided actions (``--actions importance``, SEEDS.md §1.4), a handful per step:

    1. set the least important MetaPath (kept block) to identity, the next one where the space's depths forbid it;
    2. turn the first MB3D block into MB4D;
    3. narrow the least important stage (sum of its kept positions' importances) to its next width (16 channels);
    4. the least important MB3D block with each other token mixer (hybrid spaces);
    5. lower the MLP ratio of the least important block that can still lower it.
    """
    out = _Candidates(arch, space)
    blocks = arch.blocks()
    by_importance = sorted(blocks, key=lambda b: (importance.metapath[(b.stage, b.slot)], b.stage, b.index))
    for b in by_importance:
        if out.add(f"identity for stage {b.stage + 1} position {b.slot + 1} (importance "
                   f"{importance.metapath[(b.stage, b.slot)]:.3g})", drop_block(arch, b.stage, b.index)):
            break
    if arch.n3d:
        out.add("turn the first 3D block into 4D", _to_4d(arch))
    stages = sorted(range(space.num_stages), key=lambda s: (importance.stage(s, arch.stage_slots(s)), s))
    for s in stages:
        narrowed = _narrow(arch, space, s)
        if narrowed is not None and out.add(f"narrow stage {s + 1} to {narrowed[0]} (least important stage)",
                                            narrowed[1]):
            break
    blocks_3d = [b for b in by_importance if b.kind == "3d"]
    if blocks_3d and len(space.mixers) > 1:
        b = blocks_3d[0]
        j = b.index - first_3d_index(arch.depths, arch.n3d, b.stage)
        for other in space.mixers:
            if other != b.mixer:
                out.add(f"mixer of 3D block {j + 1} to {other} (least important 3D block)",
                        _swap_mixer(arch, space, j, other))
    for b in by_importance:
        lowered = _lower_ratio(arch, space, b.stage, b.index)
        if lowered is not None and out.add(f"MLP ratio of stage {b.stage + 1} position {b.slot + 1} to "
                                           f"{lowered[0]} (least important block)", lowered[1]):
            break
    return out.items


def _set(values: tuple[Any, ...], j: int, value: Any) -> tuple[Any, ...]:
    return tuple(value if k == j else x for k, x in enumerate(values))


def _nearest(choices: Sequence[int], value: int) -> int:
    """The choice closest to ``value``, the smaller one on a tie (a mixer swap keeps the block's knobs if it can)."""
    return min(choices, key=lambda c: (abs(c - value), c))


# EfficientFormerV2's MES = Score * prod_i (M_i / U_i) ** -a_i over size and latency (SEEDS.md §2.2); its exponents
# and units are unpublished ([unverified] there). Equal weights on parameters (U = 1 M) and the first budget's
# latency (U = 1 ms): one step's MES gain then counts a 10% parameter cut like a 10% latency cut.
MES_SCORE = 100.0
MES_WEIGHTS = {"params_m": 0.5, "latency_ms": 0.5}


def mes(params_m: float, latency_ms: float) -> float:
    return MES_SCORE * params_m ** -MES_WEIGHTS["params_m"] * latency_ms ** -MES_WEIGHTS["latency_ms"]


@dataclass(frozen=True)
class SlimSettings:
    """How slimming chooses (``nas search --strategy slim``): each field is also its command-line option."""

    actions: str = setting("auto", "importance = EfficientFormer's guided actions (needs a --gumbel supernet), all "
                           "= every action; auto = importance when the supernet has importances (default)",
                           choices=("auto", "importance", "all"))
    trade: str = setting("latency", "what an accuracy drop is weighed against: latency = ms saved "
                         "(EfficientFormer), mes = MES gained (EfficientFormerV2's size-and-latency score); "
                         "default latency", flag="--objective", choices=("latency", "mes"))
    pareto: bool = setting(False, "go on past the first arch within the budgets, down to where no action saves "
                           "anything; pareto.json/.png keep the whole front")


def _step(name: str, arch: Arch, value: float, latencies: dict[str, float], sizes: dict[str, float],
          feasible: bool) -> dict[str, Any]:
    return {"action": name, "arch": arch.to_dict(), "objective": value, "latency_ms": latencies, "sizes": sizes,
            "feasible": feasible}


class _Pricing:
    """Latency and size of candidates, and how much of the budgets still exceeded a step saves."""

    def __init__(self, budgets: Budgets, settings: SlimSettings):
        self.budgets, self.settings = budgets, settings

    def price(self, arch: Arch) -> tuple[dict[str, float], dict[str, float]]:
        return self.budgets.latencies(arch), self.budgets.sizes(arch)

    def over(self, latencies: dict[str, float], sizes: dict[str, float]) -> list[tuple[str, float]]:
        """(key, limit) of the budgets and size limits exceeded; all of them once every one is met (--pareto)."""
        limits = [(b.device, b.limit_ms) for b in self.budgets.items] + list(self.budgets.size_limits.items())
        value = {**latencies, **sizes}
        exceeded = [(k, limit) for k, limit in limits if value[k] > limit]
        return exceeded or limits

    def gain(self, current: dict[str, Any], latencies: dict[str, float], sizes: dict[str, float],
             over: list[tuple[str, float]]) -> float:
        """What a step buys: milliseconds (and sizes) saved as fractions of each exceeded limit, or the MES
        gained (``--objective mes``); a step must save on the exceeded limits either way."""
        before, after = {**current["latency_ms"], **current["sizes"]}, {**latencies, **sizes}
        saved = sum((before[k] - after[k]) / limit for k, limit in over)
        if saved <= 0 or self.settings.trade == "latency":
            return saved
        primary = self.budgets.primary.device
        return (mes(sizes["params_m"], latencies[primary])
                - mes(current["sizes"]["params_m"], current["latency_ms"][primary]))


def slim(space: SearchSpace, objective: Objective, budgets: Budgets, evaluator: Evaluator, path: Path,
         on_step: Callable[[dict[str, Any]], None] | None = None, settings: SlimSettings | None = None,
         importance: Importance | None = None) -> dict[str, Any]:
    """The slimming record: ``steps`` from the largest arch to the first that meets every budget (with
    ``settings.pareto``, on until no action saves anything), and ``evaluations``, the objective evaluations spent.

    A candidate arch already evaluated (in this step or an earlier one) is not evaluated again; an objective drop
    is clipped at zero (inherited top-1 is quantised: several actions can tie at no loss) and ties go to the action
    buying more, so a free action that saves 0.1 ms does not win over a free one saving 1 ms.
    """
    settings = settings or SlimSettings()
    mode = settings.actions if settings.actions != "auto" else ("importance" if importance else "all")
    if mode == "importance" and importance is None:
        raise UsageError("--actions importance needs MetaPath importances: --supernet CKPT of nas supernet train "
                         "--gumbel (accepted without one: --actions all)")
    config = {"space": space.name, "objective": objective.name, "budgets": budgets.config(), "actions": mode,
              "trade": settings.trade, "pareto": settings.pareto}
    state: dict[str, Any] = {"schema": SLIM_SCHEMA, "config": config, "steps": [], "evaluations": 0, "evaluated": {}}
    if path.exists():
        saved = check(read_json(path, "slimming record"), "slimming record", str(path))
        if saved.get("schema") != SLIM_SCHEMA or saved.get("config") != config:
            raise UsageError(f"{path} records a slimming with other settings ({saved.get('config')}); "
                             "use another --out")
        state = saved
    steps, cache = state["steps"], state["evaluated"]
    pricing = _Pricing(budgets, settings)

    def evaluate(archs: list[Arch]) -> list[float]:
        todo = list({a.to_json(): a for a in archs if a.to_json() not in cache}.values())
        if todo:
            for a, (value, _) in zip(todo, evaluator.map(todo)):
                cache[a.to_json()] = value
            state["evaluations"] += len(todo)
        return [cache[a.to_json()] for a in archs]

    def save() -> None:
        write_json_atomic(path, state)

    if not steps:
        start = space.largest()
        latencies, sizes = pricing.price(start)
        steps.append(_step("start: the largest arch", start, evaluate([start])[0], latencies, sizes,
                           budgets.feasible(latencies, sizes)))
        save()
    for step in steps:
        if on_step:
            on_step(step)
    while settings.pareto or not steps[-1]["feasible"]:
        current = steps[-1]
        arch = space.arch_from_dict(current["arch"])
        over = pricing.over(current["latency_ms"], current["sizes"])
        found = actions(arch, space) if mode == "all" else guided_actions(arch, space, importance)  # type: ignore
        scored, seen = [], set()
        for name, candidate in found:
            if candidate.to_json() in seen:   # different actions reaching one arch: priced and evaluated once
                continue
            seen.add(candidate.to_json())
            latencies, sizes = pricing.price(candidate)
            gain = pricing.gain(current, latencies, sizes, over)
            if gain > 0:
                scored.append((name, candidate, latencies, sizes, gain))
        if not scored:
            if current["feasible"]:
                break          # --pareto: the end of the path
            raise UsageError(f"slimming stopped at {current['latency_ms']}: no action saves time; the budgets "
                             f"({budgets.describe()}) cannot be met")
        values = evaluate([c for _, c, _, _, _ in scored])
        drops = [max(0.0, current["objective"] - v) for v in values]
        best = min(range(len(scored)), key=lambda k: (drops[k] / scored[k][4], -scored[k][4], k))
        name, candidate, latencies, sizes, _ = scored[best]
        steps.append(_step(name, candidate, values[best], latencies, sizes,
                           budgets.feasible(latencies, sizes)))
        save()
        if on_step:
            on_step(steps[-1])
    return state


class SlimStrategy(Strategy):
    name = "slim"
    unit = "step"
    records_called = "slimming steps"
    records_form_a_path = True
    state_files = ("slim.json",)

    def describe(self, summary: dict[str, Any]) -> str | None:
        per = "MES gained" if summary["trade"] == "mes" else "ms saved"
        return (f"slimming: {summary['actions']} actions, objective drop per {per}; {summary['evaluations']} "
                f"objective evaluations over {summary['steps'] - 1} steps"
                + (" (on to the end of the front: --pareto)" if summary["pareto"] else ""))

    def progress(self, ctx: SearchContext, first: TrialRecord) -> Progress:
        """Its steps are not known in advance; the milliseconds to shed are (to the budget, or with --pareto to the
        fastest arch)."""
        primary = ctx.budgets.primary.device
        start = first.latency_ms[primary]
        pareto = isinstance(ctx.settings, SlimSettings) and ctx.settings.pareto
        end = ctx.budgets.fastest(ctx.space)[primary] if pareto else ctx.budgets.primary.limit_ms
        total = round(max(start - end, 1e-6), 4)
        return Progress("slimming (ms to shed)", total, "ms",
                        lambda record, count: round(min(total, max(0.0, start - record.latency_ms[primary])), 4))

    def run(self, ctx: SearchContext) -> list[TrialRecord]:
        def record(i: int, step: dict[str, Any]) -> TrialRecord:
            return TrialRecord(i, step["objective"], ctx.space.arch_from_dict(step["arch"]), step["latency_ms"],
                               step["feasible"],
                               details=dict(step["sizes"]), action=step["action"])

        count = iter(range(1 << 62))
        on_record = ctx.on_record
        on_step = (lambda step: on_record(record(next(count), step))) if on_record else None
        settings = self.settings_of(ctx.settings, SlimSettings)
        state = slim(ctx.space, ctx.objective, ctx.budgets, ctx.evaluator, ctx.out / "slim.json", on_step,
                     settings, load_importance_of(ctx.objective))
        self.summary = {"actions": state["config"]["actions"], "trade": state["config"]["trade"],
                        "pareto": state["config"]["pareto"], "evaluations": state["evaluations"],
                        "steps": len(state["steps"])}
        return [record(i, s) for i, s in enumerate(state["steps"])]


def load_importance_of(objective: Objective) -> Importance | None:
    """The MetaPath importances of the supernet an objective scores with, if it was trained with --gumbel."""
    if objective.checkpoint is None:
        return None
    from supernet.checkpoint import load_supernet
    from supernet.gumbel import Importance, has_importance

    net, _ = load_supernet(objective.checkpoint)
    return Importance.of(net) if has_importance(net.state_dict()) else None
