"""The ``coreml`` package format (``nas.latency.remote``): what ``nas lut build`` writes for a Core ML device."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.latency.coreml.convert import convert, coremltools_version

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from nas.latency.devices import Device


CALIBRATION_BATCHES = 4     # random inputs an op's W8A8 package observes: ranges do not change a kernel's speed


def write_package(module: nn.Module, example: torch.Tensor, device: Device, path: Path) -> None:
    """An mlprogram package at ``path``, the device's compute units: fp16 on iOS 16, or W8A8 on iOS 17 for a
    device at int8 (``nas.latency.coreml.quantize``; activation ranges observed on random inputs of the op's
    shape, as the ONNX Runtime int8 tables do)."""
    if device.precision == "int8":
        import torch

        from nas.latency.coreml.quantize import convert_w8a8

        generator = torch.Generator().manual_seed(0)
        calibration = [torch.randn(example.shape, generator=generator) for _ in range(CALIBRATION_BATCHES)]
        convert_w8a8(module, example, calibration, device.compute_units).save(str(path))
        return
    convert(module, example, device.compute_units).save(str(path))


def describe(device: Device) -> dict[str, Any]:
    """What a manifest of Core ML packages records of their conversion."""
    from nas.latency.coreml.quantize import W8A8_TARGET

    int8 = device.precision == "int8"
    return {"compute_units": device.compute_units, "precision": "int8 (W8A8)" if int8 else "float16",
            "minimum_deployment_target": W8A8_TARGET if int8 else "iOS16",
            **({"quantization": "coremltools.optimize.torch LinearQuantizer: int8 symmetric per-channel weights, "
                                "uint8 activations"} if int8 else {}),
            "format": "mlprogram", "converter": "coremltools", "converter_version": coremltools_version()}
