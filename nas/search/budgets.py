"""Budgets a winner must all meet: one or several (device, ms) latency budgets, each priced by its device's latency
table (the same predictor as ``nas predict``), and optionally size limits (``--max-params`` in millions,
``--max-macs`` in GMACs; EfficientFormerV2's size constraint), counted from the same per-op decomposition as the
capacity proxy (``nas.latency.counts``)."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.latency.devices import get_device, precision_family
from nas.latency.paths import default_table_path
from nas.latency.predict import LutPredictor, estimate_notice, load_predictor
from nas.space import Arch, SearchSpace, space_flag


@dataclass
class Budget:
    device: str
    budget_ms: float
    predictor: LutPredictor            # the table of --device at the precision named (or the first one found)
    guarantee: float | None = None     # --guarantee P: the upper bound at coverage P must meet the budget
    # --precision auto: the table of each precision of the device's family that has one, most precise first
    # (``nas.latency.precision``'s order); empty: the one precision of ``predictor``
    by_precision: dict[str, LutPredictor] = field(default_factory=dict)

    @property
    def predictors(self) -> dict[str, LutPredictor]:
        """Each precision the arch may ship in on this device, with its table, most precise first."""
        return self.by_precision or {self.predictor.precision: self.predictor}

    @property
    def upper_factor(self) -> float:
        """upper bound / prediction at the guarantee's coverage (1 without one): the same for every arch, since
        the table's residuals are relative (``nas.latency.correction``); under --precision auto the largest of
        the tables' factors, so the guarantee holds whichever precision an arch ships in."""
        if self.guarantee is None:
            return 1.0
        return max(p.upper_factor(self.guarantee) for p in self.predictors.values())

    @property
    def limit_ms(self) -> float:
        """What the predicted (median) latency must not exceed: the budget, divided by the bound's factor under a
        guarantee."""
        return self.budget_ms / self.upper_factor

    def choose(self, arch: Arch) -> tuple[str, float]:
        """The precision ``arch`` ships in on this device and its predicted latency there: the most precise one
        whose prediction meets the budget, else the fastest (the nearest to meeting it). One precision: its own.

        Why the most precise, not the most accurate by measurement: post-training quantisation costs accuracy
        (0.2 points on average on ``tiny``, up to 1; docs/precision.md), so where float meets the budget it ships
        in float, and each trial scores one model, not one per precision."""
        predicted = {p: pred.predict(arch) for p, pred in self.predictors.items()}
        for precision, ms in predicted.items():
            if ms <= self.limit_ms:
                return precision, ms
        fastest = min(predicted, key=lambda p: predicted[p])
        return fastest, predicted[fastest]

    def to_dict(self) -> dict[str, Any]:
        header = self.predictor.table.header
        out = {"device": self.device, "budget_ms": self.budget_ms, "table": str(self.predictor.path),
               "table_kind": self.predictor.kind, "table_fidelity": header.get("fidelity"),
               "precision": "auto" if self.by_precision else self.predictor.precision}
        if self.by_precision:
            out["tables_by_precision"] = {p: str(pred.path) for p, pred in self.by_precision.items()}
        for pred in self.predictors.values():
            if pred.table.header.get("quantization"):
                out["int8_op_types"] = pred.table.header["quantization"]["op_types"]
        if self.guarantee is not None:
            out.update(guarantee=self.guarantee, upper_factor=self.upper_factor, median_limit_ms=self.limit_ms,
                       interval_source=self.interval_source)
        return out

    @property
    def interval_source(self) -> str:
        """Where the guarantee's upper bound comes from (the table's held-out errors), in words."""
        if self.guarantee is None:
            return "none (no residuals)"
        worst = max(self.predictors.values(), key=lambda p: p.upper_factor(self.guarantee))  # type: ignore[arg-type]
        res = worst.residuals
        if not res:
            return "none (no residuals)"
        described = str(res.describe(self.guarantee, two_sided=False))
        return f"{worst.precision} table: {described}" if self.by_precision else described


SIZE_LIMITS = {"params_m": ("--max-params", "M parameters"), "gmacs": ("--max-macs", "GMACs")}


class Budgets:
    def __init__(self, budgets: Sequence[Budget], size_limits: dict[str, float | None] | None = None,
                 space: SearchSpace | None = None):
        self.items = list(budgets)
        self.size_limits: dict[str, float] = {k: v for k, v in (size_limits or {}).items() if v is not None}
        self._space = space
        self._counts: Any = None

    @classmethod
    def load(cls, space: SearchSpace, budget_ms: Sequence[float], devices: Sequence[str],
             luts: dict[str, str] | None = None, max_params_m: float | None = None,
             max_gmacs: float | None = None, guarantee: float | None = None, auto: bool = False) -> Budgets:
        """The budgets of ``nas search``; ``auto`` (``--precision auto``): each device's budget may be met at any
        precision of its family that has a table here (``Budget.choose``), each precision's table from ``luts``
        under its own device name or the default one."""
        if not budget_ms or len(budget_ms) != len(devices):
            raise UsageError(f"give one --device per --budget-ms (got {len(budget_ms)} budgets and {len(devices)} "
                             "devices), e.g. --budget-ms 1.6 --device iphone12 --budget-ms 40 --device cpu")
        if len(set(devices)) != len(devices):
            raise UsageError(f"--device {', '.join(devices)}: a device appears twice; one budget per device")
        for ms in budget_ms:
            if not (ms > 0 and math.isfinite(ms)):
                finite = "" if math.isfinite(ms) else " (a finite one)"
                raise UsageError(f"--budget-ms {ms}: expected a positive number of milliseconds{finite}")
        for key, value in (("params_m", max_params_m), ("gmacs", max_gmacs)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                flag, unit = SIZE_LIMITS[key]
                raise UsageError(f"{flag} {value}: expected a positive number of {unit}")
        if guarantee is not None and not 0.5 <= guarantee < 1:
            raise UsageError(f"--guarantee {guarantee}: expected a coverage in [0.5, 1), e.g. 0.9")
        luts = luts or {}
        if auto:      # a budget is on the family (--device onnxruntime-int8 --precision auto is onnxruntime's)
            devices = [get_device(d).base for d in devices]
            if len(set(devices)) != len(devices):
                raise UsageError(f"--device {', '.join(devices)}: under --precision auto a family appears twice "
                                 "(one budget per device family)")
        accepted = [name for device in devices
                    for name in ([d.name for d in precision_family(device)] if auto else [device])]
        unknown = sorted(set(luts) - set(accepted))
        if unknown:
            raise UsageError(f"--lut {unknown[0]}=...: no budget for device {unknown[0]!r}; "
                             f"expected one of {', '.join(accepted)}")
        items = []
        for ms, device in zip(budget_ms, devices):
            if auto:
                found = _tables_by_precision(device, space, luts)
                budget = Budget(device, float(ms), next(iter(found.values())), guarantee, found)
            else:
                budget = Budget(device, float(ms), load_predictor(device, space, luts.get(device)), guarantee)
            for pred in budget.predictors.values():
                if guarantee is not None and pred.residuals is None:
                    raise UsageError(f"--guarantee {guarantee}: the {pred.table.header['device']} table {pred.path} "
                                     f"has no end-to-end points to bound its error; accepted: a table with "
                                     f"calibration points (nas lut build, or nas lut check --device "
                                     f"{pred.table.header['device']} --refit)")
            items.append(budget)
        return cls(items, {"params_m": max_params_m, "gmacs": max_gmacs}, space)

    @property
    def primary(self) -> Budget:
        """The first budget: its device's latency is the one reported as ``latency_ms`` and plotted."""
        return self.items[0]

    @property
    def guarantee(self) -> float | None:
        return self.items[0].guarantee if self.items else None

    @property
    def auto(self) -> bool:
        """Whether each arch's precision is chosen per device (``--precision auto``)."""
        return any(b.by_precision for b in self.items)

    def latencies(self, arch: Arch) -> dict[str, float]:
        """Predicted (median) latency per device, at the precision ``arch`` ships in there."""
        return {b.device: b.choose(arch)[1] for b in self.items}

    def precisions(self, arch: Arch) -> dict[str, str]:
        """The precision ``arch`` ships in on each device (``Budget.choose``; one per device without auto)."""
        return {b.device: b.choose(arch)[0] for b in self.items}

    def upper_bounds(self, latencies: dict[str, float]) -> dict[str, float]:
        """The upper bounds a guarantee holds, from the predictions (``latencies`` itself without a guarantee)."""
        return {b.device: latencies[b.device] * b.upper_factor for b in self.items}

    def sizes(self, arch: Arch) -> dict[str, float]:
        """Parameters (M) and GMACs of ``arch``: what the size limits hold (computed for any arch)."""
        if self._counts is None:
            from nas.latency.counts import OpCounts
            from nas.space import load_space

            self._counts = OpCounts(self._space or load_space(arch.space))
        params, macs = self._counts.counts(arch)
        return {"params_m": params / 1e6, "gmacs": macs / 1e9}

    def limited_sizes(self, arch: Arch) -> dict[str, float]:
        """``sizes`` when some size limit is set, else nothing (and nothing computed)."""
        return self.sizes(arch) if self.size_limits else {}

    def violations(self, latencies: dict[str, float], sizes: dict[str, float] | None = None) -> list[float]:
        """Optuna's constraint values: latency - budget per device, then size - limit per size limit (<= 0 is
        feasible); ``sizes`` (``limited_sizes``) is needed when size limits are set."""
        out = [latencies[b.device] * b.upper_factor - b.budget_ms for b in self.items]
        if self.size_limits:
            if sizes is None:
                raise ValueError("size limits are set: pass the arch's sizes")
            out += [sizes[k] - limit for k, limit in self.size_limits.items()]
        return out

    def constraint_names(self) -> list[str]:
        """Names of ``violations``' entries, in order."""
        return [f"latency_{b.device}" for b in self.items] + list(self.size_limits)

    def feasible(self, latencies: dict[str, float], sizes: dict[str, float] | None = None) -> bool:
        return all(v <= 0 for v in self.violations(latencies, sizes))

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
        return {b.device: min(p.predict(a) for a in candidates for p in b.predictors.values()) for b in self.items}

    def feasible_seed(self, space: SearchSpace) -> Arch | None:
        """A fastest-candidate arch that meets every budget (searches start from it, so one trial is feasible)."""
        for arch in self.fastest_candidates(space):
            if self.feasible(self.latencies(arch), self.limited_sizes(arch)):
                return arch
        return None

    def require_reachable(self, space: SearchSpace) -> None:
        """Exit 2 (no search) when even the fastest arch of the space misses a budget."""
        fastest = self.fastest(space)
        for b in self.items:
            if fastest[b.device] * b.upper_factor > b.budget_ms:
                bound = fastest[b.device] * b.upper_factor
                what = (f"has an upper bound of {bound:.3f} ms at {b.guarantee:.0%} coverage"
                        if b.guarantee is not None else f"takes {bound:.3f} ms there")
                raise UsageError(f"--budget-ms {b.budget_ms:g} on {b.device} cannot be met: the fastest arch of "
                                 f"space {space.name!r} {what}; accepted: a budget >= {bound:.3f} ms")
        if self.size_limits:   # size is monotone in every knob: the space's smallest arch is its smallest
            sizes = [self.sizes(a) for a in self.fastest_candidates(space)]
            lowest = {k: min(size[k] for size in sizes) for k in self.size_limits}
            for key, limit in self.size_limits.items():
                if lowest[key] > limit:
                    flag, unit = SIZE_LIMITS[key]
                    raise UsageError(f"{flag} {limit:g} cannot be met: the smallest arch of space {space.name!r} has "
                                     f"{lowest[key]:.3f} {unit}; accepted: a limit >= {lowest[key]:.3f}")

    def precision(self) -> tuple[str, dict[str, Any] | None]:
        """The precision the model ships in, with the int8 tables' recipe: ``("int8", recipe)`` when a budget's
        table is int8 (an accuracy objective then quantises by that recipe), else ``("fp32", None)``."""
        recipe = self.int8_recipe()
        return ("int8", recipe) if recipe is not None else ("fp32", None)

    def int8_recipe(self) -> dict[str, Any] | None:
        """The int8 recipe of the budgets' int8 tables (what an accuracy objective quantises by), or None when no
        budget is int8; two int8 tables with different recipes are refused (one model ships, one graph)."""
        recipes = {json.dumps(q, sort_keys=True): q for b in self.items for p in b.predictors.values()
                   if (q := p.table.header.get("quantization")) is not None}
        if len(recipes) > 1:
            raise UsageError("the int8 budgets' tables were measured with different recipes (op types in int8: "
                             + "; ".join(",".join(q["op_types"]) for q in recipes.values())
                             + "); one model ships: give int8 budgets whose tables share one recipe")
        return next(iter(recipes.values()), None)

    def notices(self) -> list[str]:
        out = [n for b in self.items for p in b.predictors.values() if (n := estimate_notice(p))]
        for b in self.items:
            if b.by_precision and len(b.by_precision) < len(precision_family(b.device)):
                absent = [d for d in precision_family(b.device) if d.precision not in b.by_precision]
                out.append(f"nas: note: --precision auto on {b.device}: no table here at "
                           + ", ".join(f"{d.precision} (nas lut build --device {d.name} adds it)" for d in absent)
                           + f"; choosing among {', '.join(b.by_precision)}")
        return out

    def describe(self) -> str:
        sure = f" at {self.guarantee:.0%} coverage" if self.guarantee is not None else ""
        return ", ".join([f"{b.budget_ms:g} ms on {b.device}{sure}" for b in self.items]
                         + [f"{SIZE_LIMITS[k][0]} {v:g}" for k, v in self.size_limits.items()])

    def tables_config(self) -> dict[str, str]:
        """sha256 of each device's latency table: a resume priced by another table is another study."""
        import hashlib

        def digest(p: LutPredictor) -> str:
            return hashlib.sha256(Path(p.path).read_bytes()).hexdigest()[:16] if p.path else "built-in"

        return {(f"{b.device}@{precision}" if b.by_precision else b.device): digest(p)
                for b in self.items for precision, p in b.predictors.items()}

    def config(self) -> list[list[Any]]:
        """What a resumed search must match: each budget, then each size limit."""
        out = [[b.device, b.budget_ms] for b in self.items] + [[k, v] for k, v in self.size_limits.items()]
        out += [["guarantee", self.guarantee]] if self.guarantee is not None else []
        return out + ([["precision", "auto"]] if self.auto else [])


def _tables_by_precision(device: str, space: SearchSpace, luts: dict[str, str]) -> dict[str, LutPredictor]:
    """Under --precision auto: the table of each precision of ``device``'s family that has one (a --lut for it,
    else its default table), most precise first; a family with no table at all is refused in one line."""
    found: dict[str, LutPredictor] = {}
    missing = []
    for member in precision_family(device):
        if member.name in luts or default_table_path(member.name, space.name).exists():
            found[member.precision] = load_predictor(member.name, space, luts.get(member.name))
        else:
            missing.append(member)
    if not found:
        raise UsageError(f"--precision auto on {device}: no latency table at any precision of it "
                         f"({', '.join(f'{m.precision} ({m.name})' for m in missing)}); build one with: nas lut "
                         f"build --device {device}{space_flag(space.name)}")
    return found


def parse_luts(values: Sequence[str] | None) -> dict[str, str]:
    luts: dict[str, str] = {}
    for value in values or []:
        device, sep, path = value.partition("=")
        if not sep or not device or not path:
            raise UsageError(f"--lut {value!r}: expected DEVICE=FILE, e.g. --lut cpu=cpu.json")
        if not Path(path).is_file():
            raise UsageError(f"--lut {value!r}: {path} does not exist")
        if device in luts:
            raise UsageError(f"--lut {device}= is given twice ({luts[device]} and {path}); give one table per device")
        luts[device] = path
    return luts
