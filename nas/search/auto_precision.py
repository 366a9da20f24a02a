"""``nas search --precision auto``: the arch and the precision it ships in, chosen together.

Each budget device may run the arch at any precision of its family that has a table here (``onnxruntime``: fp32,
and int8 once ``nas lut build --device onnxruntime --precision int8`` has run). ``Budget.choose`` gives each arch
the most precise of them whose table meets the budget, so a trial is feasible when *some* precision meets it, and
the strategies (Optuna, slimming, evolution) need to know nothing of it: they price archs through
``Budgets.latencies``, which answers at the chosen precision. This module makes the objective agree: an accuracy
scores each arch as it ships (after int8 post-training quantisation where a device needs int8), a proxy of the
float network's structure is the same at every precision and is left as it is.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nas.latency.precision import PRECISIONS
from nas.search.objectives import Objective

if TYPE_CHECKING:
    from nas.search.budgets import Budgets
    from nas.space import Arch


def objective_as_shipped(objective: Objective, budgets: Budgets) -> Objective:
    """``objective`` scoring each arch at the precision it ships in under ``budgets``: at the budgets' one
    precision, or, under ``--precision auto``, at each arch's own (``ScoredAtChosenPrecision``)."""
    if not budgets.auto:
        return objective.at_precision(*budgets.precision())
    recipe = budgets.int8_recipe()
    precisions = {p for b in budgets.items for p in b.predictors}
    by_precision = {p: objective.at_precision(p, recipe if PRECISIONS[p].quantized else None)
                    for p in PRECISIONS if p in precisions}
    if all(o is objective for o in by_precision.values()):      # the same at every precision (a proxy)
        return objective
    return ScoredAtChosenPrecision(by_precision, budgets)


class ScoredAtChosenPrecision(Objective):
    """Each arch scored by the objective of the precision it ships in: where devices choose different precisions,
    the least precise (a model quantised for one device must be good enough there too)."""

    def __init__(self, by_precision: dict[str, Objective], budgets: Budgets):
        self.by_precision, self.budgets = by_precision, budgets
        first = next(iter(by_precision.values()))
        self.name = f"{first.name}_auto"
        self.label = (f"{first.label}; --precision auto: each arch scored at the precision it ships in ("
                      + ", ".join(f"{p} as {o.name}" for p, o in by_precision.items()) + ")")
        self.is_accuracy, self.checkpoint, self.cheap = first.is_accuracy, first.checkpoint, first.cheap

    def shipped_precision(self, arch: Arch) -> str:
        order = list(PRECISIONS)
        return max(self.budgets.precisions(arch).values(), key=order.index)

    def __call__(self, arch: Arch) -> float:
        return self.by_precision[self.shipped_precision(arch)](arch)

    def details(self, arch: Arch) -> dict[str, float]:
        return self.by_precision[self.shipped_precision(arch)].details(arch)

    def flush(self) -> None:
        for objective in self.by_precision.values():
            objective.flush()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "by_precision": {p: o.config() for p, o in self.by_precision.items()}}
