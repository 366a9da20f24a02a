"""``nas search --verify K``: measure the best candidates end to end on the budget devices at hand.

A search maximises the objective against *predicted* latency, so it favours archs the table underestimates (the
optimizer's curse); measuring the finalists removes that bias where the hardware is at hand.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nas.search.budgets import Budgets
from nas.search.records import TrialRecord
from nas.space import SearchSpace


@dataclass(frozen=True)
class CheckedCandidate:
    """One finalist measured end to end: its trial, objective, predicted and measured latency per device."""

    trial: int
    objective: float
    predicted_ms: dict[str, float]
    measured_ms: dict[str, float]
    meets_budgets: bool


@dataclass(frozen=True)
class Verification:
    """What ``--verify`` did: the devices measured here, the finalists in the order measured, the winner (the
    first that met every budget, with its measured latencies; None if none did) and, when there is none, why."""

    devices: list[str]
    checked: list[CheckedCandidate] = field(default_factory=list)
    winner: TrialRecord | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As ``run.json`` keeps it (the winner is the run's ``best``)."""
        return {"devices": self.devices, "checked": [dataclasses.asdict(c) for c in self.checked],
                **({"note": self.note} if self.note else {})}


def verify_winner(records: Sequence[TrialRecord], space: SearchSpace, budgets: Budgets, k: int) -> Verification:
    """Measure the best feasible candidates end to end on every budget device that can be measured here, best
    objective first, and return the first whose measured latencies all meet their budgets.

    A search maximises the objective against *predicted* latency, so it favours archs the table underestimates
    (the optimizer's curse); measuring the finalists removes that bias where the hardware is at hand. Every
    measurement is kept with its device's table as a calibration point (``nas lut refit`` then uses it)."""
    from nas.latency.build import measure_arch
    from nas.latency.correction import make_point, new_session
    from nas.latency.devices import get_device

    local = [b for b in budgets.items if get_device(b.device).measurable_here()[0]]
    if not local:
        return Verification([], note="no budget device can be measured on this machine")
    candidates = sorted((r for r in records if r.feasible), key=lambda r: -r.objective)
    seen: set[str] = set()
    checked: list[CheckedCandidate] = []
    session = new_session()
    for record in candidates:
        key = record.arch.to_json()
        if key in seen:
            continue
        if len(checked) >= k:
            break
        seen.add(key)
        arch = record.arch
        tables = {b.device: b.predictors[b.choose(arch)[0]] for b in local}   # at the precision it ships in
        measured = {b.device: measure_arch(get_device(tables[b.device].table.header["device"]), arch, space,
                                           recipe=tables[b.device].table.header.get("quantization")).median_ms
                    for b in local}     # int8: quantised as its table priced it
        for b in local:
            _keep(tables[b.device], make_point(arch, measured[b.device], "verify", session))
        ok = all(measured[b.device] <= b.budget_ms for b in local)
        checked.append(CheckedCandidate(record.number, record.objective,
                                        {b.device: record.latency_ms[b.device] for b in local}, measured, ok))
        if ok:
            return Verification([b.device for b in local], checked, dataclasses.replace(record, measured_ms=measured))
    return Verification([b.device for b in local], checked,
                        note="no measured candidate met every budget; the winner is the best by prediction")


def _keep(predictor: Any, point: dict[str, Any]) -> None:
    """A measured winner joins its (measured) table's calibration points; a read-only table is left as it is."""
    from nas.latency.table import add_points

    if predictor.kind == "measured" and predictor.path:
        try:
            add_points(predictor.path, [point])
        except OSError:
            pass
