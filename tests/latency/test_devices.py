"""Every registered device: its backend exists, says whether it can measure here, and measures a real op when it
can; how it gets its table is one of the three ways the registry knows."""
from __future__ import annotations

import pytest

from nas.errors import UsageError
from nas.latency.backends import BACKENDS, Backend
from nas.latency.devices import DEVICES, TABLE_SOURCES, Device, get_device, register_device
from nas.latency.ops import space_ops
from nas.latency.precision import get_precision
from nas.latency.quantize import Int8Recipe

DEVICE_NAMES = sorted(DEVICES)


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_device_is_complete(name):
    device = get_device(name)
    assert device.backend in BACKENDS and device.table_sources
    assert set(device.table_sources) <= set(TABLE_SOURCES)
    backend = device.make_backend()
    assert isinstance(backend, Backend) and backend.version
    ok, why = backend.available()
    assert ok or why       # a device that cannot measure here says why


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_device_measures_an_op_when_it_can(name, tiny):
    device = get_device(name)
    backend = device.make_backend()
    ok, why = backend.available()
    if not ok:
        pytest.skip(f"{name} cannot measure on this machine: {why}")
    if get_precision(device.precision).quantized:      # the build gives it its table's recipe
        backend.recipe = Int8Recipe(("Conv", "MatMul"))
    module, x = min(space_ops(tiny), key=lambda op: op.key).build(device.batch)
    timing = backend.measure(module, x)
    assert 0 < timing.p10_ms <= timing.median_ms <= timing.p90_ms and timing.n >= 1


def test_register_device_refuses_what_it_cannot_measure_with():
    with pytest.raises(UsageError, match="backend 'tpu' is unknown"):
        register_device(Device("x", "tpu"))
    with pytest.raises(UsageError, match="table sources"):
        register_device(Device("x", "cpu", table_sources=("guessed",)))
    assert "x" not in DEVICES


def test_nas_devices_lists_each_device_with_its_table(tmp_path, tiny_iphone12, monkeypatch, capsys):
    """`nas devices --json`: a local table (estimated, just made) is found with its source, path, age and held-out
    error; a device without a table says so."""
    import json
    import shutil

    from nas.cli import main

    monkeypatch.setenv("NAS_LUT_DIR", str(tmp_path))
    shutil.copy(tiny_iphone12, tmp_path / "iphone12-tiny.json")
    assert main(["devices", "--space", "tiny", "--json"]) == 0
    rows = {r["device"]: r for r in json.loads(capsys.readouterr().out)["devices"]}
    phone = rows["iphone12"]
    assert phone["source"] == "estimated" and phone["table"] == str(tmp_path / "iphone12-tiny.json")
    assert not phone["shipped"] and 0 <= phone["age_days"] < 1
    assert phone["held_out_error_pct"] > 0 and phone["held_out_points"] > 0
    assert rows["cpu"]["table"] is None and rows["cpu"]["source"] == "none" and rows["cpu"]["backend"] == "cpu"
