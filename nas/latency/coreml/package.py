"""The ``coreml`` package format (``nas.latency.remote``): what ``nas lut build`` writes for a Core ML device."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.latency.coreml.convert import convert, coremltools_version

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from nas.latency.devices import Device


def write_package(module: nn.Module, example: torch.Tensor, device: Device, path: Path) -> None:
    """An mlprogram package at ``path`` (fp16, iOS 16, the device's compute units)."""
    convert(module, example, device.compute_units).save(str(path))


def describe(device: Device) -> dict[str, Any]:
    """What a manifest of Core ML packages records of their conversion."""
    return {"compute_units": device.compute_units, "precision": "float16", "minimum_deployment_target": "iOS16",
            "format": "mlprogram", "converter": "coremltools", "converter_version": coremltools_version()}
