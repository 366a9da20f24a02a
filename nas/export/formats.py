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

    def load_writer(self) -> Callable[..., tuple[list[str], dict[str, Any]]]:
        writer: Callable[..., tuple[list[str], dict[str, Any]]] = load_reference(self.writer)
        return writer


FORMATS: dict[str, ExportFormat] = {}      # in registration order, which is the export order


def register_format(fmt: ExportFormat) -> ExportFormat:
    return registry.add(FORMATS, fmt.name, fmt, "export format")


register_format(ExportFormat("pt", "nas.export.writers:write_pt"))
register_format(ExportFormat("timm", "nas.export.writers:write_timm"))
register_format(ExportFormat("torchscript", "nas.export.writers:write_torchscript"))
register_format(ExportFormat("onnx", "nas.export.writers:write_onnx", ("onnx", "onnxruntime"),
                             f"{DISTRIBUTION}[onnx]"))
register_format(ExportFormat("coreml", "nas.export.writers:write_coreml", ("coremltools",),
                             f"{DISTRIBUTION}[coreml]"))      # last: the slowest


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise UsageError(f"--format {text!r}: unknown format {', '.join(unknown) or '(none)'}; "
                         f"accepted: a comma-separated list of {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in wanted]     # a fixed order: pt first, the slow Core ML last


def missing_modules(fmt: str) -> list[str]:
    return not_installed(FORMATS[fmt].needs)


def default_formats() -> tuple[list[str], str]:
    """Every format whose packages are installed, and a note naming the extras that would add the others ("" when
    none is missing): what ``nas export`` writes without ``--format``."""
    available = [fmt for fmt in FORMATS if not missing_modules(fmt)]
    skipped = [fmt for fmt in FORMATS if fmt not in available]
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
