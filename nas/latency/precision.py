"""Numeric precisions a model ships in, as one more part of a latency table's identity.

A precision changes which arch is fastest (int8 makes convolutions and GEMMs ~3x faster on a VNNI CPU but the MB4D
pool mixer 12x slower, ``../shared/PRECISION_AND_RANKING.md``), so a table is measured per precision: the device
``onnxruntime-int8`` is ONNX Runtime's CPU provider running static-QDQ int8 models, a device of its own with its
own table, registered beside its fp32 form (``nas.latency.devices``). ``--precision int8 --device onnxruntime`` is
another way to name it. A new precision is one ``Precision`` and one ``register_precision`` call, plus the devices
that run it.
"""
from __future__ import annotations

from dataclasses import dataclass

from nas import registry
from nas.errors import UsageError


@dataclass(frozen=True)
class Precision:
    name: str
    description: str
    quantized: bool = False      # integer arithmetic: needs a recipe (nas.latency.quantize) and calibration images


PRECISIONS: dict[str, Precision] = {}


def register_precision(precision: Precision) -> Precision:
    return registry.add(PRECISIONS, precision.name, precision, "precision")


register_precision(Precision("fp32", "32-bit float weights and activations"))
register_precision(Precision("fp16", "16-bit float weights and activations"))
register_precision(Precision("int8", "8-bit integer weights (per channel) and activations (per tensor), static QDQ",
                             quantized=True))


def get_precision(name: str) -> Precision:
    if name not in PRECISIONS:
        raise UsageError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}")
    return PRECISIONS[name]

