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
from tests.helpers import nas_here, randomize_, run_nas

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
    proc = nas_here("predict", "--device", "onnxruntime", "--precision", "int8", "--space", "tiny", "--lut",
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
                           "--data", "builtin:digits", "--bn-images", "64", "--out", str(tmp_path / "x"), "--json",
                           "--no-progress"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["formats"] == ["onnx-int8", "coreml-int8"]       # every int8 format installed
    assert report["files"]["onnx-int8"] == ["model.int8.onnx"]
    check = report["checks"]["onnx-int8"]
    assert check["ok"] and check["int8_op_types"] == ["Conv", "MatMul"] and 0 <= check["top1_agreement_pct"] <= 100
    assert check["calibrated_on"] == "64 training images of builtin:digits"
    validation = check["validation"]          # int8 against float on validation images, not only the check input
    assert validation["images"] > 0 and 0 <= validation["agreement"] <= 100 and 0 <= validation["top1"] <= 100
    latency = check["latency"]                # the written model timed here, beside the table's interval
    low, high = latency["interval_ms"]
    assert latency["measured_ms"] > 0 and low <= latency["predicted_ms"] <= high
    assert latency["inside_interval"] == (low <= latency["measured_ms"] <= high)
    assert report["checks"]["coreml-int8"]["ok"] and report["checks"]["coreml-int8"]["quantize_ops"] > 0
    import onnx

    card = (tmp_path / "x" / "README.md").read_text()
    assert "| onnx-int8 |" in card and "int8 Conv, MatMul; top-1 agrees with float" in card
    assert "validation images top-1" in card and "measured here" in card
    assert "session = ort.InferenceSession('model.int8.onnx')" in card
    ops = {n.op_type for n in onnx.load(str(tmp_path / "x" / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "AveragePool"} <= ops
    # a format without an int8 form, and an int8 export with no int8 table: one line each, nothing written
    proc = subprocess.run([sys.executable, "-m", "nas", "export", "small", "--space", "tiny", "--format", "pt",
                           "--precision", "int8", "--out", str(tmp_path / "y")], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "nas: error: --format pt has no int8 form; formats at int8: onnx-int8 (int8), coreml-int8 (int8)"
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


# --------------------------------------------------------------------------------------------- --precision auto
@pytest.fixture(scope="module")
def auto_dir(conv_int8_dir, tmp_path_factory):
    """A table folder with the tiny int8 table and an fp32 one that prices every op (and its end-to-end points)
    at twice the int8 figure: where float meets a budget it is the choice, and int8 makes room for larger archs."""
    folder = tmp_path_factory.mktemp("auto")
    int8 = LatencyTable.load(conv_int8_dir / "onnxruntime-int8-tiny.json")
    int8.save(folder / "onnxruntime-int8-tiny.json")
    fp32 = LatencyTable.load(conv_int8_dir / "onnxruntime-int8-tiny.json")
    fp32.header.update(device="onnxruntime", precision="fp32")
    del fp32.header["quantization"]
    for entry in fp32.entries.values():
        for key in ("median_ms", "p10_ms", "p90_ms"):
            entry[key] *= 2
    for point in fp32.calibration:
        point["measured_ms"] *= 2
    if fp32.header.get("correction"):
        fp32.header["correction"]["offset_ms"] *= 2
    fp32.save(folder / "onnxruntime-tiny.json")
    return folder


def test_auto_ships_each_arch_at_the_most_precise_precision_that_meets_the_budget(auto_dir, tiny):
    from nas.search.budgets import Budgets

    luts = {"onnxruntime": str(auto_dir / "onnxruntime-tiny.json"),
            "onnxruntime-int8": str(auto_dir / "onnxruntime-int8-tiny.json")}
    small, large = tiny.preset("small"), tiny.largest()
    probe = Budgets.load(tiny, [1e6], ["onnxruntime"], luts, auto=True).items[0]
    fp32_ms = {a: probe.predictors["fp32"].predict(a) for a in [small, large]}
    int8_ms = {a: probe.predictors["int8"].predict(a) for a in [small, large]}
    assert list(probe.predictors) == ["fp32", "int8"] and all(int8_ms[a] < fp32_ms[a] for a in int8_ms)
    # a budget float meets for the small arch, and only int8 for the large one
    budget = (max(fp32_ms[small], int8_ms[large]) + fp32_ms[large]) / 2
    assert fp32_ms[small] < budget < fp32_ms[large] and int8_ms[large] < budget
    budgets = Budgets.load(tiny, [budget], ["onnxruntime"], luts, auto=True)
    assert budgets.precisions(small) == {"onnxruntime": "fp32"}
    assert budgets.latencies(small) == {"onnxruntime": pytest.approx(fp32_ms[small])}
    assert budgets.precisions(large) == {"onnxruntime": "int8"}
    assert budgets.feasible(budgets.latencies(large))
    # nothing meets it: the fastest precision, infeasible
    tight = Budgets.load(tiny, [int8_ms[large] / 2], ["onnxruntime"], luts, auto=True)
    assert tight.precisions(large) == {"onnxruntime": "int8"} and not tight.feasible(tight.latencies(large))
    # without auto, one precision: the named device's
    fixed = Budgets.load(tiny, [budget], ["onnxruntime"], {"onnxruntime": luts["onnxruntime"]})
    assert fixed.precisions(large) == {"onnxruntime": "fp32"} and not fixed.feasible(fixed.latencies(large))
    assert budgets.config() != fixed.config()          # a resume with another precision mode is another study


def test_auto_keeps_a_proxy_and_scores_an_accuracy_as_each_arch_ships(auto_dir, tiny, tmp_path):
    from nas.search.auto_precision import ScoredAtChosenPrecision, objective_as_shipped
    from nas.search.budgets import Budgets
    from nas.search.objectives import CapacityProxy, SupernetAccuracy

    luts = {"onnxruntime": str(auto_dir / "onnxruntime-tiny.json"),
            "onnxruntime-int8": str(auto_dir / "onnxruntime-int8-tiny.json")}
    budgets = Budgets.load(tiny, [1e6], ["onnxruntime"], luts, auto=True)
    proxy = CapacityProxy(tiny)
    assert objective_as_shipped(proxy, budgets) is proxy       # the same at every precision
    accuracy = SupernetAccuracy(tmp_path / "supernet.pt", "builtin:digits")
    scored = objective_as_shipped(accuracy, budgets)
    assert isinstance(scored, ScoredAtChosenPrecision)
    assert scored.name == "supernet_top1_auto" and scored.by_precision["fp32"] is accuracy
    assert scored.by_precision["int8"].name == "supernet_top1_int8" and accuracy.int8_recipe is None
    assert scored.by_precision["int8"].int8_recipe["op_types"] == ["Conv", "MatMul"]   # type: ignore[attr-defined]
    assert scored.shipped_precision(tiny.preset("small")) == "fp32"      # a budget everything meets in float


def test_search_with_auto_precision_records_each_trials_precision(auto_dir, tiny, tmp_path):
    """The search meets the budget at whichever precision each arch ships in: run.json, trials.csv, the summary,
    the model card and the export's note say which. The budget here is below float's fastest arch, so every
    feasible trial ships in int8 (which precision wins where both fit is the unit test above)."""
    import csv

    from nas.search.budgets import Budgets

    fp32, int8 = auto_dir / "onnxruntime-tiny.json", auto_dir / "onnxruntime-int8-tiny.json"
    luts = {"onnxruntime": str(fp32), "onnxruntime-int8": str(int8)}
    probe = Budgets.load(tiny, [1e6], ["onnxruntime"], luts, auto=True)
    fastest_int8 = min(probe.items[0].predictors["int8"].predict(a) for a in probe.fastest_candidates(tiny))
    budget = 1.5 * fastest_int8           # float (2x int8 here) meets it with no arch
    env = {**os.environ, "NAS_LUT_DIR": str(auto_dir)}
    proc = subprocess.run([sys.executable, "-m", "nas", "search", "--space", "tiny", "--budget-ms", f"{budget:.4f}",
                           "--device", "onnxruntime", "--precision", "auto", "--trials", "12",
                           "--out", str(tmp_path / "run"), "--export", "none", "--no-progress"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ships in int8 (--precision auto, of fp32, int8)" in proc.stdout
    assert f"nas export {tmp_path / 'run'} --precision int8 --data DIR" in proc.stdout
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["budgets"][0]["precision"] == "auto" and run["best"]["precisions"] == {"onnxruntime": "int8"}
    assert set(run["budgets"][0]["tables_by_precision"]) == {"fp32", "int8"}
    with open(tmp_path / "run" / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["precision_onnxruntime"] for r in rows} == {"int8"}
    budgets = Budgets.load(tiny, [budget], ["onnxruntime"], luts, auto=True)
    for row in rows:          # each trial priced at its own precision, as Budget.choose gives it
        arch = tiny.arch_from_dict(json.loads(row["arch"]))
        assert float(row["latency_ms_onnxruntime"]) == pytest.approx(budgets.latencies(arch)["onnxruntime"],
                                                                     rel=1e-3)
        assert int(row["feasible"]) == budgets.feasible(budgets.latencies(arch))
    assert run["best"]["latency_ms"] <= budget
    # the export of the run says what it ships in, on the command line and in the model card
    proc = subprocess.run([sys.executable, "-m", "nas", "export", str(tmp_path / "run"), "--format", "pt", "--out",
                           str(tmp_path / "x"), "--no-progress"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "the run's winner ships in int8 on onnxruntime (chosen with the arch: --precision auto)" in proc.stderr
    assert "int8 on onnxruntime (chosen with the arch: --precision auto)" in (tmp_path / "x" / "README.md").read_text()


def test_auto_precision_without_tables_is_one_line(tmp_path):
    env = {**os.environ, "NAS_LUT_DIR": str(tmp_path / "none")}
    proc = subprocess.run([sys.executable, "-m", "nas", "search", "--space", "tiny", "--budget-ms", "10",
                           "--device", "onnxruntime", "--precision", "auto", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "nas: error: --precision auto on onnxruntime: no latency table at any precision of it (fp32 (onnxruntime), "
        "int8 (onnxruntime-int8)); build one with: nas lut build --device onnxruntime --space tiny")
    assert not (tmp_path / "run").exists()
    proc = run_nas("predict", "--device", "onnxruntime", "--precision", "auto", "--arch", "l1")
    assert proc.returncode == 2 and "--precision: invalid choice: 'auto'" in proc.stderr
