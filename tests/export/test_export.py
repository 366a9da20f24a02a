"""nas export: every format reloaded from disk matches the PyTorch model; weights really come from the supernet."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

from nas.errors import UsageError
from nas.export import (
    FORMATS,
    OUTPUT_NAME,
    TOLERANCE,
    build_subnet,
    check_input,
    export_subnet,
    parse_formats,
    require_packages,
)
from nas.export import compare as _compare
from nas.fileio import atomic_output
from supernet import EfficientFormerNet, Supernet
from supernet.checkpoint import load_supernet, save_supernet
from tests.helpers import randomize_, run_nas


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, tiny):
    """A tiny supernet with random (non-identity) weights, saved as a checkpoint."""
    path = tmp_path_factory.mktemp("ckpt") / "supernet.pt"
    save_supernet(randomize_(Supernet(tiny), seed=3), path, meta={"epochs": 0, "note": "random weights"})
    return path


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture(scope="module")
def hybrid_ckpt(tmp_path_factory, tiny_hybrid):
    """A tiny supernet whose MB3D blocks choose MHSA, CGA or SSA, with random weights, saved as a checkpoint."""
    path = tmp_path_factory.mktemp("ckpt") / "hybrid.pt"
    save_supernet(randomize_(Supernet(tiny_hybrid), seed=3), path, meta={"epochs": 0, "note": "random weights"})
    return path


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory, tiny_hybrid, hybrid_ckpt):
    """``nas export`` in every format of an arch whose three MB3D blocks use the three token mixers (MHSA,
    cascaded group attention, separable self-attention), run once for the tests below."""
    tmp_path = tmp_path_factory.mktemp("export")
    arch = tiny_hybrid.arch_from_dict({
        "space": "tiny_hybrid", "widths": [32, 32, 64, 80], "depths": [1, 2, 2, 3], "n3d": 3,
        "mlp_ratios": [[3], [2, 4], [4, 2], [2, 3, 4]], "heads": [4, 2, 0], "key_dims": [8, 16, 0],
        "mixers": ["mhsa", "cga", "ssa"]})
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(arch.to_json())
    out = tmp_path / "export"
    proc = run_nas("export", str(arch_file), "--supernet", str(hybrid_ckpt), "--out", str(out), "--json",
                   "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return arch, out, json.loads(proc.stdout)


# every format at its model's own precision: what `nas export` writes by default; a format at another precision
# (onnx-int8) follows a device's table and is tested with one (tests/latency/test_precision.py); Core ML's W8 and
# W8A8 forms are tested below
OWN_PRECISION = [f for f, record in FORMATS.items() if not record.family and record.by_default]


@pytest.mark.parametrize("fmt", OWN_PRECISION)
def test_every_registered_format_is_written_reloaded_and_checked(cli_export, fmt):
    _, out, report = cli_export
    assert report["checks"][fmt]["ok"], report["checks"][fmt]
    assert report["files"][fmt] and all((out / f).exists() for f in report["files"][fmt])
    assert report["checks"][fmt]["seconds"] >= 0


def test_every_format_record_names_a_writer_that_imports():
    """A format is one record: its writer is found from the record alone (imported lazily, so a typo in the
    record would only show at export time without this)."""
    for fmt in FORMATS.values():
        assert callable(fmt.load_writer()), fmt.name


@pytest.mark.slow
def test_cli_exports_every_format_of_an_arch_with_every_mixer(cli_export, tiny_hybrid, hybrid_ckpt):
    import onnxruntime as ort
    import timm

    import supernet.timm_model  # noqa: F401 - registers nas_efficientformer

    arch, out, report = cli_export
    assert report["ok"] and report["formats"] == OWN_PRECISION
    assert json.loads((out / "export_check.json").read_text())["checks"] == report["checks"]
    for fmt in ("pt", "timm", "torchscript", "onnx"):
        assert report["checks"][fmt]["max_abs_diff"] <= TOLERANCE, fmt

    # the weights are the supernet's slice, not a fresh initialisation
    net, meta = load_supernet(hybrid_ckpt)
    expected_model = net.extract(arch)
    x = torch.randn(3, 3, tiny_hybrid.input_size, tiny_hybrid.input_size)
    expected = _logits(expected_model, x)
    assert expected.abs().max() > 1e-2          # randomised weights: a wrong slice would show
    assert report["weights"]["supernet_meta"] == meta

    config = json.loads((out / "model_config.json").read_text())
    model = EfficientFormerNet(**config)
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    assert torch.allclose(_logits(model, x), expected, atol=1e-5)
    assert tiny_hybrid.arch_from_dict(json.loads((out / "arch.json").read_text())) == arch

    reloaded = timm.create_model(f"local-dir:{out / 'timm'}", pretrained=True)
    assert torch.allclose(_logits(reloaded, x), expected, atol=1e-5)
    assert reloaded.pretrained_cfg["input_size"] == (3, tiny_hybrid.input_size, tiny_hybrid.input_size)

    with pytest.warns(FutureWarning):          # torch 2.14 marks TorchScript deprecated; it still loads
        scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    assert torch.allclose(_logits(scripted, x), expected, atol=1e-5)

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})[0]          # batch 3: the batch axis is dynamic
    assert np.allclose(got, expected.numpy(), atol=1e-4)
    assert report["checks"]["onnx"]["opset"] >= 13

    coreml = report["checks"]["coreml"]
    assert coreml["ok"] and coreml["inputs"] == [["x", [1, 3, tiny_hybrid.input_size, tiny_hybrid.input_size]]]
    assert coreml["outputs"] == [OUTPUT_NAME] and (out / "model.mlpackage" / "Manifest.json").is_file()

    card = (out / "README.md").read_text()
    assert f"{report['params'] / 1e6:.2f} M" in card and "inherited from a supernet" in card
    for fmt in OWN_PRECISION:
        assert f"| {fmt} |" in card
    for row in ("| mhsa | 4 | 8 |", "| cga | 2 | 16 |", "| ssa | - | - |"):   # each block's mixer is named
        assert row in card
    assert "Mixers used: 1x mhsa, 1x cga, 1x ssa" in card
    # portable and truthful: no path of this machine, how to get this project (not PyPI's `nas`), a snippet per format
    assert "/tmp" not in card and str(out.parent) not in card and "pip install nas" not in card
    assert "pip install -e <its clone>" in card and "num_classes=N" in card and "features_only=True" in card


@pytest.mark.slow
def test_export_of_presets_matches_timm_parameter_count(tmp_path, space):
    """L1 of the default space, all five formats, in-process; its parameter count is EfficientFormer-L1's."""
    import timm

    sub = build_subnet(space.preset("l1"))
    randomize_(sub.model, seed=1)
    report = export_subnet(sub, tmp_path, OWN_PRECISION, progress=False)
    assert report["ok"], report["checks"]
    assert report["params"] == sum(p.numel() for p in timm.create_model("efficientformer_l1").parameters())
    assert 1.2 < report["macs_g"] < 1.4                       # the paper: 1.3 GMACs
    assert report["latency"]["iphone12"]["kind"] == "estimated"
    assert report["latency"]["iphone12"]["latency_ms"] > 0


def test_batchnorm_is_recalibrated_on_the_images_given(tmp_path, tiny, tiny_ckpt):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 256, (tiny.input_size, tiny.input_size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / cls / f"{i}.png")
    arch = tiny.preset("small")
    inherited = build_subnet(arch, tiny_ckpt)
    sub = build_subnet(arch, tiny_ckpt, tmp_path / "data", bn_images=10)
    assert sub.weights["batchnorm"]["images"] == 10

    # expected: the plain batch statistics of the stem's first conv output over the 10 images
    from nas.data import image_batches

    images = torch.cat(list(image_batches(tmp_path / "data", tiny.input_size, 10)))
    with torch.no_grad():
        conv_out = inherited.model.stem.conv1(images)
    mean = conv_out.mean(dim=(0, 2, 3))
    assert torch.allclose(sub.model.stem.norm1.running_mean, mean, atol=1e-5)
    assert not torch.allclose(inherited.model.stem.norm1.running_mean, mean, atol=1e-3)
    assert sub.model.stem.norm1.momentum == inherited.model.stem.norm1.momentum   # restored
    # weights are untouched
    assert torch.equal(sub.model.stem.conv1.weight, inherited.model.stem.conv1.weight)


def test_a_failing_format_is_reported_and_the_others_still_export(tmp_path, tiny, monkeypatch):
    def broken(sub, out, x, ref):
        raise RuntimeError("exporter exploded")

    import dataclasses
    import sys

    monkeypatch.setattr(sys.modules[__name__], "broken_writer", broken, raising=False)
    monkeypatch.setitem(FORMATS, "torchscript", dataclasses.replace(FORMATS["torchscript"],
                                                                    writer=f"{__name__}:broken_writer"))
    sub = build_subnet(tiny.preset("small"))
    report = export_subnet(sub, tmp_path, ["pt", "torchscript"], progress=False)
    assert not report["ok"]
    assert report["checks"]["pt"]["ok"] and (tmp_path / "model.pt").is_file()
    assert report["checks"]["torchscript"]["ok"] is False
    assert "exporter exploded" in report["checks"]["torchscript"]["detail"]
    assert "**FAIL**" in (tmp_path / "README.md").read_text()


def test_compare_catches_shape_and_value_mismatches():
    ref = torch.zeros(2, 10)
    assert _compare(ref, torch.zeros(2, 10))["ok"]
    assert not _compare(ref, torch.full((2, 10), 2 * TOLERANCE))["ok"]
    assert not _compare(ref, torch.zeros(1, 10))["ok"]


def test_check_input_is_reproducible_and_batched(tiny):
    assert torch.equal(check_input(tiny), check_input(tiny))
    assert check_input(tiny).shape[0] > 1       # a format that baked batch 1 in fails its check


def test_atomic_output_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as staging:
            staging.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    with atomic_output(target) as staging:
        staging.write_text("new")
    assert target.read_text() == "new"


def test_export_of_a_run_directory_reads_its_winner_and_summary(tmp_path, tiny):
    run = tmp_path / "run"
    run.mkdir()
    arch = tiny.sample(seed=5)
    (run / "best_arch.json").write_text(arch.to_json())
    (run / "run.json").write_text(json.dumps({
        "strategy": "optuna", "budgets": [{"device": "cpu", "budget_ms": 2.0}],
        "best": {"objective": 0.5, "objective_name": "proxy"}}))
    proc = run_nas("export", str(run), "--format", "pt", "--out", str(tmp_path / "out"), "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert tiny.arch_from_dict(report["arch"]) == arch
    card = (tmp_path / "out" / "README.md").read_text()
    assert "2.0 ms on cpu" in card and "proxy = 0.5" in card
    assert "model.pt" in card and "InferenceSession" not in card and "timm.create_model" not in card   # pt only


@pytest.mark.parametrize("args, message", [
    (["l1", "--format", "pt,tflite"], "--format 'pt,tflite': unknown format tflite"),
    (["nonexistent", "--format", "pt"], "ARCH_OR_RUN 'nonexistent' is neither a preset"),
    (["l1", "--format", "pt", "--bn-images", "8"], "--bn-images goes with --data"),
    (["l1", "--format", "pt", "--supernet", "{tmp}/nope.pt"], "no such file"),
    (["l1", "--format", "pt", "--supernet", "{tmp}/garbage.pt"], "is not a readable weights-only checkpoint"),
    (["l1", "--format", "pt", "--supernet", "{tiny_ckpt}"], "the arch is of space 'efficientformer', the supernet"),
    (["l1", "--format", "pt", "--data", "{tmp}/nodata"], "--data"),
    (["{tmp}", "--format", "pt"], "a folder without best_arch.json or arch.json"),
])
def test_bad_input_exits_2_in_one_line(tmp_path, tiny_ckpt, args, message):
    (tmp_path / "garbage.pt").write_text("not a checkpoint")
    (tmp_path / "nodata").mkdir()
    args = [a.format(tmp=tmp_path, tiny_ckpt=tiny_ckpt) for a in args]
    proc = run_nas("export", *args, "--out", str(tmp_path / "out"), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("nas: error")]
    assert len(error) == 1 and message in error[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_parse_formats_orders_and_validates():
    assert parse_formats("onnx, pt") == ["pt", "onnx"]
    with pytest.raises(ValueError):
        parse_formats(",")


def test_timm_registration_builds_the_same_network(tiny):
    import timm

    import supernet.timm_model  # noqa: F401

    net = randomize_(EfficientFormerNet.from_arch(tiny.preset("large"), tiny))
    model = timm.create_model("nas_efficientformer", **net.arch_config)
    model.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, tiny.input_size, tiny.input_size)
    assert torch.equal(_logits(model, x), _logits(net, x))
    assert "nas_efficientformer" in timm.list_models("nas_*")


def _digits_image_folder(root, classes: int, per_class: int):
    """scikit-learn's real digit scans written as PNGs in an ImageFolder of ``classes`` classes: what a user
    fine-tuning an export on their own images has."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in range(classes):
        (root / f"class_{label}").mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == label][:per_class]):
            Image.fromarray((image * 255 / 16).astype(np.uint8)).convert("RGB").save(
                root / f"class_{label}" / f"{i}.png")
    return root


@pytest.mark.slow
def test_timm_export_fine_tunes_on_a_new_class_count_through_timm_api_only(cli_export, tiny_hybrid, tmp_path,
                                                                          caplog):
    """What a timm user does with an export: create_model(..., pretrained=True, num_classes=N) re-initialises the
    class and distillation heads (timm's log line says so) and keeps every other tensor; timm's data config,
    loader, optimizer and scheduler then fine-tune it on digits 0..2; the loss falls
    (from chance, ln 3, by a fifth or more in 40 steps)."""
    import logging

    import timm
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.optim import create_optimizer_v2

    import supernet.timm_model  # noqa: F401 - registers nas_efficientformer, as the model card says

    _, out, _ = cli_export
    torch.manual_seed(0)    # the new heads' initialisation: the same whichever tests ran before in this process
    source = timm.create_model(f"local-dir:{out / 'timm'}", pretrained=True)
    with caplog.at_level(logging.INFO, logger="timm"):
        model = timm.create_model(f"local-dir:{out / 'timm'}", pretrained=True, num_classes=3, drop_rate=0.1,
                                  drop_path_rate=0.05)
    assert "Missing keys (head.weight, head.bias, head_dist.weight, head_dist.bias)" in caplog.text
    kept = {k: v for k, v in source.state_dict().items() if not k.startswith("head")}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in kept.items())
    assert model.num_classes == 3 and model.get_classifier()[0].out_features == 3

    config = resolve_data_config({}, model=model)
    side = tiny_hybrid.input_size
    assert config["input_size"] == (3, side, side) and config["interpolation"] == "bicubic"
    assert config["mean"] == model.pretrained_cfg["mean"] and config["crop_pct"] == model.pretrained_cfg["crop_pct"]
    dataset = create_dataset("", root=str(_digits_image_folder(tmp_path / "digits", classes=3, per_class=40)))
    torch.manual_seed(0)
    loader = create_loader(dataset, input_size=config["input_size"], batch_size=24, is_training=True,
                           interpolation=config["interpolation"], mean=config["mean"], std=config["std"],
                           crop_pct=config["crop_pct"], num_workers=0, use_prefetcher=False)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=3e-3, weight_decay=0.05)
    losses = []
    model.train()
    for _ in range(8):
        for images, labels in loader:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert len(losses) == 40 and np.mean(losses[-10:]) < 0.85 * np.mean(losses[:10]), losses

    model.reset_classifier(0)            # a feature extractor: pooled features, then token maps per stage
    assert model.eval()(images).shape == (len(images), model.num_features)
    assert model.forward_head(model.forward_features(images), pre_logits=True).shape[-1] == model.num_features


def test_timm_export_gives_features_only_maps_with_feature_info(cli_export, tiny_hybrid):
    import timm

    import supernet.timm_model  # noqa: F401

    arch, out, _ = cli_export
    features = timm.create_model(f"local-dir:{out / 'timm'}", pretrained=True, features_only=True).eval()
    assert features.feature_info.channels() == list(arch.widths)
    assert features.feature_info.reduction() == [4, 8, 16, 32]
    side = tiny_hybrid.input_size
    maps = features(torch.randn(2, 3, side, side))
    assert [tuple(m.shape) for m in maps] == [(2, w, -(-side // r), -(-side // r))
                                              for w, r in zip(arch.widths, [4, 8, 16, 32])]
    last_two = timm.create_model(f"local-dir:{out / 'timm'}", pretrained=True, features_only=True,
                                 out_indices=(2, 3)).eval()
    assert last_two.feature_info.channels() == list(arch.widths[2:])
    x = torch.randn(1, 3, side, side)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(last_two(x), features(x)[2:]))


def test_re_export_into_an_earlier_export_leaves_one_consistent_model(tmp_path, tiny):
    """An export with more formats, then one with fewer into the same folder: only the second model's files are
    left, every one of them belongs to it, and a folder of someone else's files is refused, untouched."""
    out = tmp_path / "export"
    first = export_subnet(build_subnet(tiny.preset("large")), out, ["pt", "torchscript"], progress=False)
    assert first["ok"] and (out / "model.torchscript.pt").is_file()
    second = export_subnet(build_subnet(tiny.preset("small")), out, ["pt"], progress=False)
    assert second["ok"] and second["out"] == str(out)
    assert sorted(p.name for p in out.iterdir()) == [".nas-output", "README.md", "arch.json", "export_check.json",
                                                     "model.pt", "model_config.json"]
    assert tiny.arch_from_dict(json.loads((out / "arch.json").read_text())) == tiny.preset("small")
    assert json.loads((out / "model_config.json").read_text())["widths"] == list(tiny.preset("small").widths)
    assert "model.torchscript.pt" not in (out / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]          # no staging folder left behind
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in out.iterdir() if p.is_file())   # like 0644

    other = tmp_path / "holiday-photos"
    other.mkdir()
    (other / "beach.jpg").write_text("precious")
    with pytest.raises(UsageError, match="holds files that are not an export"):
        export_subnet(build_subnet(tiny.preset("small")), other, ["pt"], progress=False)
    assert (other / "beach.jpg").read_text() == "precious"


def test_default_formats_are_those_whose_extras_are_installed(monkeypatch):
    from nas.export.formats import default_formats

    assert default_formats() == (OWN_PRECISION, "")        # the test install has every extra
    assert default_formats("int8") == (["onnx-int8", "coreml-int8"], "")
    monkeypatch.setitem(sys.modules, "coremltools", None)    # as if the coreml extra were not installed
    formats, note = default_formats()
    assert formats == ["pt", "timm", "torchscript", "onnx"]
    assert note == "not writing coreml (not installed); pip install 'vit-latency-nas[coreml]' adds them"
    with pytest.raises(UsageError, match=r"--format coreml needs coremltools: pip install 'vit-latency-nas\[coreml\]'"):
        require_packages(["pt", "coreml"])


def test_coreml_w8_and_w8a8_are_converted_reloaded_and_quantised(tmp_path, tiny):
    """``coreml-int8`` (W8A8: activation quantize ops, iOS 17) and ``coreml-w8`` (int8 weights, fp16 compute),
    made by coremltools.optimize here, saved, reloaded from disk and checked (predictions need macOS)."""
    sub = build_subnet(tiny.preset("small"))
    randomize_(sub.model, seed=1)
    report = export_subnet(sub, tmp_path / "x", ["coreml-int8", "coreml-w8"], progress=False)
    assert report["ok"], report["checks"]
    w8a8, w8 = report["checks"]["coreml-int8"], report["checks"]["coreml-w8"]
    assert w8a8["spec_version"] >= 8 and w8a8["quantize_ops"] > 0 and w8a8["outputs"] == [OUTPUT_NAME]
    assert w8a8["calibrated_on"].startswith("the check input")          # no --data: said so
    assert w8["spec_version"] >= 7 and w8["int8_weight_tensors"] > 0
    assert (tmp_path / "x" / "model.int8.mlpackage" / "Manifest.json").is_file()
    assert (tmp_path / "x" / "model.w8.mlpackage" / "Manifest.json").is_file()
    card = (tmp_path / "x" / "README.md").read_text()
    assert "| coreml-int8 |" in card and "ct.models.MLModel('model.int8.mlpackage')" in card
    assert f"W8A8: {w8a8['quantize_ops']} activation quantize ops, ranges from the check input" in card
    assert f"W8: {w8['int8_weight_tensors']} weight tensors in int8" in card
    assert "ct.models.MLModel('model.w8.mlpackage')" in card
