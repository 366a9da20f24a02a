"""Devices: a registry of names to a measurement backend, its settings, and how the device gets its table.

A user adds a device with one call, e.g. ``register_device(Device("cpu4", "cpu", threads=4))``; everything that
takes ``--device`` then knows it. A device gets its latency table in one or more of three ways (``table_sources``):

- ``measured``: ``nas lut build`` measures every op on this machine (cpu, cuda, onnxruntime);
- ``ingested``: ``nas lut build`` converts the ops to packages of the device's ``package_format``, they are
  timed on the device elsewhere (``nas lut measure`` on a Mac or iPhone for Core ML, the copied ``measure_onnx.py``
  on any machine for ONNX) and ``nas lut ingest`` makes the table (``nas.latency.remote``);
- ``estimated``: ``nas lut estimate`` prices every op with the device's calibrated cost model until a measured
  table exists.

Where each table lives is ``nas.latency.paths``'s business.
"""
from __future__ import annotations

from dataclasses import dataclass

from nas import registry
from nas.errors import UsageError
from nas.latency.backends import BACKENDS, Backend

MEASURED, INGESTED, ESTIMATED = "measured", "ingested", "estimated"
TABLE_SOURCES = (MEASURED, INGESTED, ESTIMATED)


@dataclass(frozen=True)
class Device:
    name: str
    backend: str            # a key of nas.latency.backends.BACKENDS
    threads: int = 1
    batch: int = 1
    dtype: str = "float32"
    description: str = ""
    compute_units: str = "ALL"   # Core ML devices: which units the packages may use (recorded in the table)
    table_sources: tuple[str, ...] = (MEASURED,)   # how its table can be made, the preferred way first
    package_format: str | None = None   # ingested tables: what its ops are converted to (nas.latency.remote)
    precision: str = "fp32"     # what its models compute in (nas.latency.precision): part of its table's identity
    family: str = ""            # the device it is a precision of (``onnxruntime`` for ``onnxruntime-int8``)

    @property
    def base(self) -> str:
        """The device this is a precision of, or itself."""
        return self.family or self.name

    def make_backend(self) -> Backend:
        return BACKENDS[self.backend](threads=self.threads, batch=self.batch, dtype=self.dtype,
                                      precision=self.precision)

    def measurable_here(self) -> tuple[bool, str]:
        """Whether this machine can time the device (and if not, why): a device measured elsewhere never is,
        even when its backend runs here (``onnxruntime-remote``'s timings here would be this CPU's)."""
        if MEASURED not in self.table_sources:
            return False, (f"{self.name} is measured on another machine: nas lut build --device {self.name} writes "
                           f"{self.package_format} packages, they are timed there (nas lut measure), and nas lut "
                           "ingest makes the table")
        return self.make_backend().available()


DEVICES: dict[str, Device] = {}


def register_device(device: Device) -> Device:
    if device.backend not in BACKENDS:
        raise UsageError(f"device {device.name!r}: backend {device.backend!r} is unknown; known: {', '.join(BACKENDS)}")
    unknown = [t for t in device.table_sources if t not in TABLE_SOURCES]
    if unknown or not device.table_sources:
        raise UsageError(f"device {device.name!r}: table sources {device.table_sources!r}; allowed: "
                         f"{', '.join(TABLE_SOURCES)}")
    if (INGESTED in device.table_sources) != (device.package_format is not None):
        raise UsageError(f"device {device.name!r}: a table ingested from elsewhere needs a package format, and only "
                         "such a table does (table_sources, package_format)")
    from nas.latency.precision import get_precision

    get_precision(device.precision)
    if device.precision not in BACKENDS[device.backend].precisions:
        runs = ", ".join(BACKENDS[device.backend].precisions)
        raise UsageError(f"device {device.name!r}: backend {device.backend!r} runs {runs}, not {device.precision}")
    if device.family and (device.family not in DEVICES or DEVICES[device.family].family):
        raise UsageError(f"device {device.name!r}: family {device.family!r} is not a registered base device")
    if device.package_format is not None:
        from nas.latency.remote import get_package_format

        get_package_format(device.package_format)
    return registry.add(DEVICES, device.name, device, "device")


register_device(Device("cpu", "cpu", threads=1, description="this machine's CPU, PyTorch eager, 1 thread"))
register_device(Device("cpu-2t", "cpu", threads=2, description="this machine's CPU, PyTorch eager, 2 threads"))
register_device(Device("cuda", "cuda", description="the first CUDA GPU, PyTorch eager, CUDA events"))
register_device(Device("onnxruntime", "onnxruntime", threads=1,
                       description="this machine's CPU, ONNX Runtime CPU execution provider, 1 thread"))
register_device(Device("onnxruntime-int8", "onnxruntime", threads=1, precision="int8", family="onnxruntime",
                       description="this machine's CPU, ONNX Runtime CPU execution provider, 1 thread, int8 static "
                                   "QDQ (the op types that gain on this machine; recorded in the table)"))
register_device(Device("onnxruntime-remote", "onnxruntime", threads=1, table_sources=(INGESTED,),
                       package_format="onnx",
                       description="another machine's CPU (an ARM board, a server), ONNX Runtime CPU execution "
                                   "provider, 1 thread: packages built here, timed there by measure_onnx.py, "
                                   "ingested here"))
register_device(Device("cuda-fp16", "cuda", dtype="float16", precision="fp16", family="cuda",
                       description="the first CUDA GPU, PyTorch eager in fp16, CUDA events"))
register_device(Device("iphone12", "coreml", dtype="float16", precision="fp16", compute_units="ALL",
                       table_sources=(INGESTED, ESTIMATED),
                       package_format="coreml",
                       description="iPhone 12 (A14), Core ML mlprogram fp16, compute units All; ships as an estimate "
                                   "from the calibrated cost model until a measured table is ingested"))

register_device(Device("iphone12-int8", "coreml", dtype="float16", precision="int8", family="iphone12",
                       compute_units="ALL", table_sources=(INGESTED,), package_format="coreml",
                       description="iPhone 12 (A14), Core ML W8A8 mlprogram (int8 weights and activations, iOS 17), "
                                   "compute units All: measured on the phone and ingested (the A14's Neural Engine "
                                   "has no int8-int8 path, which arrived with the A17 Pro: its table says what int8 "
                                   "costs there)"))


def get_device(name: str) -> Device:
    """The registered device ``name``; a one-line refusal listing the known ones otherwise."""
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}; known: {', '.join(sorted(DEVICES))}")
    return DEVICES[name]


def precision_family(name: str) -> list[Device]:
    """The devices of ``name``'s family (itself and its other precisions), most precise first (the order of
    ``nas.latency.precision.PRECISIONS``): what ``nas search --precision auto`` chooses among."""
    from nas.latency.precision import PRECISIONS

    base = get_device(name).base
    order = list(PRECISIONS)
    return sorted((d for d in DEVICES.values() if d.base == base), key=lambda d: order.index(d.precision))


def device_at_precision(name: str, precision: str | None) -> str:
    """The device ``name`` at ``precision`` (``--device onnxruntime --precision int8`` is ``onnxruntime-int8``):
    ``name`` itself when the precision is its own or not given; a one-line refusal naming the precisions the
    device's family has otherwise."""
    device = get_device(name)
    if precision is None or precision == device.precision:
        return name
    from nas.latency.precision import get_precision

    get_precision(precision)
    family = [d for d in DEVICES.values() if d.base == device.base]
    for d in family:
        if d.precision == precision:
            return d.name
    have = ", ".join(f"{d.precision} ({d.name})" for d in family)
    raise UsageError(f"--precision {precision} is not available for device {name!r}; it has: {have}")
