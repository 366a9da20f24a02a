"""Latency of the hybrid spaces' new ops (cascaded group attention, separable self-attention): measured by the
real backends, estimated by the cost model (and said to be extrapolated), converted to Core ML, predicted."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nas.latency.backends import OnnxRuntimeBackend
from nas.latency.devices import get_device
from nas.latency.ops import mb3d_op, space_ops
from nas.latency.predict import LutPredictor, encode_archs, estimate_notice, load_predictor, sample_batch
from nas.space import load_space
from tests.helpers import run_nas


@pytest.fixture(scope="module")
def estimated(tiny_hybrid_iphone12):
    return tiny_hybrid_iphone12


def _new_ops(space, widths):
    return [mb3d_op(space, c, 4, h, kd, m) for c in widths for m, h, kd in space.mixer_variants() if m != "mhsa"]


def test_estimated_table_says_which_mixers_are_extrapolated(estimated, tiny_hybrid):
    predictor = LutPredictor.from_file(estimated)
    assert set(predictor.table.entries) == {op.key for op in space_ops(tiny_hybrid)}
    assert predictor.table.header["estimate"]["extrapolated_mixers"] == ["cga", "ssa"]
    notice = estimate_notice(predictor)
    assert notice and "mixer(s) cga, ssa are extrapolated" in notice
    proc = run_nas("predict", "--space", "tiny_hybrid", "--device", "iphone12", "--arch", "linear", "--lut",
                   str(estimated), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "extrapolated" in proc.stderr and json.loads(proc.stdout)["latency_ms"] > 0
    shown = run_nas("lut", "show", str(estimated))
    assert shown.returncode == 0 and "cga, ssa are extrapolated" in shown.stdout


def test_vectorised_prediction_agrees_on_every_mixer(estimated, tiny_hybrid):
    predictor = LutPredictor.from_file(estimated)
    batch = sample_batch(tiny_hybrid, 400, seed=0)
    decoded = [batch.arch(tiny_hybrid, i) for i in range(len(batch))]
    assert all(tiny_hybrid.validate(a) == a for a in decoded)
    assert {m for a in decoded for m in a.mixers} == {"mhsa", "cga", "ssa"}
    assert np.allclose(predictor.predict_batch(batch), [predictor.predict(a) for a in decoded])
    archs = [tiny_hybrid.sample(seed=s) for s in range(100)]
    assert np.allclose(predictor.predict_batch(encode_archs(archs, tiny_hybrid)),
                       [predictor.predict(a) for a in archs])


def test_shipped_hybrid_table_covers_its_space_and_keeps_the_default_spaces_entries():
    hybrid = load_space("efficientformer_hybrid")
    predictor = load_predictor("iphone12", "efficientformer_hybrid")
    assert predictor.table.header["kind"] == "estimated"
    assert set(predictor.table.entries) == {op.key for op in space_ops(hybrid)}
    assert predictor.table.header["estimate"]["extrapolated_mixers"] == ["cga", "ssa"]
    default = load_predictor("iphone12").table.entries
    assert all(predictor.table.entries[k] == v for k, v in default.items())
    assert predictor.predict(hybrid.preset("l1")) == load_predictor("iphone12").predict(
        load_space("efficientformer").preset("l1"))


@pytest.mark.parametrize("device", ["cpu", "onnxruntime"])
def test_backends_measure_the_new_mixers(tiny_hybrid, device):
    backend = get_device(device).make_backend()
    if isinstance(backend, OnnxRuntimeBackend) and not backend.available()[0]:
        pytest.skip(backend.available()[1])
    for op in _new_ops(tiny_hybrid, [64]):
        module, x = op.build(1)
        timing = backend.measure(module, x)
        assert 0 < timing.median_ms < 1000 and timing.n >= 5, op.key
