"""`nas supernet train`: the sandwich rule learns, a killed run resumes to the same weights, the checkpoint feeds
the accuracy-driven search and export, and bad input is refused in one line. Tiny space, built-in digits."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from nas.data import DigitsDataset, dataset, image_batches
from supernet.checkpoint import load_checkpoint_payload, load_supernet
from tests.helpers import run_nas

# a short but real run: 256 training images, batches of 32 -> 8 steps an epoch
SMALL = ["--space", "tiny", "--data", "builtin:digits", "--max-train-images", "256", "--batch-size", "32",
         "--val-images", "200", "--bn-images", "64", "--no-progress"]


def test_builtin_digits_are_real_images_with_disjoint_splits(tiny):
    train, val = DigitsDataset("train", tiny.input_size), DigitsDataset("val", tiny.input_size)
    assert len(train) + len(val) == 1797 and len(val) == 359
    assert train.images.shape[1:] == (3, tiny.input_size, tiny.input_size)
    flat = lambda d: {tuple(x.flatten()[::97].tolist()) for x in d.images}  # noqa: E731
    assert not flat(train) & flat(val)                              # no image in both splits
    assert sorted(set(val.labels.tolist())) == list(range(10))
    x, _ = dataset("builtin:digits", "train", tiny.input_size, training=True)[0]
    assert x.shape == train.images[0].shape
    images, labels = next(iter(image_batches("builtin:digits", tiny.input_size, 16, with_labels=True, split="val")))
    assert images.shape == (16, 3, tiny.input_size, tiny.input_size) and labels.shape == (16,)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 3-epoch training run, shared by the tests that only read its checkpoint."""
    out = tmp_path_factory.mktemp("trained") / "supernet.pt"
    result = run_nas("supernet", "train", *SMALL, "--epochs", "3", "--out", str(out), "--json",
                     "--log-dir", str(out.with_name("tb")))
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_training_learns_both_ends_of_the_space(trained):
    out, report = trained
    assert report["steps"] == 24 and len(report["history"]) == 3
    first, last = report["history"][0], report["history"][-1]
    assert last["loss"] < first["loss"]
    # 10 classes: chance is 10%; the largest and the smallest subnet both learn from the shared weights
    assert last["top1"]["largest"] > 40 and last["top1"]["smallest"] > 30, report["history"]
    net, meta = load_supernet(out)
    assert meta["trained"]["epochs_done"] == 3 and meta["trained"]["data"] == "builtin:digits"
    assert net.space.name == "tiny"
    plot = out.with_name("supernet.training.png")          # training curves, next to the checkpoint
    assert report["plot"] == str(plot) and plot.stat().st_size > 10_000
    import csv

    rows = list(csv.DictReader(out.with_name("supernet.metrics.csv").open()))   # one row per epoch
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and float(rows[-1]["top1_largest"]) > 40
    assert float(rows[0]["images_per_s"]) > 0 and float(rows[0]["lr"]) > float(rows[-1]["lr"]) >= 0   # cosine
    events = list(out.with_name("tb").glob("events.out.tfevents.*"))          # TensorBoard, with --log-dir
    assert events and events[0].stat().st_size > 500


def test_eval_reports_the_top1_of_the_archs_asked_for(trained, tmp_path, tiny):
    out, report = trained
    result = run_nas("supernet", "eval", "--supernet", str(out), "--data", "builtin:digits", "--val-images", "200",
                     "--bn-images", "64", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r["top1"] for r in json.loads(result.stdout)["archs"]}
    assert set(rows) == {"largest", "smallest", *tiny.preset_names()}
    # the same recipe as the training's own evaluation gives the same number
    assert rows["largest"] == pytest.approx(report["top1"]["largest"])
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(tiny.sample(seed=5).to_json())
    one = run_nas("supernet", "eval", "--supernet", str(out), "--data", "builtin:digits", "--arch", str(arch_file),
                  "--val-images", "200", "--bn-images", "64", "--json")
    assert one.returncode == 0 and [r["name"] for r in json.loads(one.stdout)["archs"]] == [str(arch_file)]
    assert "eval: 100%" in one.stderr and "1/1" in one.stderr           # a progress bar with its total
    bad = run_nas("supernet", "eval", "--supernet", str(out), "--data", "builtin:digits", "--arch", "l1")
    assert bad.returncode == 2 and "large, small" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_killed_training_resumes_to_the_same_weights(tmp_path):
    """With --gumbel: the paths drawn and α resume exactly too."""
    straight, killed = tmp_path / "straight.pt", tmp_path / "killed.pt"
    args = [*SMALL, "--max-train-images", "128", "--val-images", "64", "--gumbel", "--epochs", "2",   # 8 steps
            "--save-every", "3"]
    assert run_nas("supernet", "train", *args, "--out", str(straight)).returncode == 0

    proc = subprocess.Popen([sys.executable, "-m", "nas", "supernet", "train", *args, "--out", str(killed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not killed.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved_step = load_checkpoint_payload(killed)["training"]["step"]
    assert 0 < saved_step < 8, "the kill should land mid-training"

    # loader workers change nothing either: the resumed half reads its batches in 2 processes
    resumed = run_nas("supernet", "train", *args, "--out", str(killed), "--resume", "--workers", "2", "--json")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed_from_step"] == saved_step and report["steps"] == 8
    a, b = load_checkpoint_payload(straight)["state_dict"], load_checkpoint_payload(killed)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k

    # asking again for the same, finished training does nothing; another setting is refused
    again = run_nas("supernet", "train", *args, "--out", str(killed), "--resume", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["steps_this_run"] == 0
    other = run_nas("supernet", "train", *args[:-2], "--save-every", "3", "--lr", "0.01", "--out", str(killed),
                    "--resume")
    assert other.returncode == 2 and "lr=0.001" in other.stderr and len(other.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("bad, words", [
    (["--data", "builtin:cifar"], "builtin:digits"),
    (["--data", "/no/such/folder"], "ImageFolder"),
    (["--epochs", "0"], "positive integer"),
    (["--lr", "-1"], "positive number"),
    (["--label-smoothing", "1.5"], "[0, 1)"),
    (["--batch-size", "5000"], "at most"),
    (["--space", "nope"], "nope"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, bad, words):
    args = {"--space": "tiny", "--data": "builtin:digits", "--epochs": "1", "--out": str(tmp_path / "x.pt")}
    for flag, value in zip(bad[::2], bad[1::2]):
        args[flag] = value
    flat = [t for kv in args.items() for t in kv]
    result = run_nas("supernet", "train", *flat, "--no-progress")
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_existing_out_without_resume_is_refused(tmp_path):
    from supernet.checkpoint import save_supernet
    from supernet.supernet import Supernet

    out = tmp_path / "x.pt"
    save_supernet(Supernet("tiny"), out)                            # an earlier checkpoint of nas
    before = out.read_bytes()
    result = run_nas("supernet", "train", *SMALL, "--epochs", "1", "--out", str(out))
    assert result.returncode == 2 and "--resume" in result.stderr
    assert out.read_bytes() == before


def test_trained_supernet_drives_search_and_export(trained, tmp_path, tiny):
    from nas.latency.costmodel.estimate import estimate_table
    from nas.latency.costmodel.model import load_cost_model
    from nas.latency.devices import get_device

    lut = tmp_path / "iphone12-tiny.json"
    estimate_table(get_device("iphone12"), tiny, load_cost_model("iphone12"), lut)
    ckpt, _ = trained
    run = tmp_path / "run"
    env_args = ["--space", "tiny", "--device", "iphone12", "--budget-ms", "1000", "--lut", f"iphone12={lut}",
                "--trials", "4", "--supernet", str(ckpt), "--data", "builtin:digits", "--out", str(run),
                "--export", "pt", "--no-progress", "--json"]
    result = run_nas("search", *env_args)
    assert result.returncode == 0, result.stderr
    best = json.loads(result.stdout)["best"]
    assert 10 < best["objective"] <= 100          # top-1 (%) of inherited weights, above chance
    card = (run / "export" / "README.md").read_text()
    assert "inherited from a supernet" in card


def test_trains_on_an_imagefolder_tree(tmp_path):
    """timm's training transforms on a folder with train/ and val/ (random images, 2 classes), with RandAugment and
    random erasing; an unknown augmentation policy is refused in one line."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 12), ("val", 4)):
        for cls in ("cat", "dog"):
            folder = tmp_path / "data" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (torch.rand(40, 48, 3, generator=g) * 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    out = tmp_path / "folder.pt"
    result = run_nas("supernet", "train", "--space", "tiny", "--data", str(tmp_path / "data"), "--epochs", "1",
                     "--batch-size", "8", "--bn-images", "8", "--out", str(out), "--no-progress", "--json",
                     "--aa", "rand-m9-mstd0.5-inc1", "--reprob", "0.25")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["steps"] == 3 and set(report["top1"]) == {"largest", "smallest"}
    assert all(0 <= v <= 100 for v in report["top1"].values())
    bogus = run_nas("supernet", "train", "--space", "tiny", "--data", str(tmp_path / "data"), "--epochs", "1",
                    "--aa", "bogus", "--out", str(tmp_path / "bogus.pt"), "--no-progress")
    assert bogus.returncode == 2 and "--aa bogus" in bogus.stderr and len(bogus.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_init_from_timm_weights(tmp_path, tiny, suffix):
    """--init-timm loads a timm-keyed EfficientFormer state dict into the supernet before training."""
    from supernet.static import EfficientFormerNet
    from tests.helpers import randomize_

    arch = tiny.preset("large")
    model = randomize_(EfficientFormerNet.from_arch(arch, tiny), seed=3)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / f"timm{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(weights, str(path))
    else:
        torch.save({"model": weights}, path)          # a training script's checkpoint layout
    out = tmp_path / "init.pt"
    result = run_nas("supernet", "train", *SMALL, "--epochs", "1", "--lr", "1e-9", "--init-timm", str(path),
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    net, meta = load_supernet(out)
    got = net.extract(arch).state_dict()
    for k, v in weights.items():      # a learning rate of 1e-9 leaves the loaded weights where they were
        if "running" not in k and "num_batches" not in k:
            assert torch.allclose(got[k], v, atol=1e-6), k
    assert meta["trained"]["config"]["init_timm"] == str(path)


def test_init_timm_refuses_what_is_not_a_state_dict(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    result = run_nas("supernet", "train", *SMALL, "--epochs", "1", "--init-timm", str(bad),
                     "--out", str(tmp_path / "x.pt"))
    assert result.returncode == 2 and "--init-timm" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
