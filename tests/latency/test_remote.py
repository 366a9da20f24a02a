"""A device measured on another machine that is not Core ML: ``onnxruntime-remote``. Its ops become ONNX packages
here, the runner copied beside them times them with nothing but numpy and onnxruntime (nas blocked from import),
and ``nas lut ingest`` makes a measured table that predicts; a killed runner resumes; what only a Core ML runner
or only a local device takes is refused in one line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nas.latency.devices import get_device
from nas.latency.remote import PACKAGE_FORMATS
from tests.helpers import run_nas

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("remote") / "packages"
    proc = run_nas("lut", "build", "--device", "onnxruntime-remote", "--space", "tiny", "--out", str(out),
                   "--calibrate", "3", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def _runner_without_nas(folder, tmp_path, *args):
    """``python3 measure_onnx.py ...`` in the copied folder, where importing nas fails as on a bare board."""
    blocker = tmp_path / "blocker" / "nas"
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text('raise ImportError("nas is not installed on this machine")\n')
    return subprocess.run([sys.executable, "measure_onnx.py", "manifest.json", *args], cwd=folder,
                          capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path / "blocker"),
                                                               "PATH": "/usr/bin:/bin"})


def test_packages_a_runner_and_a_manifest_for_the_other_machine(built):
    out, summary = built
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["header"]["package_format"] == "onnx" and summary["package_format"] == "onnx"
    assert summary["packages"] == len(manifest["packages"]) and summary["next"][0].endswith("--out timings.json")
    assert all((out / p["package"]).is_file() and p["package"].endswith(".onnx") for p in manifest["packages"])
    assert (out / "measure_onnx.py").is_file() and (out / "nas_timing.py").is_file()


def test_timed_without_nas_then_ingested_into_a_table_that_predicts(built, tmp_path):
    out, _ = built
    proc = _runner_without_nas(out, tmp_path, "--out", "timings.json")
    assert proc.returncode == 0, proc.stderr
    timings = json.loads((out / "timings.json").read_text())
    assert timings["header"]["runtime"] == "onnxruntime" and all(t["median_ms"] > 0 and t["n"] >= 20
                                                                for t in timings["timings"].values())
    table_path = tmp_path / "table.json"
    ingested = run_nas("lut", "ingest", str(out / "manifest.json"), str(out / "timings.json"), "--out",
                       str(table_path), "--json")
    assert ingested.returncode == 0, ingested.stderr
    header = json.loads(table_path.read_text())["header"]
    assert (header["kind"], header["backend"], header["package_format"]) == ("measured", "onnxruntime", "onnx")
    assert header["backend_version"] == timings["header"]["runtime_version"]
    predicted = run_nas("predict", "--device", "onnxruntime-remote", "--lut", str(table_path), "--arch", "large",
                        "--space", "tiny", "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["latency_ms"] > 0


def test_a_killed_runner_resumes_and_nas_lut_measure_runs_it_too(built, tmp_path):
    out, _ = built
    whole = _runner_without_nas(out, tmp_path, "--out", "t.json")
    assert whole.returncode == 0, whole.stderr
    data = json.loads((out / "t.json").read_text())
    kept = dict(list(data["timings"].items())[:10])      # killed after ten packages
    (out / "t.json").write_text(json.dumps({**data, "timings": kept}))
    again = _runner_without_nas(out, tmp_path, "--out", "t.json")
    assert again.returncode == 2 and "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    resumed = run_nas("lut", "measure", str(out / "manifest.json"), "--out", str(out / "t.json"), "--resume",
                      "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads((out / "t.json").read_text())["timings"]
    assert set(after) == set(data["timings"]) and all(after[k] == v for k, v in kept.items())


@pytest.mark.parametrize("args, words", [
    (["lut", "measure", "{manifest}", "--out", "{tmp}/t.json", "--on", "mac"], "settings of the Core ML runner"),
    (["lut", "validate", "--device", "onnxruntime-remote", "--space", "tiny"], "measured on another machine"),
    (["measure", "--device", "onnxruntime-remote", "--space", "tiny", "--arch", "small"],
     "measured on another machine"),
    (["lut", "build", "--device", "onnxruntime-remote", "--compute-units", "ALL", "--out", "{tmp}/p"],
     "--compute-units is for Core ML devices"),
    (["lut", "build", "--device", "onnxruntime-remote", "--workers", "2", "--out", "{tmp}/p"],
     "timed on any machine with numpy and onnxruntime"),
])
def test_what_this_device_does_not_take_is_refused_in_one_line(built, tmp_path, args, words):
    out, _ = built
    proc = run_nas(*[a.format(manifest=out / "manifest.json", tmp=tmp_path) for a in args])
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_every_ingested_device_names_a_registered_package_format():
    from nas.latency.devices import DEVICES, INGESTED

    formats = {d.package_format for d in DEVICES.values() if INGESTED in d.table_sources}
    assert formats <= set(PACKAGE_FORMATS) and {"coreml", "onnx"} <= formats
    assert not get_device("onnxruntime-remote").measurable_here()[0]


def test_a_build_whose_converter_is_missing_is_refused_before_anything_is_written(tmp_path, tiny, monkeypatch):
    """``pip install -e .`` alone has no onnx: the build says which extra adds it, in one line, and makes no folder
    (it used to fail deep inside torch.onnx with a traceback)."""
    import dataclasses

    from nas.errors import UsageError
    from nas.latency.remote.manifest import build_packages

    monkeypatch.setitem(PACKAGE_FORMATS, "onnx", dataclasses.replace(PACKAGE_FORMATS["onnx"],
                                                                     needs=("no_such_converter_module",)))
    with pytest.raises(UsageError, match=r"no_such_converter_module.*pip install 'vit-latency-nas\[onnx\]'"):
        build_packages(get_device("onnxruntime-remote"), tiny, tmp_path / "board", progress=False)
    assert not (tmp_path / "board").exists()
