"""Latency budgets: one or several (device, ms) constraints that a winner must all meet, each priced by its
device's latency table (the same predictor as ``nas predict``)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.latency.predict import LutPredictor, estimate_notice, load_predictor
from nas.space import Arch, SearchSpace


@dataclass
class Budget:
    device: str
    budget_ms: float
    predictor: LutPredictor

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "budget_ms": self.budget_ms, "table": str(self.predictor.path),
                "table_kind": self.predictor.kind}


class Budgets:
    def __init__(self, budgets: Sequence[Budget]):
        self.items = list(budgets)

    @classmethod
    def load(cls, space: SearchSpace, budget_ms: Sequence[float], devices: Sequence[str],
             luts: dict[str, str] | None = None) -> Budgets:
        if not budget_ms or len(budget_ms) != len(devices):
            raise UsageError(f"give one --device per --budget-ms (got {len(budget_ms)} budgets and {len(devices)} "
                             "devices), e.g. --budget-ms 1.6 --device iphone12 --budget-ms 40 --device cpu")
        if len(set(devices)) != len(devices):
            raise UsageError(f"--device {', '.join(devices)}: a device appears twice; one budget per device")
        for ms in budget_ms:
            if not ms > 0:
                raise UsageError(f"--budget-ms {ms}: expected a positive number of milliseconds")
        luts = luts or {}
        unknown = sorted(set(luts) - set(devices))
        if unknown:
            raise UsageError(f"--lut {unknown[0]}=...: no budget for device {unknown[0]!r}; "
                             f"expected one of {', '.join(devices)}")
        items = []
        for ms, device in zip(budget_ms, devices):
            predictor = load_predictor(device, space.name, luts.get(device))
            items.append(Budget(device, float(ms), predictor))
        return cls(items)

    @property
    def primary(self) -> Budget:
        """The first budget: its device's latency is the one reported as ``latency_ms`` and plotted."""
        return self.items[0]

    def latencies(self, arch: Arch) -> dict[str, float]:
        return {b.device: b.predictor.predict(arch) for b in self.items}

    def violations(self, latencies: dict[str, float]) -> list[float]:
        """Optuna's constraint values: latency - budget per device (<= 0 is feasible)."""
        return [latencies[b.device] - b.budget_ms for b in self.items]

    def feasible(self, latencies: dict[str, float]) -> bool:
        return all(v <= 0 for v in self.violations(latencies))

    def fastest_candidates(self, space: SearchSpace) -> list[Arch]:
        """Every knob at its minimum, with each number of 3D blocks and each mixer (a 3D block may be cheaper or
        dearer than a 4D one): the fastest arch on any device is one of these."""
        out = []
        for mixer in space.mixers:
            base, knobs = space.smallest(mixer), space.knobs(mixer)
            out += [replace(base, n3d=n, heads=(min(knobs.allowed_heads),) * n,
                            key_dims=(min(knobs.allowed_key_dims),) * n, mixers=(mixer,) * n)
                    for n in space.n3d if n <= base.depths[-1]]
        return out

    def fastest(self, space: SearchSpace) -> dict[str, float]:
        """The lowest latency any arch of the space reaches on each device."""
        candidates = self.fastest_candidates(space)
        return {b.device: min(b.predictor.predict(a) for a in candidates) for b in self.items}

    def feasible_seed(self, space: SearchSpace) -> Arch | None:
        """A fastest-candidate arch that meets every budget (searches start from it, so one trial is feasible)."""
        for arch in self.fastest_candidates(space):
            if self.feasible(self.latencies(arch)):
                return arch
        return None

    def require_reachable(self, space: SearchSpace) -> None:
        """Exit 2 (no search) when even the fastest arch of the space misses a budget."""
        fastest = self.fastest(space)
        for b in self.items:
            if fastest[b.device] > b.budget_ms:
                raise UsageError(f"--budget-ms {b.budget_ms:g} on {b.device} cannot be met: the fastest arch of "
                                 f"space {space.name!r} takes {fastest[b.device]:.3f} ms there; accepted: a budget "
                                 f">= {fastest[b.device]:.3f} ms")

    def notices(self) -> list[str]:
        return [n for b in self.items if (n := estimate_notice(b.predictor))]

    def describe(self) -> str:
        return ", ".join(f"{b.budget_ms:g} ms on {b.device}" for b in self.items)


def parse_luts(values: Sequence[str] | None) -> dict[str, str]:
    luts = {}
    for value in values or []:
        device, sep, path = value.partition("=")
        if not sep or not device or not path:
            raise UsageError(f"--lut {value!r}: expected DEVICE=FILE, e.g. --lut cpu=cpu.json")
        if not Path(path).is_file():
            raise UsageError(f"--lut {value!r}: {path} does not exist")
        luts[device] = path
    return luts
