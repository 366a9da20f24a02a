"""iPhone 12: Core ML packages and their ingestion, the traced-op cost model, and the shipped estimated table."""
from __future__ import annotations

import csv
import json
import math
import platform
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.latency.coreml.convert import check_conversions
from nas.latency.costmodel.model import CostModel, load_cost_model, shipped_cost_model_path
from nas.latency.costmodel.published import load_published, shipped_calibration_csv, timm_model
from nas.latency.ops import arch_ops, space_ops
from nas.latency.predict import estimate_notice, load_predictor, predict_model
from nas.latency.remote.manifest import load_manifest
from nas.latency.table import LatencyTable
from nas.latency.trace import COMPOSITE_ACT, DENSE, LAYOUT, NORM, SOFTMAX, trace_ops
from nas.space import load_space
from tests.helpers import nas_here, run_nas

PUBLISHED_P2 = {"l1": 1.4, "l3": 2.7, "l7": 6.6}   # calibration CSV, EfficientFormer-L* re-measured under P2


# ------------------------------------------------------------------------------------------------ tracing


class _Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 8)
        self.bias = nn.Parameter(torch.zeros(4, 4))

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))                  # conv; BN and ReLU fuse into it
        x = F.silu(self.dw(x))                             # depthwise; SiLU has no fused Core ML form
        t = x.flatten(2).transpose(1, 2)                   # [B, HW, C]: moves the channel axis -> layout
        t = self.fc(self.norm(t))                          # LayerNorm; linear on [B, N, C] needs no reshape
        q = t.reshape(1, 16, 2, 4).transpose(1, 2)         # heads: layout
        bias = self.bias.t() * 2                           # constants only: folded by the converter
        out = F.scaled_dot_product_attention(q, q, q)      # counted as q k^T, softmax, A v
        return out.sum() + bias.sum()


def test_trace_classifies_what_the_phone_runs():
    records = trace_ops(_Probe().eval(), torch.randn(1, 3, 4, 4))
    cats = [(r.name, r.category) for r in records]
    assert ("convolution", DENSE) in cats
    assert ("convolution", "depthwise") in cats
    assert [c for n, c in cats if "batch_norm" in n] == ["fused"]
    assert [c for n, c in cats if n == "relu"] == ["fused"]
    assert [c for n, c in cats if n == "silu"] == [COMPOSITE_ACT]
    assert ("native_layer_norm", NORM) in cats
    assert {n for n, c in cats if c == LAYOUT} >= {"transpose", "view"}
    assert ("attention.softmax", SOFTMAX) in cats and ("attention.qk", DENSE) in cats
    assert not any(n == "t" for n, _ in cats)            # the bias transpose touches only a parameter
    fc = [r for r in records if r.name in ("addmm", "mm")]
    assert fc and fc[0].flops == 2 * 16 * 8 * 8           # 16 tokens, 8 -> 8
    # the views around the linear (merge/split leading dims) are free: only channel-moving ones cost
    assert all(r.bytes == 0 for r in records if r.category in ("fused", "free"))


# --------------------------------------------------------------------------------------- the cost model


def test_cost_model_file_round_trips(tmp_path):
    model = load_cost_model("iphone12")
    model.save(tmp_path / "m.json")
    again = CostModel.load(tmp_path / "m.json")
    assert again.to_dict() == model.to_dict()
    (tmp_path / "bad.json").write_text('{"schema": "other"}')
    with pytest.raises(Exception, match="field 'schema' = 'other'; expected 'nas-cost-model/1'"):
        CostModel.load(tmp_path / "bad.json")


def test_fusing_reparameterisable_branches_reduces_kernels():
    import timm

    from nas.latency.trace import summarize

    raw = timm.create_model("repvit_m0_9", pretrained=False).eval()
    fused = timm_model("repvit_m0_9")
    x = torch.randn(1, 3, 224, 224)
    assert summarize(trace_ops(fused, x))["kernels"] < summarize(trace_ops(raw, x))["kernels"]
    model = load_cost_model("iphone12")
    assert model.predict_module(fused) < model.predict_module(raw)


@pytest.mark.parametrize("name", ["mobilenetv2_100", "repvit_m1_1", "efficientformer_l1"])
def test_predict_timm_command(name):
    published = {r.timm_name: r.latency_ms for r in load_published(shipped_calibration_csv(), "P2")}[name]
    result = nas_here("predict", "--device", "iphone12", "--timm", name, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["method"] == "cost model (estimated)" and out["cost_model_protocol"] == "P2"
    assert abs(out["latency_ms"] - published) / published < 0.25   # in-sample; the CV figures are in the README
    again = nas_here("predict", "--device", "iphone12", "--timm", name, "--input-size", "256", "--json")
    if name.startswith("efficientformer"):   # attention biases are sized for 224: refused in one line
        assert again.returncode == 2 and "does not run at --input-size 256" in again.stderr
    else:
        assert json.loads(again.stdout)["latency_ms"] > out["latency_ms"]   # more pixels, more time


def test_predict_model_prices_any_module_and_refuses_devices_without_a_model():
    net = timm_model("mobilenetv2_100")
    ms = predict_model(net, 224, device="iphone12")
    assert 0.3 < ms < 3.0
    with pytest.raises(Exception, match="has no cost model"):
        predict_model(net, 224, device="cpu")


def test_calibration_report_and_refit_reproduces_the_shipped_model(tmp_path):
    out = tmp_path / "iphone12.costmodel.json"
    result = nas_here("lut", "calibrate", "--device", "iphone12", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["protocol"] == "P2" and report["n_models"] == 21
    assert {m["timm_name"] for m in report["models"]} >= {"efficientformer_l1", "repvit_m1_1", "resnet50"}
    ours, base = report["summary"]["cost_model"], report["summary"]["macs_linear"]
    assert ours["lofo"]["mape"] * 1.5 <= base["lofo"]["mape"]           # the issue's bar against MACs
    assert ours["loo"]["mape"] < base["loo"]["mape"]
    assert (tmp_path / "iphone12.costmodel.calibration.png").stat().st_size > 10_000
    refit, shipped = CostModel.load(out).to_dict(), CostModel.load(shipped_cost_model_path("iphone12")).to_dict()
    for key in ("peak_gflop_per_ms", "bandwidth_mb_per_ms", "fixed_ms"):
        assert math.isclose(refit[key], shipped[key], rel_tol=1e-6), key
    assert nas_here("lut", "calibrate", "--device", "iphone12", "--protocol", "P3").returncode == 2


# ------------------------------------------------------------------------------------- the shipped table


def test_shipped_table_is_an_estimate_covering_the_default_space(space):
    predictor = load_predictor("iphone12")
    table = predictor.table
    assert table.header["kind"] == "estimated" and table.header["backend"] == "coreml"
    est = table.header["estimate"]
    assert est["protocol"] == "P2" and "iphone12_published.csv" in est["source"]
    assert est["cross_validation"]["lofo"]["mape"] > 0
    assert set(table.entries) == {op.key for op in space_ops(space)}
    notice = estimate_notice(predictor)
    assert notice and "estimated" in notice and "nas lut build --device iphone12" in notice


@pytest.mark.parametrize("preset", ["l1", "l3", "l7"])
def test_presets_through_the_shipped_table_are_within_10pct_of_published(space, preset):
    ms = load_predictor("iphone12").predict(space.preset(preset))
    assert abs(ms - PUBLISHED_P2[preset]) / PUBLISHED_P2[preset] <= 0.10, ms


def test_table_and_cost_model_agree_on_the_same_network(space):
    """The table's op entries + offset equal the cost model on the whole timm network: one model, two paths."""
    model = load_cost_model("iphone12")
    table_ms = load_predictor("iphone12").predict(space.preset("l3"))
    assert math.isclose(table_ms, model.predict_module(timm_model("efficientformer_l3")), rel_tol=1e-6)


def test_estimated_table_is_reproducible(tmp_path, tiny):
    out = tmp_path / "iphone12-tiny.json"
    result = run_nas("lut", "estimate", "--device", "iphone12", "--space", "tiny", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    table = LatencyTable.load(out)
    assert table.header["kind"] == "estimated"
    assert set(table.entries) == {op.key for op in space_ops(tiny)}
    model = load_cost_model("iphone12")
    for op in space_ops(tiny)[:5]:
        module, x = op.build(1)
        assert math.isclose(table.entries[op.key]["median_ms"], model.op_ms(trace_ops(module, x)), rel_tol=1e-9)


def test_a_local_measured_table_takes_precedence_over_the_shipped_estimate(tmp_path, space):
    shipped = load_predictor("iphone12").table
    measured = LatencyTable({**shipped.header, "kind": "measured"},
                            {k: {**e, "median_ms": 2 * e["median_ms"]} for k, e in shipped.entries.items()})
    measured.header.pop("estimate")
    measured.save(tmp_path / "iphone12.json")
    env_result = subprocess.run([sys.executable, "-m", "nas", "predict", "--device", "iphone12", "--arch", "l1",
                                 "--json"], capture_output=True, text=True,
                                env={**_env(), "NAS_LUT_DIR": str(tmp_path)})
    out = json.loads(env_result.stdout)
    assert out["table_kind"] == "measured" and out["table"] == str(tmp_path / "iphone12.json")
    assert "estimated" not in env_result.stderr


def _env() -> dict:
    import os

    return dict(os.environ)


# ------------------------------------------------------------------------------------ Core ML packages


def _extremes(ops: list) -> list:
    """The narrowest and widest op of each signature shape (kind, stage resolution, MLP ratio, mixer and its
    knobs): every code path of the converter at the sizes where it could break, for a fraction of the ops."""
    groups: dict = {}
    for op in ops:
        p = dict(op.params)
        shape = (op.kind, p.get("r"), p.get("n"), p.get("e"), p.get("mixer"), p.get("h"), p.get("kd"), p.get("cin"))
        groups.setdefault(shape, []).append(op)
    return [op for group in groups.values() for op in {id(o): o for o in (group[0], group[-1])}.values()]


@pytest.mark.slow
def test_ops_of_the_shipped_spaces_convert_to_coreml(space):
    """mlprogram, fp16, iOS 16, as `nas lut build --device iphone12` writes them (not saved here). Each kind of op
    of the default space, and each op the hybrid space adds (CGA, SSA blocks), at its narrowest and widest; every
    op of both spaces is converted by benchmarks/coreml_conversion.py (figures in docs/latency.md). Two processes:
    the conversions are independent and the machines have two cores."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    hybrid = load_space("efficientformer_hybrid")
    default_ops = space_ops(space)
    added = [op for op in space_ops(hybrid) if op not in set(default_ops)]
    chosen = _extremes(default_ops) + _extremes(added)
    keys = [op.key for op in chosen]
    assert {k.split("|")[0] for k in keys} == {"stem", "down", "mb4d", "flat", "mb3d", "head"}
    assert {op["mixer"] for op in chosen if op.kind == "mb3d"} == {"mhsa", "cga", "ssa"}
    # spawn, not fork: forking a process whose torch thread pools are running can deadlock the children
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        problems = [p for chunk in pool.map(check_conversions, [keys[0::2], keys[1::2]]) for p in chunk]
    assert not problems, problems[:5]


def test_coreml_build_resumes_after_kill_then_ingests_a_measured_table(tiny, tmp_path):
    out = tmp_path / "pk"
    manifest = out / "manifest.json"
    cmd = [sys.executable, "-m", "nas", "lut", "build", "--device", "iphone12", "--space", "tiny", "--out", str(out),
           "--calibrate", "3", "--no-progress"]   # 3 calibration archs are enough to fit scale and offset
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, before = time.time() + 180, []
    while time.time() < deadline:
        if manifest.exists() and len(before := load_manifest(manifest)["packages"]) >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = load_manifest(manifest)["packages"]
    total = len(space_ops(tiny)) + 3
    assert 8 <= len(before) < total
    stamps = {p["id"]: (out / p["package"] / "Manifest.json").stat().st_mtime_ns for p in before}
    refused = nas_here(*cmd[3:])
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = run_nas(*cmd[3:], "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    packages = load_manifest(manifest)["packages"]
    assert len(packages) == total and len({p["id"] for p in packages}) == total      # none lost, none twice
    for pid, stamp in stamps.items():                                                 # none converted again
        assert (out / f"packages/{pid}.mlpackage" / "Manifest.json").stat().st_mtime_ns == stamp
    header = load_manifest(manifest)["header"]
    assert header["compute_units"] == "ALL" and header["precision"] == "float16"
    assert header["minimum_deployment_target"] == "iOS16"

    # synthetic timings as the Mac runner writes them: op i takes 0.01 * (i + 1) ms; an arch 1.1 x its ops + 0.2
    op_ms = {p["op"]: 0.01 * (i + 1) for i, p in enumerate(packages) if p["kind"] == "op"}
    timings = {}
    for p in packages:
        v = op_ms[p["op"]] if p["kind"] == "op" else \
            1.1 * sum(op_ms[o.key] for o in arch_ops(tiny.arch_from_dict(p["arch"]), tiny)) + 0.2
        timings[p["id"]] = {"median_ms": v, "p10_ms": 0.9 * v, "p90_ms": 1.1 * v, "n": 50}
    (tmp_path / "timings.json").write_text(json.dumps({"header": {"schema": "nas-coreml-timings/1"},
                                                       "timings": timings}))
    table_path = tmp_path / "iphone12-tiny.json"
    ingested = nas_here("lut", "ingest", str(manifest), str(tmp_path / "timings.json"), "--out", str(table_path),
                       "--json")
    assert ingested.returncode == 0, ingested.stderr
    table = LatencyTable.load(table_path)
    assert table.header["kind"] == "measured" and table.header["backend"] == "coreml"
    assert math.isclose(table.correction["scale"], 1.1, rel_tol=1e-6)
    assert math.isclose(table.correction["offset_ms"], 0.2, rel_tol=1e-6)
    small = tiny.preset("small")
    expected = 1.1 * sum(op_ms[o.key] for o in arch_ops(small, tiny)) + 0.2
    predicted = nas_here("predict", "--device", "iphone12", "--space", "tiny", "--arch", "small", "--lut",
                        str(table_path), "--json")
    assert math.isclose(json.loads(predicted.stdout)["latency_ms"], expected, rel_tol=1e-6)
    assert "estimated" not in predicted.stderr

    # the same timings typed in from Xcode's performance report, as CSV
    with open(tmp_path / "timings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "median_ms"])
        w.writerows([pid, t["median_ms"]] for pid, t in timings.items())
    from_csv = nas_here("lut", "ingest", str(manifest), str(tmp_path / "timings.csv"), "--out",
                       str(tmp_path / "csv.json"))
    assert from_csv.returncode == 0, from_csv.stderr
    assert LatencyTable.load(tmp_path / "csv.json").entries.keys() == table.entries.keys()

    # incomplete timings are refused with the command that finishes them
    del timings[packages[0]["id"]]
    (tmp_path / "partial.json").write_text(json.dumps({"header": {"schema": "nas-coreml-timings/1"},
                                                       "timings": timings}))
    partial = nas_here("lut", "ingest", str(manifest), str(tmp_path / "partial.json"), "--out",
                       str(tmp_path / "x.json"))
    assert partial.returncode == 2 and "nas lut measure" in partial.stderr and "--resume" in partial.stderr

    # timings that are not positive and finite, or of packages this manifest does not have, are refused
    whole = json.loads((tmp_path / "timings.json").read_text())
    first = packages[0]["id"]
    for name, change, words in (("inf", {first: {"median_ms": float("inf")}}, f"'timings.{first}.median_ms' = inf"),
                                ("zero", {first: {"median_ms": 0.0}}, f"'timings.{first}.median_ms' = 0.0"),
                                ("stranger", {"op-9999": {"median_ms": 1.0}}, "ids that are not in")):
        bad = {**whole, "timings": {**whole["timings"], **change}}
        (tmp_path / f"{name}.json").write_text(json.dumps(bad))
        refused = nas_here("lut", "ingest", str(manifest), str(tmp_path / f"{name}.json"), "--out",
                          str(tmp_path / "x.json"))
        assert refused.returncode == 2 and words in refused.stderr, (name, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1

    if platform.system() != "Darwin":   # the runner itself needs macOS: refused in one line elsewhere
        measured = nas_here("lut", "measure", str(manifest), "--out", str(tmp_path / "m.json"))
        assert measured.returncode == 2 and "macOS" in measured.stderr


@pytest.mark.macos
@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML predictions run only on macOS")
def test_measure_on_a_mac_writes_timings_that_ingest(tiny, tmp_path):
    from nas.latency.coreml.measure import measure_packages
    from nas.latency.devices import get_device
    from nas.latency.remote.ingest import ingest
    from nas.latency.remote.manifest import build_packages

    manifest = build_packages(get_device("iphone12"), tiny, tmp_path / "pk", progress=False)
    timings = measure_packages(manifest, tmp_path / "t.json", on="mac", progress=False)
    data = json.loads(timings.read_text())
    assert len(data["timings"]) == len(load_manifest(manifest)["packages"])
    assert all(t["median_ms"] > 0 for t in data["timings"].values())
    table = ingest(manifest, timings, tmp_path / "table.json")
    assert table.header["kind"] == "measured"


# --------------------------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_exit_2():
    cases = [
        (["predict", "--device", "iphone12"], "exactly one of --arch"),
        (["predict", "--device", "iphone12", "--arch", "l1", "--timm", "resnet50"], "exactly one of --arch"),
        (["predict", "--device", "iphone12", "--timm", "efficientformer_l9"], "did you mean efficientformer_l"),
        (["predict", "--device", "cpu", "--timm", "resnet50"], "has no cost model"),
        (["lut", "build", "--device", "iphone12", "--compute-units", "GPU"], "invalid choice: 'GPU'"),
        (["lut", "ingest", "nope.json", "t.json"], "does not exist"),
    ]
    for args, message in cases:
        result = run_nas(*args)       # a process of its own: the one-line contract includes start-up
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_int8_iphone_package_is_w8a8_and_its_manifest_says_so(tiny, tmp_path):
    """``iphone12-int8``: each op's package is W8A8 (activation quantize ops, iOS 17), made here by
    coremltools.optimize, to be timed on the phone and ingested like the fp16 ones."""
    import coremltools as ct

    from nas.latency.coreml.package import describe, write_package
    from nas.latency.coreml.quantize import op_counts
    from nas.latency.devices import get_device
    from nas.latency.ops import Op

    device = get_device("iphone12-int8")
    assert (device.precision, device.family, device.table_sources) == ("int8", "iphone12", ("ingested",))
    op = next(o for o in space_ops(tiny) if o.kind == "mb3d")
    module, x = Op.from_key(op.key).build(1)
    write_package(module, x, device, tmp_path / "op.mlpackage")
    reloaded = ct.models.MLModel(str(tmp_path / "op.mlpackage"), skip_model_load=True)
    assert reloaded.get_spec().specificationVersion >= 8          # iOS 17
    assert [i.name for i in reloaded.get_spec().description.input] == ["x"]
    assert op_counts(reloaded).get("quantize", 0) > 0
    header = describe(device)
    assert header["precision"] == "int8 (W8A8)" and header["minimum_deployment_target"] == "iOS17"
    assert describe(get_device("iphone12"))["precision"] == "float16"
