"""The cost model: a roofline over traced ops (see the package docstring), its file format and where a device's
model is found."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas.errors import UsageError
from nas.fileio import read_json, write_json_atomic
from nas.latency.trace import CATEGORIES, DENSE, OpRecord, trace_ops
from nas.schemas import check

SCHEMA = "nas-cost-model/1"
MULTIPLIED = tuple(c for c in CATEGORIES if c != DENSE)  # dense ops are the reference


@dataclass
class CostModel:
    device: str
    peak_gflop_per_ms: float
    bandwidth_mb_per_ms: float
    per_op_ms: float
    fixed_ms: float
    multipliers: dict[str, float]
    fit: dict[str, Any] = field(default_factory=dict)   # how it was fitted: source, protocol, models, CV errors

    # -- prediction

    def op_ms(self, records: Iterable[OpRecord]) -> float:
        """Sum of the per-op times (without ``fixed_ms``): what a lookup-table entry holds."""
        total = 0.0
        for r in records:
            if r.category not in CATEGORIES:
                continue  # fused into its producer, or a free view
            multiplier = 1.0 if r.category == DENSE else self.multipliers[r.category]
            compute = r.flops / 1e9 / self.peak_gflop_per_ms
            memory = r.bytes / 1e6 * multiplier / self.bandwidth_mb_per_ms
            total += max(compute, memory) + self.per_op_ms
        return total

    def predict_records(self, records: Iterable[OpRecord]) -> float:
        return self.fixed_ms + self.op_ms(records)

    def predict_module(self, module: nn.Module, input_size: int | Sequence[int] = 224) -> float:
        """Estimated end-to-end latency (ms) of any ``nn.Module`` taking one image of ``input_size``."""
        return self.predict_records(trace_ops(module, example_input(input_size)))

    # -- files

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "device": self.device, "peak_gflop_per_ms": self.peak_gflop_per_ms,
                "bandwidth_mb_per_ms": self.bandwidth_mb_per_ms, "per_op_ms": self.per_op_ms,
                "fixed_ms": self.fixed_ms, "multipliers": self.multipliers, "fit": self.fit}

    @classmethod
    def from_dict(cls, data: Any, where: str = "<cost model>") -> CostModel:
        check(data, "cost model", where)     # the shape (nas.schemas); which multipliers the trace needs, here
        missing = [c for c in MULTIPLIED if c not in data["multipliers"]]
        if missing:
            raise UsageError(f"cost model {where}: field 'multipliers' lacks {', '.join(missing)}; required: "
                             f"{', '.join(MULTIPLIED)}")
        multipliers = {c: float(data["multipliers"][c]) for c in MULTIPLIED}
        return cls(str(data["device"]), float(data["peak_gflop_per_ms"]), float(data["bandwidth_mb_per_ms"]),
                   float(data["per_op_ms"]), float(data["fixed_ms"]), multipliers, dict(data.get("fit", {})))

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> CostModel:
        return cls.from_dict(read_json(path, "cost model"), str(path))


def example_input(input_size: int | Sequence[int]) -> torch.Tensor:
    if isinstance(input_size, int):
        return torch.randn(1, 3, input_size, input_size)
    return torch.randn(1, *input_size)


def shipped_cost_model_path(device: str) -> Path:
    return Path(str(resources.files("latency_luts") / f"{device}.costmodel.json"))


def load_cost_model(device: str) -> CostModel:
    """The cost model of ``device``: ``$NAS_LUT_DIR/<device>.costmodel.json`` if one was fitted locally, else the
    shipped one."""
    from nas.latency.paths import local_table_dir

    for path in (local_table_dir() / f"{device}.costmodel.json", shipped_cost_model_path(device)):
        if path.is_file():
            return CostModel.load(path)
    raise UsageError(f"device {device!r} has no cost model; fit one with: nas lut calibrate --device {device} "
                     f"--csv FILE (devices with a shipped model: {', '.join(shipped_cost_models()) or 'none'})")


def shipped_cost_models() -> list[str]:
    folder = resources.files("latency_luts")
    return sorted(p.name[: -len(".costmodel.json")] for p in folder.iterdir() if p.name.endswith(".costmodel.json"))
