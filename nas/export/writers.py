"""One writer per export format. Each saves the subnet under the output folder, reloads what it saved as a user
would, and returns (files written, check). A new one is registered by name in
``nas.export.formats`` (``register_format``)."""
from __future__ import annotations

import json
import platform
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nas.export.subnet import Subnet, compare
from nas.fileio import atomic_output, write_json_atomic
from supernet.static import EfficientFormerNet

ONNX_OPSET = 17
COREML_RTOL = 2e-2                # Core ML runs fp16 (macOS only): max |difference| / max |logit|
COREML_INT8_RTOL = 1e-1           # W8/W8A8 on macOS: 8-bit rounding on top of fp16
INT8_CHECK_VAL_IMAGES = 512       # validation images an int8 export is compared with float on (with --data)
OUTPUT_NAME = "logits"            # ONNX and Core ML name their one output so; their input is "x"

Check = dict[str, Any]
Writer = Callable[[Subnet, Path, torch.Tensor, torch.Tensor], tuple[list[str], Check]]
def write_pt(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    with atomic_output(out / "model.pt") as staging:
        torch.save({k: v.detach().cpu() for k, v in sub.model.state_dict().items()}, staging)
    write_json_atomic(out / "model_config.json", sub.model.arch_config)
    model = EfficientFormerNet(**json.loads((out / "model_config.json").read_text()))
    model.load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))
    with torch.no_grad():
        got = model.eval()(x)
    return ["model.pt", "model_config.json"], compare(ref, got)


def write_timm(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    import timm
    from timm.models import save_for_hf

    from supernet.timm_model import MODEL_NAME

    model = timm.create_model(MODEL_NAME, **sub.model.arch_config)
    model.load_state_dict(sub.model.state_dict())
    with atomic_output(out / "timm") as staging:
        save_for_hf(model, str(staging), model_args=sub.model.arch_config, safe_serialization=True)
    reloaded = timm.create_model(f"local-dir:{out / 'timm'}", pretrained=True).eval()
    with torch.no_grad():
        got = reloaded(x)
    return ["timm/config.json", "timm/model.safetensors"], compare(ref, got)


def write_torchscript(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # torch 2.14 marks TorchScript deprecated; it still serves C++/mobile users
        scripted = torch.jit.script(sub.model.eval())
        with atomic_output(out / "model.torchscript.pt") as staging:
            scripted.save(str(staging))
        loaded = torch.jit.load(str(out / "model.torchscript.pt"), map_location="cpu")
    with torch.no_grad():
        got = loaded(x)
    return ["model.torchscript.pt"], compare(ref, got)


def write_onnx(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    import onnx
    import onnxruntime as ort

    with atomic_output(out / "model.onnx") as staging, warnings.catch_warnings():
        warnings.simplefilter("ignore")    # the TorchScript-based exporter warns that it is deprecated
        torch.onnx.export(sub.model.eval(), (x[:1],), str(staging), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["x"], output_names=[OUTPUT_NAME],
                          dynamic_axes={"x": {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    onnx.checker.check_model(str(out / "model.onnx"))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})[0]
    return ["model.onnx"], {**compare(ref, got), "opset": ONNX_OPSET, "onnxruntime": ort.__version__}


def calibration_images(sub: Subnet, x: torch.Tensor) -> tuple[list[torch.Tensor], str]:
    """The images an int8 export's activation ranges come from, and how to say so: the training images BatchNorm
    was recalibrated on (``--data``), else the check input."""
    from nas.data import image_batches
    from nas.latency.quantize import CALIBRATION_IMAGES, CALIBRATION_SEED

    if not sub.data:
        return [x], "the check input (random images: give --data for real activation ranges)"
    batches = image_batches(sub.data, sub.space.input_size, CALIBRATION_IMAGES, seed=CALIBRATION_SEED, split="train")
    return list(batches), f"{CALIBRATION_IMAGES} training images of {sub.data}"


def write_onnx_int8(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    """The int8 QDQ ONNX model, quantised by the recipe of this machine's ``onnxruntime-int8`` table (the op
    types that run faster in int8 here; the others stay float, as the table priced them), its activation ranges
    calibrated on the training images BatchNorm was recalibrated on (``--data``), else on the check input. Checked
    against the float model: top-1 agreement and the largest difference relative to the logits' range."""
    import numpy as np
    import onnx

    from nas.latency.quantize import onnx_bytes, quantize_onnx, session
    from nas.latency.table import table_recipe

    recipe = table_recipe("onnxruntime-int8", sub.space)
    batches, calibrated_on = calibration_images(sub, x)
    feeds = [{"x": np.ascontiguousarray(images.numpy())} for images in batches]
    model = quantize_onnx(onnx_bytes(sub.model, x[:1], dynamic_batch=True, output_name=OUTPUT_NAME), recipe, feeds)
    with atomic_output(out / "model.int8.onnx") as staging:
        staging.write_bytes(model)
    onnx.checker.check_model(str(out / "model.int8.onnx"))
    got = torch.as_tensor(session((out / "model.int8.onnx").read_bytes(), 1).run(None, {"x": x.numpy()})[0])
    if got.shape != ref.shape or not bool(torch.isfinite(got).all()):
        return ["model.int8.onnx"], {"ok": False, "detail": f"output shape {list(got.shape)} (expected "
                                                            f"{list(ref.shape)}) or not finite"}
    spread = float(ref.max() - ref.min()) or 1.0
    check: Check = {
        "ok": True, "int8_op_types": list(recipe.op_types), "calibrated_on": calibrated_on,
        "top1_agreement_pct": 100.0 * float((got.argmax(1) == ref.argmax(1)).float().mean()),
        "max_abs_diff_rel": float((got - ref).abs().max()) / spread,
        "latency": _int8_latency(out / "model.int8.onnx", x[:1], sub),
        "note": "int8 differs from float by design; the agreement is on the check input (random images)"}
    if sub.data:        # and on validation images, where --data has them: what the deployment will see
        from nas.latency.quantize import score_against_float

        check["validation"] = score_against_float(session((out / "model.int8.onnx").read_bytes(), 1), sub.model,
                                                  sub.data, sub.space.input_size, INT8_CHECK_VAL_IMAGES)
    return ["model.int8.onnx"], check


def _int8_latency(path: Path, one: torch.Tensor, sub: Subnet) -> dict[str, Any]:
    """The written int8 model timed here (ONNX Runtime, the ``onnxruntime-int8`` device's threads and timing
    policy), beside its table's prediction and 90% interval for the arch: does the model ship at the latency the
    search priced?"""
    from nas.latency.backends import OnnxRuntimeBackend
    from nas.latency.devices import get_device
    from nas.latency.predict import load_predictor

    device = get_device("onnxruntime-int8")
    backend = device.make_backend()
    assert isinstance(backend, OnnxRuntimeBackend)
    measured = backend.time_model(path.read_bytes(), one).median_ms
    predicted = load_predictor(device.name, sub.space).interval(sub.arch)
    low, high = predicted["latency_low_ms"], predicted["latency_high_ms"]
    return {"measured_ms": measured, "predicted_ms": predicted["latency_ms"], "interval_ms": [low, high],
            "coverage": predicted["coverage"],
            "inside_interval": None if low is None else bool(low <= measured <= high)}


def write_coreml(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    from nas.latency.coreml.convert import convert

    return _checked_mlpackage(convert(sub.model, x[:1], output_name=OUTPUT_NAME), out, "model.mlpackage", x, ref)


def write_coreml_int8(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    """W8A8 (``nas.latency.coreml.quantize``): int8 weights and activations, activation ranges from the training
    images of ``--data`` (else the check input), an iOS 17 mlprogram: what ``iphone12-int8``'s packages are."""
    from nas.latency.coreml.quantize import convert_w8a8, op_counts

    batches, calibrated_on = calibration_images(sub, x)
    mlmodel = convert_w8a8(sub.model, x[:1], batches, output_name=OUTPUT_NAME)
    ops = op_counts(mlmodel)
    files, check = _checked_mlpackage(mlmodel, out, "model.int8.mlpackage", x, ref, min_spec=8,
                                      rtol=COREML_INT8_RTOL)
    check.update(calibrated_on=calibrated_on, quantize_ops=ops.get("quantize", 0))
    if check["ok"] and not ops.get("quantize"):
        check.update(ok=False, detail="no activation quantize op in the converted program: it is not W8A8")
    return files, check


def write_coreml_w8(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    """W8: the fp16 package with its weights in int8 (``weights_w8``): smaller, the same fp16 compute."""
    from nas.latency.coreml.convert import convert
    from nas.latency.coreml.quantize import op_counts, weights_w8

    mlmodel = weights_w8(convert(sub.model, x[:1], output_name=OUTPUT_NAME))
    ops = op_counts(mlmodel)
    quantised = sum(n for op, n in ops.items() if op.startswith("constexpr_"))
    files, check = _checked_mlpackage(mlmodel, out, "model.w8.mlpackage", x, ref, rtol=COREML_INT8_RTOL)
    check["int8_weight_tensors"] = quantised
    if check["ok"] and not quantised:
        check.update(ok=False, detail="no int8 weight in the converted program")
    return files, check


def _checked_mlpackage(mlmodel: Any, out: Path, name: str, x: torch.Tensor, ref: torch.Tensor, min_spec: int = 7,
                       rtol: float = COREML_RTOL) -> tuple[list[str], Check]:
    """Save ``mlmodel`` as ``name``, reload it from disk and check its interface (an mlprogram of at least spec
    ``min_spec``: 7 is iOS 16, 8 iOS 17; input ``x``, output ``logits``) and, on macOS, its predictions."""
    from nas.latency.coreml.convert import INPUT_NAME, quiet_coremltools

    one = x[:1]
    with atomic_output(out / name) as staging:
        mlmodel.save(str(staging))
    with quiet_coremltools() as ct:      # what was written, as a user opens it
        reloaded = ct.models.MLModel(str(out / name), skip_model_load=platform.system() != "Darwin")
    spec = reloaded.get_spec()
    inputs = [(i.name, list(i.type.multiArrayType.shape)) for i in spec.description.input]
    outputs = [o.name for o in spec.description.output]
    check: dict[str, Any] = {"inputs": inputs, "outputs": outputs, "spec_version": spec.specificationVersion}
    problems = []
    if spec.WhichOneof("Type") != "mlProgram" or spec.specificationVersion < min_spec:
        problems.append(f"not an mlprogram of spec version >= {min_spec}")
    if inputs != [(INPUT_NAME, list(one.shape))]:
        problems.append(f"inputs {inputs}, expected {INPUT_NAME}{list(one.shape)}")
    if outputs != [OUTPUT_NAME]:
        problems.append(f"outputs {outputs}, expected [{OUTPUT_NAME!r}]")
    if problems:
        return [name], {**check, "ok": False, "detail": "; ".join(problems)}
    if platform.system() != "Darwin":
        return [name], {**check, "ok": True, "predictions": "not run: Core ML predicts on macOS only; the "
                                                            "conversion and its spec are checked"}
    got = reloaded.predict({INPUT_NAME: one.numpy()})[OUTPUT_NAME]
    scale = float(ref[:1].abs().max()) or 1.0
    compared = compare(ref[:1] / scale, torch.as_tensor(got, dtype=torch.float32) / scale, rtol)
    return [name], {**check, **compared, "predictions": "compared relative to max |logit|"}


