"""An arch as Optuna parameters. Every parameter keeps one distribution for the whole study (Optuna requires
it): per-block knobs exist only for blocks the trial's depths create (conditional parameters), and ``n3d`` is
drawn from the space's values and then clipped to the last stage's depth."""
from __future__ import annotations

import optuna

from nas.space import Arch, SearchSpace


def suggest_arch(trial: optuna.Trial, space: SearchSpace) -> Arch:
    ns = space.num_stages
    widths = [trial.suggest_categorical(f"width{s}", list(space.stages[s].widths)) for s in range(ns)]
    depths = [trial.suggest_categorical(f"depth{s}", list(space.stages[s].depths)) for s in range(ns)]
    drawn = trial.suggest_categorical("n3d", list(space.n3d))
    allowed = [n for n in space.n3d if n <= depths[-1]]
    n3d = max([n for n in allowed if n <= drawn], default=min(allowed))
    ratios = [[trial.suggest_categorical(f"mlp_ratio{s}_{i}", list(space.mlp_ratios)) for i in range(depths[s])]
              for s in range(ns)]
    if len(space.mixers) == 1:
        # one mixer: the names and order studies of such spaces have always used (a seeded study is unchanged)
        knobs = space.knobs(space.mixers[0])
        heads = [_knob(trial, f"heads{j}", knobs.heads) for j in range(n3d)]
        key_dims = [_knob(trial, f"key_dim{j}", knobs.key_dims) for j in range(n3d)]
        mixers = [trial.suggest_categorical(f"mixer{j}", list(space.mixers)) for j in range(n3d)]
    else:
        # the mixer first, then only the knobs it has, named per mixer: a parameter keeps one distribution for
        # the whole study, and CGA's heads need not be MHSA's
        mixers = [trial.suggest_categorical(f"mixer{j}", list(space.mixers)) for j in range(n3d)]
        heads = [_knob(trial, f"heads{j}_{m}", space.knobs(m).heads) for j, m in enumerate(mixers)]
        key_dims = [_knob(trial, f"key_dim{j}_{m}", space.knobs(m).key_dims) for j, m in enumerate(mixers)]
    return space.arch_from_dict({"space": space.name, "widths": widths, "depths": depths, "n3d": n3d,
                                 "mlp_ratios": ratios, "heads": heads, "key_dims": key_dims, "mixers": mixers})


def _knob(trial: optuna.Trial, name: str, choices: tuple[int, ...]) -> int:
    """A knob the block's mixer has, or 0 (and no parameter) for one it lacks."""
    return trial.suggest_categorical(name, list(choices)) if choices else 0


def arch_params(arch: Arch, space: SearchSpace) -> dict[str, object]:
    """The parameters ``suggest_arch`` turns back into ``arch`` (to enqueue a known arch in a study)."""
    params: dict[str, object] = {f"width{s}": w for s, w in enumerate(arch.widths)}
    params.update({f"depth{s}": d for s, d in enumerate(arch.depths)})
    params["n3d"] = arch.n3d
    for s, ratios in enumerate(arch.mlp_ratios):
        params.update({f"mlp_ratio{s}_{i}": e for i, e in enumerate(ratios)})
    for j, m in enumerate(arch.mixers):
        suffix = "" if len(space.mixers) == 1 else f"_{m}"
        knobs = space.knobs(m)
        params[f"mixer{j}"] = m
        if knobs.heads:
            params[f"heads{j}{suffix}"] = arch.heads[j]
        if knobs.key_dims:
            params[f"key_dim{j}{suffix}"] = arch.key_dims[j]
    return params
