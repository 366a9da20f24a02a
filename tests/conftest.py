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
