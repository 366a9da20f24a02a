"""int8 for ONNX Runtime: static QDQ, per-channel S8 weights, U8 activations, and which op types get quantised.

ONNX Runtime's quantiser puts QuantizeLinear/DequantizeLinear pairs around the nodes of the op types it is told to,
and its graph optimiser fuses them into integer kernels (QLinearConv, QGemm, ...). Not every op type gains: on a
VNNI CPU, int8 convolutions and GEMMs run ~3x faster, but the MB4D pool mixer runs 12x slower as
QLinearAveragePool and the layer-scale multiply 8x slower as QLinearMul (``../shared/PRECISION_AND_RANKING.md``).
So the recipe's op types are **chosen by measurement on the machine that builds the table** (``choose_recipe``:
each candidate type quantised alone against the float model, then the winners together against the same set less
each one, interleaved in time); a type whose int8 form is not faster stays float, with no QDQ around it. The
recipe is written into the table's header, and everything that makes an int8 model (the table's op entries, its
end-to-end calibration archs, the accuracy objective at int8, ``nas export --precision int8``) calls
``quantize_onnx`` with that recipe: one decision, one source.

Activation ranges do not change a kernel's speed, so a table's ops are calibrated on their random inputs; an
exported model is calibrated on real images.
"""
from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch.nn as nn

# op types ONNX Runtime's QDQ quantiser can put in int8 that the nets of our spaces contain
CANDIDATE_OP_TYPES = ("Conv", "MatMul", "Gemm", "AveragePool", "Mul", "Add", "Softmax")
RECIPE_FORMAT = "onnxruntime static QDQ"
CALIBRATION_IMAGES = 64       # training images a model's activation ranges are calibrated on (accuracy, export)
CALIBRATION_SEED = 2          # another subset than BatchNorm's recalibration (seed 1)


@dataclass(frozen=True)
class Int8Recipe:
    op_types: tuple[str, ...]                    # quantised; every other op type stays float
    per_channel: bool = True                     # weights: S8, one scale per output channel
    activations: str = "U8"                      # per tensor, ranges from the calibration inputs
    weights: str = "S8"
    calibration: str = "minmax"                  # how the ranges are read: minmax, percentile (99.999) or entropy

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECIPE_FORMAT, "op_types": list(self.op_types), "per_channel": self.per_channel,
                "activations": self.activations, "weights": self.weights, "calibration": self.calibration}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Int8Recipe:
        return cls(tuple(data["op_types"]), bool(data.get("per_channel", True)), data.get("activations", "U8"),
                   data.get("weights", "S8"), data.get("calibration", "minmax"))


def quantize_onnx(model_bytes: bytes, recipe: Int8Recipe, calibration: Sequence[dict[str, np.ndarray]]) -> bytes:
    """The float ONNX model ``model_bytes`` in int8 by ``recipe``, its activation ranges from ``calibration``
    (feeds). A recipe with no op types returns the float model: nothing to quantise."""
    if not recipe.op_types:
        return model_bytes
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    ort.set_default_logger_severity(3)    # its calibration session warns once per initializer it folds away

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    # through files: given a ModelProto, the quantiser writes its weights as external data in a folder of its own
    # and fails to read them back (onnxruntime 1.32)
    with tempfile.TemporaryDirectory(prefix="nas-int8-") as folder:
        src, dst = os.path.join(folder, "float.onnx"), os.path.join(folder, "int8.onnx")
        with open(src, "wb") as out:
            out.write(model_bytes)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)     # its advice to pre-process, once per call on the root logger
        try:
            quantize_static(src, dst, Feeds(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(recipe.op_types), per_channel=recipe.per_channel,
                            activation_type=QuantType.QUInt8 if recipe.activations == "U8" else QuantType.QInt8,
                            weight_type=QuantType.QInt8 if recipe.weights == "S8" else QuantType.QUInt8,
                            calibrate_method={"minmax": CalibrationMethod.MinMax,
                                              "percentile": CalibrationMethod.Percentile,
                                              "entropy": CalibrationMethod.Entropy}[recipe.calibration])
        finally:
            root.setLevel(level)
        with open(dst, "rb") as f:
            return f.read()


def onnx_bytes(module: Any, x: Any, dynamic_batch: bool = False, output_name: str = "y") -> bytes:
    """``module`` exported as ONNX Runtime's backend and the exporter do: TorchScript-based exporter, opset 17,
    one input ``x`` and one output (``y``; ``logits`` in an export), its batch fixed to ``x``'s or dynamic."""
    import io
    import warnings

    import torch

    buf = io.BytesIO()
    axes = {"x": {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")    # the TorchScript-based exporter warns that it is deprecated
        torch.onnx.export(module.eval(), (x,), buf, dynamo=False, opset_version=17,  # type: ignore[arg-type]
                          input_names=["x"], output_names=[output_name], dynamic_axes=axes)
    return buf.getvalue()


def session(model_bytes: bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3      # errors only: not a warning per initializer its optimiser folds away
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def op_types_in(model_bytes: bytes) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load_from_string(model_bytes).graph.node}


def _interleaved_medians(sessions: dict[str, Any], feed: dict[str, np.ndarray], rounds: int,
                         runs: int) -> dict[str, list[float]]:
    """Per form, the median of each round's ``runs`` calls; the forms take turns within every round, so a drift
    of the machine hits every form alike."""
    per_round: dict[str, list[float]] = {name: [] for name in sessions}
    for s in sessions.values():      # warm-up
        for _ in range(3):
            s.run(None, feed)
    for _ in range(rounds):
        for name, s in sessions.items():
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                s.run(None, feed)
                times.append(1e3 * (time.perf_counter() - t))
            per_round[name].append(statistics.median(times))
    return per_round


def _faster_every_round(a: list[float], b: list[float]) -> bool:
    """``a`` below ``b`` in every round: a sign test, 1 in 2**rounds by chance."""
    return all(x < y for x, y in zip(a, b, strict=True))


def choose_recipe(module: Any, x: Any, threads: int = 1, rounds: int = 5, runs: int = 10,
                  progress: Callable[[str], None] | None = None) -> tuple[Int8Recipe, dict[str, Any]]:
    """The recipe for this machine, by measurement on ``module``, in two steps:

    1. each candidate op type quantised alone against the float model: a type whose int8 form is not faster in
       every one of ``rounds`` interleaved passes stays float (the head's single Gemm gains nothing measurable;
       the pool mixer's QLinearAveragePool is slower);
    2. the kept types together against the same set less each one: a type that slows the combination down (its
       QDQ pairs cost more once its neighbours are int8) is dropped, so the recipe as a whole is never slower than
       float by what was measured.

    Returns the recipe and the evidence (medians in ms), which the table header records."""
    float_model = onnx_bytes(module, x)
    feed = {"x": np.ascontiguousarray(x.numpy())}
    present = [t for t in CANDIDATE_OP_TYPES if t in op_types_in(float_model)]

    def quantised(types: tuple[str, ...]) -> Any:
        if progress:
            progress(f"quantising {', '.join(types)}")
        return session(quantize_onnx(float_model, Int8Recipe(types), [feed]), threads)

    alone = _interleaved_medians({"float": session(float_model, threads),
                                  **{t: quantised((t,)) for t in present}}, feed, rounds, runs)
    kept = tuple(t for t in present if _faster_every_round(alone[t], alone["float"]))
    dropped: list[str] = []
    combined: dict[str, list[float]] = {}
    if len(kept) > 1:
        forms = {"all": quantised(kept), **{f"without {t}": quantised(tuple(k for k in kept if k != t))
                                             for t in kept}}
        combined = _interleaved_medians(forms, feed, rounds, runs)
        dropped = [t for t in kept if _faster_every_round(combined[f"without {t}"], combined["all"])]
        kept = tuple(t for t in kept if t not in dropped)
    evidence = {"probe_float_ms": round(statistics.median(alone["float"]), 4), "rounds": rounds,
                "alone_ms": {t: round(statistics.median(alone[t]), 4) for t in present},
                "combined_ms": {k: round(statistics.median(v), 4) for k, v in combined.items()},
                "dropped_in_combination": dropped,
                "kept_float": [t for t in present if t not in kept]}
    return Int8Recipe(kept), evidence


def recipe_for_space(space: Any, batch: int = 1, threads: int = 1, rounds: int = 5,
                     progress: bool = True) -> dict[str, Any]:
    """``choose_recipe`` on the space's largest arch (it holds every kind of block), as a table header records it:
    the recipe's fields and ``chosen_by``, the evidence."""
    import sys

    import torch

    from nas.latency.weights import pooled_init
    from supernet.static import EfficientFormerNet

    if progress:
        print("nas: choosing the int8 recipe on this machine (each op type quantised alone against float, then "
              "together, on the space's largest arch)", file=sys.stderr)
    with pooled_init():
        model = EfficientFormerNet.from_arch(space.largest(), space)
    x = torch.randn(batch, 3, space.input_size, space.input_size)
    recipe, evidence = choose_recipe(model, x, threads, rounds=rounds)
    if progress:
        print(f"nas: int8: {', '.join(recipe.op_types) or 'no op type'}; kept float (not faster in int8 here): "
              f"{', '.join(evidence['kept_float']) or 'none'}", file=sys.stderr)
    return {**recipe.to_dict(), "chosen_by": evidence}


def score_against_float(int8: Any, model: nn.Module, data: str | Path, input_size: int, val_images: int,
                        split: str = "val") -> dict[str, Any]:
    """An int8 ONNX Runtime session and its float ``model`` on the same ``val_images`` of ``split``: top-1 of
    each and how often they agree (what ``int8_top1`` returns; ``nas export --precision int8`` checks with it)."""
    import torch

    from nas.data import image_batches
    from nas.errors import UsageError

    model.eval()
    correct = correct_float = agree = total = 0
    for images, labels in image_batches(data, input_size, val_images, with_labels=True, split=split):
        with torch.no_grad():
            want = model(images).argmax(dim=1)
        got = torch.as_tensor(int8.run(None, {"x": np.ascontiguousarray(images.numpy())})[0]).argmax(dim=1)
        correct += int((got == labels).sum())
        correct_float += int((want == labels).sum())
        agree += int((got == want).sum())
        total += labels.numel()
    if total == 0:
        raise UsageError("the validation split has no images")
    return {"top1": 100.0 * correct / total, "float_top1": 100.0 * correct_float / total,
            "agreement": 100.0 * agree / total, "images": total}
