"""Export a subnet where it ships: PyTorch state dict, timm, TorchScript, ONNX and Core ML, each checked.

``build_subnet`` builds the subnet once (inherited from a supernet checkpoint when one is given, with BatchNorm
recalibrated on images when given), then each format's writer saves it and reloads what it saved to compare it
with the PyTorch model on the same random input. ``DIR`` ends up with::

    arch.json                the arch (``nas predict --arch DIR/arch.json``)
    model.pt                 state dict (plain tensors) + model_config.json (EfficientFormerNet keyword arguments)
    timm/                    timm's folder format: timm.create_model("local-dir:DIR/timm", pretrained=True)
    model.torchscript.pt     torch.jit.script, any batch size
    model.onnx               TorchScript-based exporter (no onnxscript needed), dynamic batch, opset recorded
    model.mlpackage          Core ML mlprogram, fp16, iOS 16, input "x" [1, 3, H, W]
    export_check.json        every format's check: reloaded output vs PyTorch's, tolerance, pass/fail
    README.md                model card

Every file is written through a staging path and renamed into place, so a killed export leaves whole files.

Modules: ``formats`` (names, torch-free), ``subnet`` (what is exported, the output check), ``writers`` (one per
format), ``card`` (the model card), ``exporter`` (``export_subnet``). Names below are imported on first use, so
``nas.export.formats`` stays importable without torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # what mypy sees; at run time the names come from __getattr__ below
    from nas.export.card import model_card, run_notes
    from nas.export.exporter import export_subnet
    from nas.export.formats import FORMATS, ExportFormat, parse_formats, register_format, require_packages
    from nas.export.subnet import TOLERANCE, Subnet, build_subnet, check_input, compare
    from nas.export.writers import OUTPUT_NAME

_LAZY = {"FORMATS": "formats", "ExportFormat": "formats", "register_format": "formats", "parse_formats": "formats",
         "require_packages": "formats",
         "Subnet": "subnet", "build_subnet": "subnet", "check_input": "subnet", "compare": "subnet",
         "TOLERANCE": "subnet", "OUTPUT_NAME": "writers",
         "run_notes": "card", "model_card": "card", "export_subnet": "exporter"}
__all__ = ["FORMATS", "OUTPUT_NAME", "ExportFormat", "Subnet", "TOLERANCE", "build_subnet", "check_input", "compare",
           "export_subnet", "model_card", "parse_formats", "register_format", "require_packages", "run_notes"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"nas.export.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nas.export' has no attribute {name!r}")
