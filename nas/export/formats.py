"""Export formats, each one registered record: its name, its writer (imported when the format is written) and
what it needs installed. Torch-free, so the command line can list and check them without importing a model. A new
format is one writer function plus one ``register_format`` line here."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas import DISTRIBUTION, load_reference, not_installed, registry
from nas.errors import UsageError


@dataclass(frozen=True)
class ExportFormat:
    name: str
    # "module:function" (subnet, out folder, input, reference output) -> (files written, check): saves the subnet
    # under the folder, reloads it as a user would and compares its output with the reference
    writer: str
    needs: tuple[str, ...] = ()     # modules beyond the core install
    extra: str = ""                 # the pip requirement that installs them
    precision: str = "fp32"         # what the written model computes in (nas.latency.precision)
    family: str = ""                # the format it is a precision of (``onnx`` for ``onnx-int8``)
    table_of: str = ""              # a device whose table the writer follows (the int8 recipe), checked up front
    by_default: bool = True         # written by `nas export` without --format (when its packages are installed)
    # Python that reloads the written files from the export folder, for the model card: ``{install}`` stands for
    # how to install this project, ``{input}`` for a zero image of the export's input size (a numpy array)
    loading: tuple[str, ...] = ()

    @property
    def base(self) -> str:
        return self.family or self.name

    def load_writer(self) -> Callable[..., tuple[list[str], dict[str, Any]]]:
        writer: Callable[..., tuple[list[str], dict[str, Any]]] = load_reference(self.writer)
        return writer


FORMATS: dict[str, ExportFormat] = {}      # in registration order, which is the export order


def register_format(fmt: ExportFormat) -> ExportFormat:
    return registry.add(FORMATS, fmt.name, fmt, "export format")


_MLMODEL = ("import coremltools as ct, numpy as np", "mlmodel = ct.models.MLModel('{file}')",
            "out = mlmodel.predict({'x': {input}})")
_ORT = ("import onnxruntime as ort, numpy as np", "session = ort.InferenceSession('{file}')",
        "logits = session.run(None, {'x': {input}})[0]")


def _fill(lines: tuple[str, ...], file: str) -> tuple[str, ...]:
    return tuple(line.replace("{file}", file) for line in lines)


register_format(ExportFormat("pt", "nas.export.writers:write_pt", loading=(
    "# PyTorch ({install})", "import json, torch", "from supernet import EfficientFormerNet",
    "model = EfficientFormerNet(**json.load(open('model_config.json')))",
    "model.load_state_dict(torch.load('model.pt', weights_only=True)); model.eval()")))
register_format(ExportFormat("timm", "nas.export.writers:write_timm", loading=(
    "# timm ({install})", "import timm, supernet.timm_model  # registers nas_efficientformer",
    "model = timm.create_model('local-dir:timm', pretrained=True).eval()",
    "# fine-tune on N classes: new class and distillation heads, every other tensor kept",
    "model = timm.create_model('local-dir:timm', pretrained=True, num_classes=N)",
    "# a backbone: one feature map per stage (stride 4, 8, 16, 32)",
    "features = timm.create_model('local-dir:timm', pretrained=True, features_only=True)",
    "config = timm.data.resolve_data_config({}, model=model)   # the eval transform's settings")))
register_format(ExportFormat("torchscript", "nas.export.writers:write_torchscript", loading=(
    "# TorchScript (torch only)", "import torch", "model = torch.jit.load('model.torchscript.pt')")))
register_format(ExportFormat("onnx", "nas.export.writers:write_onnx", ("onnx", "onnxruntime"),
                             f"{DISTRIBUTION}[onnx]", loading=("# ONNX Runtime", *_fill(_ORT, "model.onnx"))))
register_format(ExportFormat("onnx-int8", "nas.export.writers:write_onnx_int8", ("onnx", "onnxruntime"),
                             f"{DISTRIBUTION}[onnx]", precision="int8", family="onnx", table_of="onnxruntime-int8",
                             loading=("# ONNX Runtime, int8 (static QDQ: the op types in int8 are the ones "
                                      "export_check.json names)", *_fill(_ORT, "model.int8.onnx"))))
register_format(ExportFormat("coreml", "nas.export.writers:write_coreml", ("coremltools",),
                             f"{DISTRIBUTION}[coreml]", precision="fp16",      # last: the slowest
                             loading=("# Core ML (predictions on macOS)", *_fill(_MLMODEL, "model.mlpackage"))))
register_format(ExportFormat("coreml-int8", "nas.export.writers:write_coreml_int8", ("coremltools",),
                             f"{DISTRIBUTION}[coreml]", precision="int8", family="coreml",     # W8A8
                             loading=("# Core ML W8A8 (int8 weights and activations, iOS 17; predictions on macOS)",
                                      *_fill(_MLMODEL, "model.int8.mlpackage"))))
# W8: int8 weights, fp16 compute (a smaller file, the fp16 table's latency): asked for by name only
register_format(ExportFormat("coreml-w8", "nas.export.writers:write_coreml_w8", ("coremltools",),
                             f"{DISTRIBUTION}[coreml]", precision="fp16", by_default=False,
                             loading=("# Core ML W8 (int8 weights, fp16 compute; predictions on macOS)",
                                      *_fill(_MLMODEL, "model.w8.mlpackage"))))


def parse_formats(text: str, precision: str | None = None) -> list[str]:
    """The formats ``text`` names, each at ``precision`` when one is given (``--format onnx --precision int8`` is
    ``onnx-int8``); a format without that precision is refused, naming the ones that have it."""
    wanted = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise UsageError(f"--format {text!r}: unknown format {', '.join(unknown) or '(none)'}; "
                         f"accepted: a comma-separated list of {', '.join(FORMATS)}")
    if precision is not None:
        wanted = [format_at_precision(f, precision) for f in wanted]
    return [f for f in FORMATS if f in wanted]     # a fixed order: pt first, the slow Core ML last


def format_at_precision(name: str, precision: str) -> str:
    fmt = FORMATS[name]
    for other in FORMATS.values():
        if other.base == fmt.base and other.precision == precision:
            return other.name
    have = ", ".join(f"{f.name} ({f.precision})" for f in FORMATS.values() if f.precision == precision)
    raise UsageError(f"--format {name} has no {precision} form; formats at {precision}: {have or 'none'}")


def formats_at(precision: str) -> list[str]:
    """Every format that writes ``precision`` (``nas export --precision int8`` without ``--format``)."""
    return [f.name for f in FORMATS.values() if f.precision == precision and f.by_default]


def missing_modules(fmt: str) -> list[str]:
    return not_installed(FORMATS[fmt].needs)


def default_formats(precision: str | None = None) -> tuple[list[str], str]:
    """Every format whose packages are installed (of ``precision`` when given; else every format of its model's
    own precision, no quantised variant), and a note naming the extras that would add the others ("" when none is
    missing): what ``nas export`` writes without ``--format``."""
    candidates = (formats_at(precision) if precision
                  else [f.name for f in FORMATS.values() if not f.family and f.by_default])
    available = [fmt for fmt in candidates if not missing_modules(fmt)]
    skipped = [fmt for fmt in candidates if fmt not in available]
    if not skipped:
        return available, ""
    extras = " ".join(f"'{FORMATS[fmt].extra}'" for fmt in skipped)
    return available, f"not writing {', '.join(skipped)} (not installed); pip install {extras} adds them"


def require_packages(formats: list[str]) -> None:
    """Refuse up front, in one line, a format whose packages are missing (before minutes of other exports)."""
    for fmt in formats:
        missing = missing_modules(fmt)
        if missing:
            raise UsageError(f"--format {fmt} needs {', '.join(missing)}: pip install '{FORMATS[fmt].extra}'")


def check_tables(formats: list[str], space: Any) -> None:
    """Refuse, up front, a format that follows a device's table (the int8 recipe) when that table is missing."""
    for fmt in formats:
        device = FORMATS[fmt].table_of
        if device:
            from nas.latency.table import table_recipe

            table_recipe(device, space)
