"""Tables of devices measured elsewhere than this machine: convert here, time there, ingest here.

1. ``nas lut build --device D`` (any OS, for a device whose table is ``ingested``): every op of the space, plus
   whole archs for the end-to-end correction, is converted to a package of the device's ``package_format``,
   listed in ``manifest.json`` (``manifest.py``). The manifest is rewritten atomically after every package, so a
   killed build resumes with ``--resume`` and converts nothing twice.
2. ``nas lut measure MANIFEST --out TIMINGS`` where the packages run: the format's runner times each package and
   rewrites the timings after every one (``--resume`` continues). Core ML: on a Mac, or an iPhone through
   coremltools. ONNX Runtime: on any machine with ``numpy`` and ``onnxruntime``, through the runner script the
   build copies beside the packages (no nas needed there).
3. ``nas lut ingest MANIFEST TIMINGS`` (any OS): a measured table, with the correction fitted on the whole-arch
   timings as ``nas lut build`` does for local devices (``ingest.py``).

A package format is one record here (``PackageFormat``: its functions as ``"module:function"`` strings, imported
when used, so this module imports neither torch nor a converter) plus the module that implements it; a device
names its format (``Device.package_format``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas import load_reference, not_installed, registry
from nas.errors import UsageError

INPUT_NAME = "x"        # every package's one input, whatever its format


@dataclass(frozen=True)
class PackageFormat:
    name: str
    suffix: str          # a package's file (or folder) ending: ".mlpackage", ".onnx"
    convert: str         # "module:function" (module, example input, device, path) -> None: writes the package
    describe: str        # "module:function" (device) -> dict: what the manifest header records of the conversion
    measure: str         # "module:function" (manifest, out, resume, progress, options) -> Path: the runner
    runs_on: str         # where the runner runs, for messages ("a Mac or a connected iPhone")
    # modules that run stand-alone there, copied beside the packages as (module, file name): the runner first
    runner_files: tuple[tuple[str, str], ...] = ()
    needs: tuple[str, ...] = ()        # modules the conversion needs here, beyond the core install
    extra: str = ""                    # the extra that installs them (``pip install 'vit-latency-nas[EXTRA]'``)

    def require_converter(self) -> None:
        """Refuse up front, in one line, a conversion whose packages are not installed here."""
        from nas import install_hint

        missing = not_installed(self.needs)
        if missing:
            raise UsageError(f"{self.name} packages are converted with {', '.join(missing)}, which is not installed "
                             f"here: {install_hint(self.extra)}")

    def function(self, role: str) -> Any:
        return load_reference(getattr(self, role))


PACKAGE_FORMATS: dict[str, PackageFormat] = {}


def register_package_format(fmt: PackageFormat) -> PackageFormat:
    return registry.add(PACKAGE_FORMATS, fmt.name, fmt, "package format")


def get_package_format(name: str) -> PackageFormat:
    if name not in PACKAGE_FORMATS:
        raise UsageError(f"package format {name!r} is not known; known: {', '.join(PACKAGE_FORMATS)}")
    return PACKAGE_FORMATS[name]


register_package_format(PackageFormat(
    "coreml", ".mlpackage", "nas.latency.coreml.package:write_package", "nas.latency.coreml.package:describe",
    "nas.latency.coreml.measure:measure_packages", "a Mac (or an iPhone connected to it)",
    needs=("coremltools",), extra="coreml"))
register_package_format(PackageFormat(
    "onnx", ".onnx", "nas.latency.remote.onnx_runner:write_package", "nas.latency.remote.onnx_runner:describe",
    "nas.latency.remote.onnx_runner:measure_packages", "any machine with numpy and onnxruntime",
    runner_files=(("nas.latency.remote.onnx_runner", "measure_onnx.py"), ("nas.latency.timing", "nas_timing.py")),
    needs=("onnx",), extra="onnx"))
