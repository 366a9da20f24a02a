"""One arch timed end to end on a device of this machine, beside its table's prediction (``nas measure``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.space import Arch


def measure_against_table(device_name: str, arch: Arch, lut: str | Path | None = None) -> dict[str, Any]:
    """Time ``arch`` with the device's own backend and timing policy (what its table's end-to-end points use),
    and compare with the table's prediction and 90% interval when the device has a table of the arch's space."""
    from nas.latency.build import measure_arch
    from nas.latency.devices import get_device
    from nas.latency.predict import load_predictor
    from nas.space import load_space

    space = load_space(arch.space)
    device = get_device(device_name)
    ok, why = device.measurable_here()
    if not ok:
        raise UsageError(f"--device {device_name} cannot be measured on this machine: {why}")
    predictor, note = None, ""
    try:
        predictor = load_predictor(device_name, space.name, lut)
    except UsageError as exc:
        if lut is not None:
            raise
        note = str(exc)
    recipe = predictor.table.header.get("quantization") if predictor is not None else None
    timing = measure_arch(device, arch, space, recipe=recipe)
    result: dict[str, Any] = {"device": device_name, "backend": type(device.make_backend()).__name__,
                              "arch": arch.to_dict(), "measured": timing.to_dict(), "predicted_ms": None,
                              "table": None, "table_note": note}
    if predictor is not None:
        interval = predictor.interval(arch, 0.9)
        predicted, low, high = interval["latency_ms"], interval["latency_low_ms"], interval["latency_high_ms"]
        result.update(predicted_ms=predicted, table=predictor.path, ratio=timing.median_ms / predicted,
                      low_ms=low, high_ms=high, interval_source=interval.get("interval_source"),
                      inside_interval=None if low is None or high is None else low <= timing.median_ms <= high)
    return result
