"""Latency: ops of an arch, lookup tables measured per device, prediction and validation."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from nas.errors import UsageError
from nas.latency.devices import DEVICES, Device, default_table_path, get_device, register_device
from nas.latency.ops import Op, arch_ops, space_ops
from nas.latency.predict import LutPredictor
from nas.latency.table import LatencyTable

__all__ = ["DEVICES", "Device", "LatencyTable", "LutPredictor", "Op", "arch_ops", "default_table_path",
           "get_device", "predict_model", "register_device", "space_ops", "load_predictor", "estimate_notice"]


def load_predictor(device: str, space: str = "efficientformer", lut: str | Path | None = None) -> LutPredictor:
    """The predictor of ``device`` from ``lut`` or from the device's default table."""
    get_device(device)
    path = Path(lut) if lut else default_table_path(device, space)
    if not path.exists() and not lut:
        flag = "" if space == "efficientformer" else f" --space {space}"
        raise UsageError(f"no latency table for device {device!r} and space {space!r} at {path}; "
                         f"build one with: nas lut build --device {device}{flag}")
    return LutPredictor.from_file(path)


def estimate_notice(predictor: LutPredictor) -> str | None:
    """One line for a user reading latencies from an estimated table: what it is and how to measure a real one."""
    header = predictor.table.header
    if header["kind"] != "estimated":
        return None
    est = header.get("estimate", {})
    lofo = ((est.get("cross_validation") or {}).get("lofo") or {}).get("mape")
    error = f", leave-one-family-out MAPE {lofo:.1f}%" if lofo is not None else ""
    return (f"note: {header['device']} latencies are estimated (cost model fitted to published {est.get('protocol')} "
            f"figures{error}), not measured; measure a table with: "
            f"{header.get('measure_with', 'nas lut build --device ' + header['device'])}")


def predict_model(module: nn.Module, input_size: int = 224, device: str = "cpu", lut: str | Path | None = None) -> float:
    """Predicted latency (ms) of a model on ``device``.

    A model of a search space (what ``Supernet.extract`` returns) is looked up in the device's table. Any other
    module is traced and priced by the device's cost model (``nas.latency.costmodel``); devices without one (local
    devices are measured, not modelled) refuse it.
    """
    from nas.space import load_space

    config = getattr(module, "arch_config", None)
    if not config:
        from nas.latency.costmodel import load_cost_model

        get_device(device)
        return load_cost_model(device).predict_module(module, input_size)
    space = load_space(config["space"])
    if input_size != space.input_size:
        raise UsageError(f"input_size {input_size} differs from the space's {space.input_size}; tables are per input size")
    fields = {k: config[k] for k in ("widths", "depths", "n3d", "mlp_ratios", "heads", "key_dims", "mixers")}
    arch = space.arch_from_dict({"space": space.name, **fields})
    return load_predictor(device, space.name, lut).predict(arch)
