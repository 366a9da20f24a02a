"""Fixtures shared by every test folder: the spaces, loaded once per session."""
from __future__ import annotations

import pytest

from nas.space import load_space


@pytest.fixture(scope="session")
def space():
    return load_space("efficientformer")


@pytest.fixture(scope="session")
def tiny():
    return load_space("tiny")


@pytest.fixture(scope="session")
def tiny_hybrid():
    """`tiny` whose MB3D blocks choose MHSA, cascaded group attention or separable self-attention."""
    return load_space("tiny_hybrid")


@pytest.fixture(scope="session")
def tiny_hybrid_iphone12(tmp_path_factory, tiny_hybrid):
    """An iPhone 12 table of ``tiny_hybrid`` estimated by the shipped cost model (built once per session)."""
    from nas.latency.costmodel.estimate import estimate_table
    from nas.latency.costmodel.model import load_cost_model
    from nas.latency.devices import get_device

    path = tmp_path_factory.mktemp("lut") / "iphone12-tiny_hybrid.json"
    estimate_table(get_device("iphone12"), tiny_hybrid, load_cost_model("iphone12"), path, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_iphone12(tmp_path_factory, tiny):
    """An iPhone 12 table of ``tiny`` estimated by the shipped cost model (built once per session)."""
    from nas.latency.costmodel.estimate import estimate_table
    from nas.latency.costmodel.model import load_cost_model
    from nas.latency.devices import get_device

    path = tmp_path_factory.mktemp("lut") / "iphone12-tiny.json"
    estimate_table(get_device("iphone12"), tiny, load_cost_model("iphone12"), path, progress=False)
    return path


@pytest.fixture(scope="session")
def gumbel_ckpt(tmp_path_factory):
    """A tiny supernet trained briefly with --gumbel on builtin:digits: its α have moved (importances exist)."""
    from supernet.config import TrainConfig
    from supernet.train import train_supernet

    path = tmp_path_factory.mktemp("gumbel") / "gumbel.pt"
    cfg = TrainConfig(space="tiny", data="builtin:digits", epochs=1, batch_size=32, max_train_images=192,
                      num_random=1, val_images=64, bn_images=32, gumbel=True, alpha_lr=0.05)
    train_supernet(cfg, path, progress=False)
    return path
