"""Export format names and what each needs installed: torch-free, so the command line can list and check them
without importing a model. A new format is one writer in ``nas.export.writers`` plus one entry here."""
from __future__ import annotations

from nas.errors import UsageError

# name -> (modules it needs beyond the core install, the extra that installs them); the order is the export order
FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "pt": ((), ""),
    "timm": ((), ""),
    "torchscript": ((), ""),
    "onnx": (("onnx", "onnxruntime"), "nas[onnx]"),
    "coreml": (("coremltools",), "nas[coreml]"),     # last: the slowest
}


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise UsageError(f"--format {text!r}: unknown format {', '.join(unknown) or '(none)'}; "
                         f"accepted: a comma-separated list of {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in wanted]     # a fixed order: pt first, the slow Core ML last


def require_packages(formats: list[str]) -> None:
    """Refuse up front, in one line, a format whose packages are missing (before minutes of other exports)."""
    from importlib.util import find_spec

    for fmt in formats:
        modules, extra = FORMATS[fmt]
        missing = [m for m in modules if find_spec(m) is None]
        if missing:
            raise UsageError(f"--format {fmt} needs {', '.join(missing)}: pip install '{extra}'")
