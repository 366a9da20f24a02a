"""Latency tables on the tiny space: real measurements with the real backends, small shapes."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from nas.errors import UsageError
from nas.latency import predict_model
from nas.latency.backends import CudaBackend, OnnxRuntimeBackend
from nas.latency.build import build_table, interleave
from nas.latency.ops import Op, arch_ops, space_ops
from nas.latency.predict import LutPredictor, encode_archs, sample_batch
from nas.latency.table import LatencyTable, TableError
from nas.latency.timing import TimingPolicy, time_until_stable
from supernet.static import EfficientFormerNet
from tests.helpers import run_nas


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("lut") / "cpu-tiny.json"
    table, _ = build_table("cpu", "tiny", path, calibrate=4, progress=False)
    return path, table


# ------------------------------------------------------------------------------------------------ ops


def test_ops_of_l1(space):
    kinds = [op.kind for op in arch_ops(space.preset("l1"), space)]
    assert kinds == ["stem", "mb4d", "mb4d", "mb4d", "down", "mb4d", "mb4d", "down"] + ["mb4d"] * 6 + \
        ["down", "mb4d", "mb4d", "mb4d", "flat", "mb3d", "head"]
    assert arch_ops(space.preset("l1"), space)[-2].key == "mb3d|n=49|c=448|e=4|h=8|kd=32|mixer=mhsa|ar=4"


def test_space_ops_cover_every_arch(space):
    keys = {op.key for op in space_ops(space)}
    assert len(keys) == len(space_ops(space))     # distinct
    for seed in range(100):
        assert {op.key for op in arch_ops(space.sample(seed=seed), space)} <= keys


def test_op_keys_round_trip_and_build(tiny):
    for op in space_ops(tiny):
        again = Op.from_key(op.key)
        assert again == op
        module, x = again.build()
        with torch.no_grad():
            assert torch.isfinite(module(x)).all()


def test_ops_chain_into_the_model(tiny):
    """Running the ops' modules one after another has the shapes of the whole model, ending in logits."""
    arch = tiny.sample(seed=2)
    x = torch.randn(1, 3, tiny.input_size, tiny.input_size)
    with torch.no_grad():
        for op in arch_ops(arch, tiny):
            module, example = op.build()
            assert x.shape == example.shape, op.key
            x = module(x)
        assert x.shape == EfficientFormerNet.from_arch(arch, tiny).eval()(torch.randn(1, 3, 64, 64)).shape


# ------------------------------------------------------------------------------------------------ measuring


def test_time_until_stable_stops_on_a_stable_median():
    policy = TimingPolicy(min_repeats=20, round_size=10, max_repeats=400, max_seconds=5.0)
    timing = time_until_stable(lambda: 0.001, policy)
    assert timing.n == 20 and timing.median_ms == pytest.approx(1.0)
    assert timing.p10_ms <= timing.median_ms <= timing.p90_ms


def test_onnxruntime_backend_measures_an_op(tiny):
    module, x = Op.from_key(space_ops(tiny)[-2].key).build()
    timing = OnnxRuntimeBackend(threads=1).measure(module, x)
    assert timing.n >= 20 and 0 < timing.p10_ms <= timing.median_ms <= timing.p90_ms


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_backend_measures_an_op(tiny):
    module, x = Op.from_key(space_ops(tiny)[-2].key).build()
    timing = CudaBackend().measure(module, x)
    assert timing.n >= 20 and timing.median_ms > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without a GPU")
def test_cuda_device_without_gpu_is_refused(tmp_path):
    proc = run_nas("lut", "build", "--device", "cuda", "--space", "tiny", "--out", str(tmp_path / "t.json"))
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ tables


def test_build_writes_a_complete_measured_table(tiny, tiny_table):
    path, table = tiny_table
    loaded = LatencyTable.load(path)
    assert set(loaded.entries) == {op.key for op in space_ops(tiny)}
    h = loaded.header
    assert h["kind"] == "measured" and h["device"] == "cpu" and h["threads"] == 1 and h["space"] == "tiny"
    assert h["torch_version"] == torch.__version__ and h["batch"] == 1 and h["dtype"] == "float32"
    assert len(loaded.calibration) == 4 and {"scale", "offset_ms"} <= set(h["correction"])
    for entry in loaded.entries.values():
        assert entry["n"] >= 20 and 0 < entry["p10_ms"] <= entry["median_ms"] <= entry["p90_ms"]


def test_calibration_archs_are_spread_through_the_ops_they_are_compared_with():
    ops = [("op", str(i)) for i in range(100)]
    archs = [("arch", a) for a in "abcd"]
    jobs = interleave(ops, archs)
    assert sorted(jobs) == sorted(ops + archs) and [j for j in jobs if j[0] == "op"] == ops   # op order kept
    assert [jobs.index(a) for a in archs] == [25, 51, 77, 103]       # one after each quarter, the last at the end
    assert interleave(ops, []) == ops and interleave([], archs) == archs


def test_predict_is_sum_of_entries_plus_correction(tiny, tiny_table):
    path, table = tiny_table
    predictor = LutPredictor.from_file(path)
    arch = tiny.preset("large")
    raw = sum(table.entries[op.key]["median_ms"] for op in arch_ops(arch, tiny))
    corr = table.header["correction"]
    assert predictor.predict(arch) == pytest.approx(corr["scale"] * raw + corr["offset_ms"])
    model = EfficientFormerNet.from_arch(arch, tiny)
    assert predict_model(model, 64, "cpu", lut=path) == pytest.approx(predictor.predict(arch))
    with pytest.raises(UsageError, match="device .cpu. has no cost model"):   # measured devices are not modelled
        predict_model(torch.nn.Linear(2, 2), 64, "cpu", lut=path)


def test_vectorised_prediction_agrees(tiny, tiny_table):
    predictor = LutPredictor.from_file(tiny_table[0])
    archs = [tiny.sample(seed=s) for s in range(200)]
    assert np.allclose(predictor.predict_batch(encode_archs(archs, tiny)), [predictor.predict(a) for a in archs])
    batch = sample_batch(tiny, 500, seed=0)
    decoded = [batch.arch(tiny, i) for i in range(len(batch))]
    assert all(tiny.validate(a) == a for a in decoded)
    assert np.allclose(predictor.predict_batch(batch), [predictor.predict(a) for a in decoded])
    assert len({a.n3d for a in decoded}) == len(tiny.n3d)


def test_missing_entries_are_listed_with_the_command(tiny, tiny_table, tmp_path):
    table = LatencyTable.load(tiny_table[0])
    arch = tiny.preset("small")
    gone = [op.key for op in arch_ops(arch, tiny)][1:3]
    for key in gone:
        del table.entries[key]
    table.save(tmp_path / "holes.json")
    proc = run_nas("predict", "--device", "cpu", "--space", "tiny", "--arch", "small",
                   "--lut", str(tmp_path / "holes.json"))
    assert proc.returncode == 2
    assert all(key in proc.stderr for key in gone)
    assert f"nas lut build --device cpu --space tiny --out {tmp_path / 'holes.json'} --resume" in proc.stderr


def test_corrupted_and_truncated_tables_are_refused(tiny_table, tmp_path):
    text = tiny_table[0].read_text()
    cases = {
        "truncated.json": (text[: len(text) // 2], "is not valid JSON (truncated or corrupted?)"),
        "noheader.json": (json.dumps({"schema_version": 1, "entries": {}}), "field 'header' is missing"),
        "version.json": (json.dumps({**json.loads(text), "schema_version": 99}),
                         "field 'schema_version' = 99; expected 1"),
    }
    bad_entry = json.loads(text)
    bad_entry["entries"]["stem|in=64|c=16"]["median_ms"] = "fast"
    cases["entry.json"] = (json.dumps(bad_entry), "field 'entries.stem|in=64|c=16.median_ms' = 'fast'; expected a "
                           "finite non-negative number")
    for name, (content, needle) in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(TableError, match="latency table .*" + name):
            LatencyTable.load(tmp_path / name)
        proc = run_nas("predict", "--device", "cpu", "--space", "tiny", "--arch", "small",
                       "--lut", str(tmp_path / name))
        assert proc.returncode == 2 and needle in proc.stderr and str(tmp_path / name) in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_kill_and_resume_loses_nothing_and_repeats_nothing(tiny, tmp_path, stop):
    """SIGKILL: the process dies where it stands; SIGTERM: it unwinds (one line, exit 143, no staging file left
    beside the table). Either way the resume measures exactly what was missing."""
    out = tmp_path / "t.json"
    cmd = [sys.executable, "-m", "nas", "lut", "build", "--device", "cpu", "--space", "tiny", "--out", str(out),
           "--calibrate", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    before: dict = {}
    while time.time() < deadline:
        if out.exists():
            before = LatencyTable.load(out).entries    # atomic writes: never a half file
            if len(before) >= 15:
                break
        time.sleep(0.05)
    proc.send_signal(stop)
    _, err = proc.communicate()
    if stop == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert err.decode().strip().splitlines()[-1].startswith("nas: stopped by SIGTERM; everything finished")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]        # no .partial staging left
    before = LatencyTable.load(out).entries
    assert 15 <= len(before) < len(space_ops(tiny))
    again = run_nas("lut", "build", "--device", "cpu", "--space", "tiny", "--out", str(out), "--calibrate", "2",
                    "--no-progress")
    assert again.returncode != 0 and "pass --resume" in again.stderr      # no silent overwrite
    resumed = run_nas("lut", "build", "--device", "cpu", "--space", "tiny", "--out", str(out), "--calibrate", "2",
                      "--resume", "--no-progress", "--json")
    assert resumed.returncode == 0, resumed.stderr
    after = LatencyTable.load(out)
    assert set(after.entries) == {op.key for op in space_ops(tiny)}          # none lost
    for key, entry in before.items():
        assert after.entries[key] == entry                                   # none measured twice
    assert len(after.calibration) == 2
    assert json.loads(resumed.stdout)["entries"] == len(space_ops(tiny))


def test_resume_refuses_a_different_setup(tiny_table, tmp_path):
    path = tmp_path / "t.json"
    path.write_text(tiny_table[0].read_text())
    proc = run_nas("lut", "build", "--device", "cpu-2t", "--space", "tiny", "--out", str(path), "--resume")
    assert proc.returncode == 2 and "device = 'cpu'" in proc.stderr


def test_predict_and_validate_commands(tiny_table, tmp_path):
    path = str(tiny_table[0])
    out = json.loads(run_nas("predict", "--device", "cpu", "--space", "tiny", "--arch", "large", "--lut", path,
                             "--json", check=True).stdout)
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(json.dumps(out["arch"]))
    again = json.loads(run_nas("predict", "--device", "cpu", "--arch", str(arch_file), "--lut", path, "--json",
                               check=True).stdout)
    assert again["latency_ms"] == out["latency_ms"] > 0
    plot = tmp_path / "v.png"
    report = json.loads(run_nas("lut", "validate", "--device", "cpu", "--space", "tiny", "--lut", path, "--n", "4",
                                "--plot", str(plot), "--json", "--no-progress", check=True).stdout)
    assert report["n"] == 4 and 0 <= report["within_10pct"] <= 1 and -1 <= report["kendall_tau"] <= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = run_nas("predict", "--device", "phone", "--arch", "l1")
    assert bad.returncode == 2 and "unknown device 'phone'; known: cpu" in bad.stderr


@pytest.mark.ray
def test_ray_build_with_two_workers_matches_serial(tiny, tiny_table, tmp_path):
    pytest.importorskip("ray")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    table, _ = build_table("cpu", "tiny", tmp_path / "ray.json", calibrate=2, workers=2, progress=False)
    assert set(table.entries) == set(tiny_table[1].entries)
    assert len(table.calibration) == 2


@pytest.mark.ray
def test_build_on_a_ray_cluster_runs_on_the_node_owning_the_device(tiny, tmp_path):
    """A real `ray start --head` on loopback holding the resource device:cpu; the build joins with --ray-address."""
    pytest.importorskip("ray")
    import shutil
    import socket
    from pathlib import Path

    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the cluster requires token authentication; `nas` is run without RAY_AUTH_MODE, as a user who never heard of
    # it would: it finds the token `ray start` wrote (~/.ray/auth_token) and joins in token mode by itself
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                        '--resources={"device:cpu": 1}', "--include-dashboard=false", "--disable-usage-stats"],
                       env={**env, "RAY_AUTH_MODE": "token"}, check=True, capture_output=True, timeout=120)
        address = f"127.0.0.1:{port}"
        out = tmp_path / "cluster.json"
        proc = subprocess.run([sys.executable, "-m", "nas", "lut", "build", "--device", "cpu", "--space", "tiny",
                               "--ray-address", address, "--out", str(out), "--calibrate", "1", "--no-progress",
                               "--json"], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout)["entries"] == len(space_ops(tiny))
        refused = subprocess.run([sys.executable, "-m", "nas", "lut", "build", "--device", "cpu-2t", "--space",
                                  "tiny", "--ray-address", address, "--out", str(tmp_path / "x.json")],
                                 env=env, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2
        assert "no node of the Ray cluster has the resource 'device:cpu-2t'" in refused.stderr
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
