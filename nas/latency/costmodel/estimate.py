"""Estimated tables: every op of a space priced by a device's cost model, for devices not measured yet.

The table has the same entries as a measured one, so search and prediction do not care which kind they read; its
header says ``kind: estimated``, which cost model made it, from which published data and protocol, and the model's
cross-validated error. The cost model's per-inference ``fixed_ms`` becomes the table's correction offset, so the
table predicts exactly what the cost model predicts for a whole network (a test checks L1/L3/L7).
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from nas.latency.costmodel.model import CostModel
from nas.latency.devices import Device
from nas.latency.ops import space_ops
from nas.latency.table import LatencyTable, new_header
from nas.latency.trace import trace_ops
from nas.space import SearchSpace, space_flag


def measure_hint(device: Device, space: SearchSpace) -> str:
    return (f"nas lut build --device {device.name}{space_flag(space.name)} --out DIR (converts the ops to Core ML), "
            f"nas lut measure DIR/manifest.json --out timings.json (on a Mac), "
            f"nas lut ingest DIR/manifest.json timings.json")


def extrapolated_mixers(space: SearchSpace, model: CostModel) -> list[str]:
    """Mixers of ``space`` whose paper has no network in the cost model's published calibration set: their ops are
    priced from the fitted coefficients of other networks' op categories (extrapolated), not calibrated."""
    from supernet.mixers import get_mixer

    calibrated = model.fit.get("models") or []
    return [m for m in space.mixers
            if not any(name.startswith(get_mixer(m).timm_family or m) for name in calibrated)]


def estimate_table(device: Device, space: SearchSpace, model: CostModel, out: str | Path,
                   progress: bool = True) -> LatencyTable:
    header = new_header(
        device, space, kind="estimated", backend=device.backend, backend_version="n/a (estimated)",
        produced_by=f"nas lut estimate --device {device.name}{space_flag(space.name)}",
        estimate={
            "method": "roofline cost model over traced ops (nas.latency.costmodel), fitted to published latencies",
            "source": model.fit.get("source"), "protocol": model.fit.get("protocol"),
            "calibration_models": model.fit.get("n_models"), "cross_validation": model.fit.get("cv"),
            "macs_linear_cross_validation": model.fit.get("macs_linear_cv"), "cost_model": model.to_dict(),
            "extrapolated_mixers": extrapolated_mixers(space, model),
            "lofo_relative_residuals": model.fit.get("lofo_relative_residuals"),
        },
        measure_with=measure_hint(device, space),
        correction={"scale": 1.0, "offset_ms": model.fixed_ms,
                    "fitted_on": "the cost model's per-inference fixed cost (not end-to-end measurements)"})
    header.pop("cpu")   # an estimate says nothing of this machine's processor
    table = LatencyTable(header)
    for op in tqdm(space_ops(space), desc=f"estimating {device.name}", unit="op", disable=not progress):
        module, x = op.build(device.batch)
        ms = model.op_ms(trace_ops(module, x))
        table.entries[op.key] = {"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "n": 0}
    table.save(out)
    return table
