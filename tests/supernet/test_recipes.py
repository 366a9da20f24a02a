"""The supernet recipe's variants (AlphaNet's alpha-divergence, complexity-aware sampling), stand-alone training
with the supernet's recipe, and a head that follows the data's classes."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from nas.errors import UsageError
from supernet.config import TrainConfig
from supernet.distill import DISTILLATIONS, alpha_divergence, kl
from supernet.sampling import BINS, SAMPLERS, STEPS_PER_BIN, approx_params
from tests.conftest import OBJECTS_SMALL

TINY = TrainConfig(space="tiny", data=OBJECTS_SMALL, epochs=1, batch_size=32, num_random=1, val_images=64,
                   bn_images=32, max_train_images=96)


def test_distillations_are_zero_when_the_student_is_the_teacher_and_pull_towards_it():
    torch.manual_seed(0)
    teacher = torch.randn(8, 10)
    for name, loss in DISTILLATIONS.items():
        _, same = loss(teacher.clone().requires_grad_(), teacher)
        assert float(same.detach()) == pytest.approx(0.0, abs=1e-5), name
        student = torch.randn(8, 10, requires_grad=True)
        grad_loss, value = loss(student, teacher)
        assert float(value.detach()) > 0
        grad_loss.backward()
        with torch.no_grad():       # a small step against the gradient brings the student closer
            moved = student - 0.1 * student.grad
        assert float(loss(moved, teacher)[1]) < float(value.detach()), name


def test_alpha_divergence_is_the_larger_of_its_two_ends_per_image():
    torch.manual_seed(1)
    student, teacher = torch.randn(16, 5), torch.randn(16, 5)
    _, value = alpha_divergence(student, teacher)
    _, kl_value = kl(student, teacher)
    assert float(value) >= float(kl_value) - 1e-6       # alpha = +1 is KL(teacher || student); the max is >= it


def test_complexity_sampling_moves_through_size_bins_in_small_steps(tiny):
    sizes = []
    for step in range(0, 2 * BINS * STEPS_PER_BIN, STEPS_PER_BIN):
        archs = SAMPLERS["complexity"](tiny, 0, step, 3)
        sizes.append(sum(approx_params(a) for a in archs) / 3)
    assert sizes.index(max(sizes)) not in (0, len(sizes) - 1)          # it climbs, then comes back down
    assert SAMPLERS["complexity"](tiny, 0, 5, 2) == SAMPLERS["complexity"](tiny, 0, 5, 2)   # a function of step


@pytest.mark.parametrize("change", [{"kd": "alpha"}, {"sampling": "complexity"}])
def test_a_variant_trains_and_resumes_to_the_same_weights(tmp_path, change):
    from supernet.train import SupernetTrainer

    cfg = dataclasses.replace(TINY, **change)
    whole = SupernetTrainer(cfg)
    for _ in range(whole.total_steps):
        whole.train_step()
    half = SupernetTrainer(cfg)
    half.train_step()
    half.save(tmp_path / "half.pt")
    resumed = SupernetTrainer(cfg)
    resumed.restore(tmp_path / "half.pt")
    while resumed.step < resumed.total_steps:
        resumed.train_step()
    for (name, a), b in zip(whole.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.parametrize("change, words", [({"kd": "nope"}, "--kd nope: not a distillation; accepted: kl, alpha"),
                                           ({"sampling": "x"}, "--sampling x: not a subnet sampler; accepted: "),
                                           ({"num_classes": 5}, "--num-classes 5: builtin:objects")])
def test_unknown_recipe_names_are_refused(change, words):
    from supernet.train import SupernetTrainer

    with pytest.raises(UsageError) as err:
        SupernetTrainer(dataclasses.replace(TINY, **change))
    assert words in str(err.value)


def test_the_head_follows_the_data_through_checkpoint_and_extraction(tmp_path):
    from supernet.checkpoint import load_supernet
    from supernet.train import train_supernet

    cfg = dataclasses.replace(TINY, data="builtin:objects:train=96,val=32,test=32,classes=12")
    train_supernet(cfg, tmp_path / "s.pt", progress=False)
    net, _ = load_supernet(tmp_path / "s.pt")
    assert net.num_classes == 12 and net.space.num_classes == 10          # the data's, not the YAML's
    model = net.extract(net.space.smallest())
    assert model.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 12)
    wider = dataclasses.replace(cfg, num_classes=20)
    train_supernet(wider, tmp_path / "w.pt", progress=False)
    assert load_supernet(tmp_path / "w.pt")[0].num_classes == 20


def test_standalone_training_follows_the_recipe_and_its_seed(tiny):
    from supernet.standalone import standalone_config, train_standalone

    cfg = standalone_config(dataclasses.replace(TINY, gumbel=True), seed=3)
    assert cfg.seed == 3 and not cfg.gumbel and cfg.epochs == TINY.epochs
    steps: list[int] = []
    a = train_standalone(tiny.smallest(), tiny, cfg, 10, on_step=lambda s, n: steps.append(s))
    b = train_standalone(tiny.smallest(), tiny, cfg, 10)
    assert steps == list(range(1, 4))                                   # 96 images / 32 per step, one epoch
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)                                        # the same seed: the same model
    c = train_standalone(tiny.smallest(), tiny, standalone_config(TINY, seed=4), 10)
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_training_commands_let_idle_openmp_threads_sleep_on_a_busy_machine(monkeypatch):
    """The cores other work keeps busy are read from /proc/stat's counters over a short sleep; here the counters
    say how busy the machine was (busy cores of 2), then the same with real spinning processes below."""
    import argparse
    import os

    import nas.machine
    from nas.cli import yield_idle_threads

    for busy, command, verify, policy, threads in (
            (2.0, "supernet", 0, "PASSIVE", "1"), (1.2, "search", 0, "PASSIVE", "1"), (2.0, "search", 2, None, None),
            (2.0, "lut", 0, None, None), (0.1, "supernet", 0, None, None), (0.9, "export", 0, None, None)):
        counters = iter([(1000, 2000), (1000 + 100 * (2 - busy), 2200)])     # idle, total jiffies of 2 cores
        monkeypatch.setattr(nas.machine, "_cpu_times", lambda counters=counters: next(counters))
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        yield_idle_threads(argparse.Namespace(command=command, verify=verify))
        assert (os.environ.get("OMP_WAIT_POLICY"), os.environ.get("OMP_NUM_THREADS")) == (policy, threads), busy
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")      # the user's own setting wins
    yield_idle_threads(argparse.Namespace(command="supernet"))
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_training_started_beside_spinning_processes_runs_fewer_sleeping_threads(tmp_path):
    """For real: as many spinning processes as cores, then a training command in a fresh process says so."""
    import os
    import subprocess
    import sys

    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("one core: there is no thread to take away")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        proc = subprocess.run([sys.executable, "-m", "nas", "supernet", "train", "--space", "tiny", "--data",
                               "builtin:nosuch", "--epochs", "1", "--out", str(tmp_path / "s.pt")],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert "threads yield when idle (OMP_WAIT_POLICY=PASSIVE) and run 1 thread" in proc.stderr, proc.stderr
