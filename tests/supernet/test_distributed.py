"""Data-parallel supernet training on Ray Train (2 gloo workers on CPU) and timm's training options.

Equivalence runs use SGD: Adam divides each gradient by its own running magnitude, which turns float rounding of
near-zero gradients into steps of ±lr, so Adam's weights agree only to about lr; with SGD the weights show the
math itself agrees (to ~1e-7 on this machine). Tiny space, built-in digits, 16-image batches.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nas.errors import UsageError
from supernet.checkpoint import load_checkpoint_payload
from supernet.config import TrainConfig
from supernet.distributed import train_on_ray
from supernet.train import SupernetTrainer
from tests.helpers import run_nas

# 4 steps of 16 images. Longer runs amplify float noise (the order of a reduction changes with the thread count):
# the same local run on 1 and 2 threads differs by 9e-7 after 4 steps here, by 8.7e-3 after 8 steps at this lr.
BASE = dict(space="tiny", data="builtin:digits", epochs=1, batch_size=16, max_train_images=64, val_images=32,
            bn_images=16, num_random=1, opt="sgd", lr=0.05)
CLI = ["--space", "tiny", "--data", "builtin:digits", "--epochs", "1", "--batch-size", "16", "--max-train-images",
       "64", "--val-images", "32", "--bn-images", "16", "--num-random", "1", "--opt", "sgd", "--lr", "0.05"]
ATOL = 1e-5


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_payload(path)["state_dict"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: the same training in one fresh local process with the whole batch."""
    out = tmp_path_factory.mktemp("local") / "local.pt"
    done = run_nas("supernet", "train", *CLI, "--sync-bn", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    return out


# ------------------------------------------------------------------------------------------- sync BatchNorm


def _sync_bn_worker(rank: int, port: int, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    from supernet.syncbn import global_batch_norm

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    shard = x.chunk(2)[rank].clone().requires_grad_(True)
    w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    mean, var = torch.zeros(x.shape[1]), torch.ones(x.shape[1])
    y = global_batch_norm(shard, mean, var, w, b, 0.1, 1e-5)
    (y * torch.arange(y.numel()).view_as(y).float().sin()).sum().backward()
    torch.save({"y": y.detach(), "gx": shard.grad, "gw": w.grad, "gb": b.grad, "mean": mean, "var": var},
               f"{out}/{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.distributed
def test_sync_batchnorm_on_two_workers_is_batchnorm_of_the_whole_batch(tmp_path):
    """Forward, running statistics and gradients of 2 gloo workers' halves = F.batch_norm on the whole batch."""
    import socket

    import torch.multiprocessing as mp

    torch.manual_seed(0)
    x, w, b = torch.randn(8, 5, 3, 3) * 3 + 1, torch.rand(5) + 0.5, torch.randn(5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_sync_bn_worker, args=(port, x, w, b, str(tmp_path)), nprocs=2)
    parts = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]

    xr, wr, br = x.clone().requires_grad_(True), w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    mean, var = torch.zeros(5), torch.ones(5)
    y = F.batch_norm(xr, mean, var, wr, br, True, 0.1, 1e-5)
    weights_of = torch.cat([torch.arange(p["y"].numel()).view_as(p["y"]).float().sin() for p in parts])
    (y * weights_of).sum().backward()
    assert torch.allclose(torch.cat([p["y"] for p in parts]), y, atol=1e-5)
    assert torch.allclose(torch.cat([p["gx"] for p in parts]), xr.grad, atol=1e-5)
    # each worker holds its share of dL/dw; the step's all-reduce sums them
    assert torch.allclose(parts[0]["gw"] + parts[1]["gw"], wr.grad, atol=1e-4)
    assert torch.allclose(parts[0]["gb"] + parts[1]["gb"], br.grad, atol=1e-4)
    for p in parts:   # both workers keep the global running statistics
        assert torch.allclose(p["mean"], mean, atol=1e-6) and torch.allclose(p["var"], var, atol=1e-5)


# ------------------------------------------------------------------------------------------- Ray Train


@pytest.mark.ray
@pytest.mark.slow
def test_two_ray_workers_train_what_one_process_does_even_when_one_dies(one_process, tmp_path, monkeypatch):
    """2 workers, global batch 16 (8 each), --sync-bn: the weights of one process with batch 16. Worker 1 exits
    abruptly after step 3; Ray Train restarts the group from the step-2 checkpoint (--max-failures 1), and the
    run still ends with the same weights."""
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("NAS_TRAIN_KILL_WORKER", f"1:3:{marker}")
    out = tmp_path / "ray.pt"
    result = train_on_ray(TrainConfig(**BASE, sync_bn=True), out, 2, progress=False, save_every=2, max_failures=1)
    assert marker.exists(), "the fault was injected"
    assert result["steps"] == 4 and result["workers"] == 2 and len(result["history"]) == 1
    assert max_difference(weights(out), weights(one_process)) < ATOL
    meta = load_checkpoint_payload(out)["meta"]["trained"]
    assert meta["workers"] == 2 and meta["steps"] == 4
    rows = out.with_name("ray.metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,loss,lr,images_per_s,top1_largest") and len(rows) == 2


def _wait_for_ray_train_workers_to_exit(timeout_s: float = 90) -> None:
    def alive() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "RayTrainWorker" in cmdline or "TrainController" in cmdline:
                found.append(cmdline)
        return found

    deadline = time.time() + timeout_s
    while alive() and time.time() < deadline:
        time.sleep(0.5)
    assert not alive(), alive()


@pytest.mark.ray
@pytest.mark.slow
def test_killed_ray_driver_resumes_on_another_number_of_workers(one_process, tmp_path):
    """SIGKILL of the driver (and the local Ray it started) mid-run; --resume continues from --out in one local
    process, and with --sync-bn that ends with the weights of the uninterrupted run."""
    out = tmp_path / "driver.pt"
    proc = subprocess.Popen([sys.executable, "-m", "nas", "supernet", "train", *CLI, "--sync-bn", "--num-workers",
                             "2", "--save-every", "1", "--out", str(out), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not out.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)   # the driver and every Ray process in its group
    proc.wait()
    _wait_for_ray_train_workers_to_exit()   # they notice their raylet is gone within seconds, and exit
    saved = load_checkpoint_payload(out)["training"]["step"]
    assert 0 < saved < 4, "the kill should land mid-training"
    resumed = run_nas("supernet", "train", *CLI, "--sync-bn", "--out", str(out), "--resume", "--no-progress",
                      "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "note" not in resumed.stderr   # sync BatchNorm: nothing depends on the worker count
    assert json.loads(resumed.stdout)["resumed_from_step"] == saved
    assert max_difference(weights(out), weights(one_process)) < ATOL


# ------------------------------------------------------------------------------------------- timm's options


def _trainer(**changes) -> SupernetTrainer:
    return SupernetTrainer(TrainConfig(**{**BASE, "opt": "adamw", "lr": 1e-3, **changes}))


def _params(trainer: SupernetTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}


@pytest.fixture(scope="module")
def plain_step():
    """Weights after 2 steps of the default recipe, the baseline each option must move away from."""
    trainer = _trainer()
    trainer.train_step()
    trainer.train_step()
    return _params(trainer)


def test_mixup_changes_what_the_largest_subnet_learns(plain_step):
    trainer = _trainer(mixup=0.8, cutmix=1.0)
    seen: list[torch.Tensor] = []
    original = trainer.mixup.__call__

    def spy(x, y):
        mixed, targets = original(x, y)
        seen.append(targets)
        return mixed, targets

    trainer.mixup = spy   # type: ignore[assignment]
    trainer.train_step()
    trainer.train_step()
    assert seen and seen[0].shape == (16, 10) and float(seen[0].max()) < 1.0   # soft, mixed targets
    assert max_difference(_params(trainer), plain_step) > 1e-4


def test_ema_weights_are_the_checkpoint_and_follow_the_decay(tmp_path):
    """timm's ModelEmaV3 at decay d, stepped as timm's train script does (step = updates so far): the first two
    updates copy the weights, then ema = d * ema + (1 - d) * weights."""
    d = 0.75
    trainer = _trainer(ema_decay=d)
    for _ in range(2):
        trainer.train_step()
    before = _params(trainer)
    trainer.train_step()
    after = _params(trainer)
    ema = {k: v.detach() for k, v in trainer.ema.module.state_dict().items()}
    for k in ("stem.conv1.weight", "head.weight"):
        assert torch.allclose(ema[k], d * before[k] + (1 - d) * after[k], atol=1e-6), k
    trainer.save(tmp_path / "ema.pt")
    payload = load_checkpoint_payload(tmp_path / "ema.pt")
    assert torch.equal(payload["state_dict"]["head.weight"], ema["head.weight"])          # what search reads
    assert torch.equal(payload["training"]["raw_state_dict"]["head.weight"], after["head.weight"])   # resume
    assert payload["meta"]["trained"]["weights"] == "EMA"


def test_bf16_autocast_runs_the_forward_in_bfloat16(plain_step):
    trainer = _trainer(amp="bf16")
    dtypes: set[torch.dtype] = set()
    trainer.net.head.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    trainer.train_step()
    trainer.train_step()
    assert dtypes == {torch.bfloat16}
    assert all(v.dtype == torch.float32 for v in trainer.net.parameters())   # weights and optimiser stay fp32
    diff = max_difference(_params(trainer), plain_step)
    assert 0 < diff < 0.05


def test_teacher_hard_distillation_uses_the_timm_model_it_names(plain_step, tmp_path):
    """--teacher test_resnet (a small timm model) with a weights file: its top class enters the largest subnet's
    loss, so the weights move differently; nothing is downloaded."""
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "teacher.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=10).state_dict(), str(weights))
    trainer = _trainer(teacher="test_resnet", teacher_weights=str(weights))
    calls: list[int] = []
    trainer.teacher_model.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    trainer.train_step()
    trainer.train_step()
    assert calls == [16, 16] and not trainer.teacher_model.training
    assert max_difference(_params(trainer), plain_step) > 1e-4
    wrong = tmp_path / "wrong.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=3).state_dict(), str(wrong))
    with pytest.raises(UsageError, match="does not fit test_resnet"):
        _trainer(teacher="test_resnet", teacher_weights=str(wrong))


def test_gradient_accumulation_runs_micro_batches():
    trainer = _trainer(accum_steps=4)
    sizes: list[int] = []
    trainer.net.head.register_forward_hook(lambda m, i, o: sizes.append(o.shape[0]))
    trainer.train_step()
    assert set(sizes) == {4} and len(sizes) == 4 * 3   # 4 micro-batches x (largest, smallest, 1 random)


@pytest.mark.parametrize("flags, words", [
    (["--num-workers", "3"], "multiple of 3"),
    (["--accum-steps", "5"], "divisor of 16"),
    (["--amp", "fp16"], "--amp bf16"),
    (["--aa", "rand-m9-mstd0.5"], "ImageFolder"),
    (["--teacher", "resnet18"], "--teacher-weights"),
    (["--max-failures", "1"], "--num-workers"),
    (["--opt", "nope"], "--opt nope"),
    (["--mixup", "0.8", "--accum-steps", "16"], "even"),
])
def test_training_options_that_cannot_work_are_refused_in_one_line(tmp_path, flags, words):
    result = run_nas("supernet", "train", *CLI, *flags, "--out", str(tmp_path / "x.pt"), "--no-progress")
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_training_with_fp16_grad_scaler_and_channels_last(tmp_path):
    trainer = SupernetTrainer(TrainConfig(**{**BASE, "amp": "fp16", "opt": "adamw", "lr": 1e-3}), device="cuda")
    dtypes: set[torch.dtype] = set()
    trainer.net.head.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    losses = [trainer.train_step() for _ in range(3)]
    assert dtypes == {torch.float16} and trainer.scaler is not None and all(map(torch.isfinite, map(torch.tensor,
                                                                                                   losses)))
    assert trainer.net.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    trainer.save(tmp_path / "gpu.pt")
    assert "grad_scaler" in load_checkpoint_payload(tmp_path / "gpu.pt")["training"]
