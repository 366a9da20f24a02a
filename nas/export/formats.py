"""Export format names and what each needs installed: torch-free, so the command line can list and check them
without importing a model. A new format is one writer in ``nas.export.writers`` plus one entry here."""
from __future__ import annotations

from nas import DISTRIBUTION
from nas.errors import UsageError

# name -> (modules it needs beyond the core install, the extra that installs them); the order is the export order
FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "pt": ((), ""),
    "timm": ((), ""),
    "torchscript": ((), ""),
    "onnx": (("onnx", "onnxruntime"), f"{DISTRIBUTION}[onnx]"),
    "coreml": (("coremltools",), f"{DISTRIBUTION}[coreml]"),     # last: the slowest
}


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise UsageError(f"--format {text!r}: unknown format {', '.join(unknown) or '(none)'}; "
                         f"accepted: a comma-separated list of {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in wanted]     # a fixed order: pt first, the slow Core ML last


def missing_modules(fmt: str) -> list[str]:
    from importlib.util import find_spec

    return [m for m in FORMATS[fmt][0] if find_spec(m) is None]


def default_formats() -> tuple[list[str], str]:
    """Every format whose packages are installed, and a note naming the extras that would add the others ("" when
    none is missing): what ``nas export`` writes without ``--format``."""
    available = [fmt for fmt in FORMATS if not missing_modules(fmt)]
    skipped = [fmt for fmt in FORMATS if fmt not in available]
    if not skipped:
        return available, ""
    extras = " ".join(f"'{FORMATS[fmt][1]}'" for fmt in skipped)
    return available, f"not writing {', '.join(skipped)} (not installed); pip install {extras} adds them"


def require_packages(formats: list[str]) -> None:
    """Refuse up front, in one line, a format whose packages are missing (before minutes of other exports)."""
    for fmt in formats:
        missing = missing_modules(fmt)
        if missing:
            raise UsageError(f"--format {fmt} needs {', '.join(missing)}: pip install '{FORMATS[fmt][1]}'")
