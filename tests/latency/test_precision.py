"""Precision as part of a table's identity (issue #28): ``onnxruntime-int8`` is a device of its own with its own
table, measured in int8 by a recipe chosen on this machine; ``--precision`` names it; a table of another precision
is refused naming both; the int8 model is what ONNX Runtime's static QDQ quantiser makes of the op types the recipe
lists and nothing else."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from nas.errors import UsageError
from nas.latency.devices import Device, device_at_precision, register_device
from nas.latency.ops import Op
from nas.latency.quantize import CANDIDATE_OP_TYPES, Int8Recipe, choose_recipe, onnx_bytes, quantize_onnx, session
from nas.latency.table import LatencyTable
from tests.helpers import randomize_, run_nas

pytest.importorskip("onnxruntime")


def test_precision_names_a_device_of_the_family():
    assert device_at_precision("onnxruntime", "int8") == "onnxruntime-int8"
    assert device_at_precision("onnxruntime-int8", "fp32") == "onnxruntime"
    assert device_at_precision("onnxruntime", None) == device_at_precision("onnxruntime", "fp32") == "onnxruntime"
    assert device_at_precision("cuda", "fp16") == "cuda-fp16"
    with pytest.raises(UsageError, match=r"--precision int8 is not available for device 'cpu'; it has: fp32 \(cpu\)"):
        device_at_precision("cpu", "int8")
    with pytest.raises(UsageError, match="unknown precision 'int4'; known: fp32, fp16, int8"):
        device_at_precision("cpu", "int4")


def test_register_device_refuses_a_precision_its_backend_cannot_run():
    with pytest.raises(UsageError, match="backend 'cpu' runs fp32, not int8"):
        register_device(Device("cpu-int8", "cpu", precision="int8", family="cpu"))
    with pytest.raises(UsageError, match="family 'nothing' is not a registered base device"):
        register_device(Device("x-int8", "onnxruntime", precision="int8", family="nothing"))


@pytest.mark.parametrize("args, message", [
    (["predict", "--device", "cpu", "--precision", "int8", "--arch", "l1"],
     "nas: error: --precision int8 is not available for device 'cpu'; it has: fp32 (cpu)"),
    (["lut", "build", "--device", "onnxruntime", "--precision", "fp16"],
     "nas: error: --precision fp16 is not available for device 'onnxruntime'; it has: fp32 (onnxruntime), "
     "int8 (onnxruntime-int8)"),
])
def test_a_precision_the_device_has_not_is_one_line_and_exit_2(args, message):
    proc = run_nas(*args)
    assert proc.returncode == 2 and proc.stderr.strip() == message


def test_an_unknown_precision_is_refused_by_the_parser():
    proc = run_nas("predict", "--device", "cpu", "--precision", "int4", "--arch", "l1")
    assert proc.returncode == 2 and "--precision: invalid choice: 'int4'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_table_written_before_precisions_reads_as_its_devices(tmp_path, tiny_iphone12):
    data = json.loads(tiny_iphone12.read_text())
    del data["header"]["precision"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert LatencyTable.load(tmp_path / "old.json").header["precision"] == "fp16"     # iphone12 runs fp16


@pytest.fixture(scope="module")
def int8_table(tmp_path_factory):
    """A real int8 table of the tiny space: recipe chosen here, every op quantised by it, 3 archs end to end."""
    path = tmp_path_factory.mktemp("int8") / "onnxruntime-int8-tiny.json"
    proc = run_nas("lut", "build", "--device", "onnxruntime", "--precision", "int8", "--space", "tiny",
                   "--calibrate", "3", "--out", str(path), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return path


def test_an_int8_table_records_its_precision_and_the_recipe_with_its_evidence(int8_table):
    header = LatencyTable.load(int8_table).header
    assert (header["device"], header["precision"], header["backend"]) == ("onnxruntime-int8", "int8",
                                                                           "onnxruntime-cpu")
    q = header["quantization"]
    assert q["format"] == "onnxruntime static QDQ" and q["per_channel"] and (q["weights"], q["activations"]) == \
        ("S8", "U8")
    evidence = q["chosen_by"]
    present = set(evidence["alone_ms"])
    assert present <= set(CANDIDATE_OP_TYPES) and {"Conv", "MatMul", "AveragePool"} <= present
    assert set(q["op_types"]) | set(evidence["kept_float"]) == present
    assert not set(q["op_types"]) & set(evidence["kept_float"])
    # never slower by quantising: a type is in int8 only where it measured faster than the float model
    assert all(evidence["alone_ms"][t] < evidence["probe_float_ms"] for t in q["op_types"])


def test_a_table_of_another_precision_is_refused_naming_both(int8_table):
    proc = run_nas("predict", "--device", "onnxruntime", "--space", "tiny", "--lut", str(int8_table), "--arch",
                   "small")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"nas: error: --lut {int8_table} is a table at precision int8 (device "
                                          "'onnxruntime-int8'), --device onnxruntime runs fp32")
    proc = run_nas("predict", "--device", "onnxruntime", "--precision", "int8", "--space", "tiny", "--lut",
                   str(int8_table), "--arch", "small", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["device"] == "onnxruntime-int8"


def test_an_int8_measurement_uses_the_tables_recipe(int8_table):
    """``nas measure`` times the arch quantised as the table priced it, and compares with its interval."""
    proc = run_nas("measure", "--device", "onnxruntime", "--precision", "int8", "--space", "tiny", "--lut",
                   str(int8_table), "--arch", "small", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["device"] == "onnxruntime-int8" and result["measured"]["median_ms"] > 0
    assert 0.3 < result["ratio"] < 3         # the same model family the table priced, not an fp32 run


def test_an_int8_device_without_a_table_says_where_its_recipe_comes_from(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nas", "measure", "--device", "onnxruntime-int8", "--space",
                           "tiny", "--arch", "small"], capture_output=True, text=True,
                          env={**os.environ, "NAS_LUT_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert "its int8 recipe (which op types run in int8 on this machine) comes from it; build one with: nas lut " \
           "build --device onnxruntime-int8 --space tiny" in proc.stderr and "Traceback" not in proc.stderr


def _mb4d(tiny):
    module, x = Op.from_key(f"mb4d|r={tiny.resolutions()[0]}|c={tiny.stages[0].widths[-1]}|e=4").build()
    return randomize_(module), x


def test_quantize_puts_qdq_only_around_the_recipes_op_types_and_agrees_with_float(tiny):
    import onnx

    module, x = _mb4d(tiny)
    float_model = onnx_bytes(module, x)
    assert quantize_onnx(float_model, Int8Recipe(()), []) == float_model        # nothing to quantise
    feeds = [{"x": np.ascontiguousarray(torch.randn_like(x).numpy())} for _ in range(4)] + \
        [{"x": np.ascontiguousarray(x.numpy())}]
    int8 = quantize_onnx(float_model, Int8Recipe(("Conv",)), feeds)
    graph = onnx.load_from_string(int8).graph
    produced_by = {out: node.op_type for node in graph.node for out in node.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    pools = [n for n in graph.node if n.op_type == "AveragePool"]
    assert convs and pools
    assert all(produced_by.get(n.input[0]) == "DequantizeLinear" for n in convs)      # int8 in
    assert all(produced_by.get(n.input[0]) != "DequantizeLinear" for n in pools)      # float: no QDQ around it
    want = module(x).detach().numpy()
    got = session(int8, 1).run(None, {"x": x.numpy()})[0]
    # 8-bit activations (per tensor) and weights (per channel): the block's output within 5% of its range
    assert np.max(np.abs(got - want)) <= 0.05 * (want.max() - want.min())


def test_choose_recipe_keeps_a_type_float_unless_it_won_every_round(tiny):
    module, x = _mb4d(tiny)
    recipe, evidence = choose_recipe(module, x, rounds=3, runs=3)
    assert {"Conv", "AveragePool"} <= set(evidence["alone_ms"]) <= set(CANDIDATE_OP_TYPES)
    assert set(recipe.op_types) | set(evidence["kept_float"]) == set(evidence["alone_ms"])
    assert evidence["rounds"] == 3
    assert all(evidence["alone_ms"][t] < evidence["probe_float_ms"] for t in recipe.op_types)


@pytest.fixture(scope="module")
def conv_int8_dir(int8_table, tmp_path_factory):
    """A table folder with the tiny int8 table whose recipe quantises Conv and MatMul: on this CPU the tiny
    space's 32-pixel nets may gain nothing from int8 (their recipe can be empty), and these tests are about
    what follows a recipe, so they use one that quantises (saved by nas, so its digest vouches for it)."""
    folder = tmp_path_factory.mktemp("luts")
    table = LatencyTable.load(int8_table)
    table.header["quantization"]["op_types"] = ["Conv", "MatMul"]
    table.save(folder / "onnxruntime-int8-tiny.json")
    return folder


def test_a_hand_edited_recipe_is_seen(conv_int8_dir, tmp_path):
    data = json.loads((conv_int8_dir / "onnxruntime-int8-tiny.json").read_text())
    data["header"]["quantization"]["op_types"] = ["Conv"]
    (tmp_path / "edited.json").write_text(json.dumps(data))
    proc = run_nas("predict", "--device", "onnxruntime-int8", "--space", "tiny", "--lut",
                   str(tmp_path / "edited.json"), "--arch", "small")
    assert proc.returncode == 0 and "does not match the digest it was written with" in proc.stderr


def test_export_at_int8_writes_the_qdq_model_the_table_priced(conv_int8_dir, tmp_path):
    env = {**os.environ, "NAS_LUT_DIR": str(conv_int8_dir)}
    proc = subprocess.run([sys.executable, "-m", "nas", "export", "small", "--space", "tiny", "--precision", "int8",
                           "--out", str(tmp_path / "x"), "--json", "--no-progress"], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["formats"] == ["onnx-int8"] and report["files"]["onnx-int8"] == ["model.int8.onnx"]
    check = report["checks"]["onnx-int8"]
    assert check["ok"] and check["int8_op_types"] == ["Conv", "MatMul"] and 0 <= check["top1_agreement_pct"] <= 100
    import onnx

    card = (tmp_path / "x" / "README.md").read_text()
    assert "| onnx-int8 |" in card and "int8 Conv, MatMul; top-1 agrees with float" in card
    assert "session = ort.InferenceSession('model.int8.onnx')" in card
    ops = {n.op_type for n in onnx.load(str(tmp_path / "x" / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "AveragePool"} <= ops
    # a format without an int8 form, and an int8 export with no int8 table: one line each, nothing written
    proc = subprocess.run([sys.executable, "-m", "nas", "export", "small", "--space", "tiny", "--format", "pt",
                           "--precision", "int8", "--out", str(tmp_path / "y")], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "nas: error: --format pt has no int8 form; formats at int8: onnx-int8 (int8)"
    proc = subprocess.run([sys.executable, "-m", "nas", "export", "small", "--space", "tiny", "--precision", "int8",
                           "--out", str(tmp_path / "z")], capture_output=True, text=True,
                          env={**os.environ, "NAS_LUT_DIR": str(tmp_path / "none")})
    assert proc.returncode == 2 and "build one with: nas lut build --device onnxruntime-int8 --space tiny" in \
        proc.stderr
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


@pytest.mark.slow
def test_a_search_at_int8_scores_accuracy_after_quantisation(conv_int8_dir, tmp_path, tiny):
    """The supernet objective at an int8 budget: each subnet quantised by the table's recipe, ranges from training
    images, top-1 on validation images by ONNX Runtime; the run records the precision and the recipe."""
    from tests.helpers import random_supernet_and_images

    random_supernet_and_images(tmp_path, tiny, per_class=8)
    table = conv_int8_dir / "onnxruntime-int8-tiny.json"
    env = {**os.environ, "NAS_LUT_DIR": str(conv_int8_dir)}
    proc = subprocess.run([sys.executable, "-m", "nas", "search", "--space", "tiny", "--budget-ms", "1000",
                           "--device", "onnxruntime", "--precision", "int8", "--lut", f"onnxruntime={table}",
                           "--supernet", str(tmp_path / "supernet.pt"), "--data", str(tmp_path / "data"),
                           "--val-images", "8", "--bn-images", "8", "--trials", "3", "--out", str(tmp_path / "run"),
                           "--export", "none", "--no-progress", "--json"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    best = result["best"]
    assert best["objective_name"] == "supernet_top1_val8_bn8_int8"
    assert "after int8 post-training quantisation" in best["objective_label"]
    # the winner's score is the int8 model's top-1, as int8_top1 gives it here (ONNX Runtime on one thread is
    # deterministic), next to the float model's on the same images
    from nas.search.int8_accuracy import int8_top1
    from nas.space import Arch
    from supernet.checkpoint import load_supernet

    net, _ = load_supernet(tmp_path / "supernet.pt")
    scored = int8_top1(net.extract(Arch.from_dict(best["arch"], tiny)), tmp_path / "data", tiny.input_size,
                       Int8Recipe(("Conv", "MatMul")), val_images=8, bn_images=8)
    assert best["objective"] == pytest.approx(scored["top1"]) and scored["images"] == 8
    assert 0 <= scored["float_top1"] <= 100 and 0 <= scored["agreement"] <= 100
    budget = result["budgets"][0]
    assert (budget["device"], budget["precision"], budget["int8_op_types"]) == ("onnxruntime-int8", "int8",
                                                                                ["Conv", "MatMul"])


def test_adapt_derives_an_int8_table_from_a_float_one(tmp_path):
    """``nas lut adapt --precision int8``: the fp32 table's ops rescaled per op kind from archs measured in int8,
    with the recipe chosen here recorded as a build records it."""
    fp32 = tmp_path / "onnxruntime-tiny.json"
    assert run_nas("lut", "build", "--device", "onnxruntime", "--space", "tiny", "--calibrate", "3", "--out",
                   str(fp32), "--no-progress").returncode == 0
    proc = run_nas("lut", "adapt", "--device", "onnxruntime", "--precision", "int8", "--from", str(fp32), "--n", "4",
                   "--repeats", "1", "--out", str(tmp_path / "int8.json"), "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    header = LatencyTable.load(tmp_path / "int8.json").header
    assert (header["device"], header["precision"], header["kind"]) == ("onnxruntime-int8", "int8", "adapted")
    assert header["quantization"]["format"] == "onnxruntime static QDQ" and "chosen_by" in header["quantization"]
    assert json.loads(proc.stdout)["from_device"] == "onnxruntime"


@pytest.mark.parametrize("edit, message", [
    (lambda h: h.update(precision="int4"), "field 'header.precision' is 'int4'; accepted: fp32, fp16, int8"),
    (lambda h: h.update(quantization={"format": "onnxruntime static QDQ", "op_types": "Conv"}),
     "header.quantization.op_types"),
    (lambda h: h.update(quantization={"format": "tflite", "op_types": []}), "header.quantization.format"),
])
def test_a_table_with_a_bad_precision_or_recipe_is_refused_naming_the_field(tiny_iphone12, tmp_path, edit, message):
    from nas.latency.table import TableError

    data = json.loads(tiny_iphone12.read_text())
    edit(data["header"])
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(TableError, match=message.replace(".", r"\.").replace("(", r"\(")):
        LatencyTable.load(tmp_path / "bad.json")


def test_nas_devices_shows_each_devices_precision():
    proc = run_nas("devices", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["device"]: r for r in json.loads(proc.stdout)["devices"]}
    assert (rows["onnxruntime"]["precision"], rows["onnxruntime-int8"]["precision"], rows["cuda-fp16"]["precision"],
            rows["iphone12"]["precision"]) == ("fp32", "int8", "fp16", "fp16")
