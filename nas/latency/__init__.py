"""Latency: ops of an arch, lookup tables per device, prediction and validation.

One concept a file: ``ops`` (what is measured), ``table`` (the file format, headers, the end-to-end correction),
``paths`` (where tables live), ``devices`` (the registry and how each device gets its table), ``timing`` and
``backends`` (measuring), ``build`` (a table measured here), ``predict`` (tables to milliseconds), ``validate``
(held-out error), ``trace`` (ops as a phone runs them), ``costmodel/`` (estimated tables), ``coreml/`` (tables
measured on Apple hardware). Names below are imported on first use, so torch-free submodules stay torch-free.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nas.latency.devices import DEVICES, Device, get_device, register_device
    from nas.latency.ops import Op, arch_ops, space_ops
    from nas.latency.paths import default_table_path
    from nas.latency.predict import LutPredictor, estimate_notice, load_predictor, predict_model
    from nas.latency.table import LatencyTable

_LAZY = {"DEVICES": "devices", "Device": "devices", "get_device": "devices", "register_device": "devices",
         "Op": "ops", "arch_ops": "ops", "space_ops": "ops", "default_table_path": "paths",
         "LutPredictor": "predict", "estimate_notice": "predict", "load_predictor": "predict",
         "predict_model": "predict", "LatencyTable": "table"}
__all__ = ["DEVICES", "Device", "LatencyTable", "LutPredictor", "Op", "arch_ops", "default_table_path",
           "estimate_notice", "get_device", "load_predictor", "predict_model", "register_device", "space_ops"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"nas.latency.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nas.latency' has no attribute {name!r}")
