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
