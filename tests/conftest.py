"""Fixtures shared by every test folder: the spaces, loaded once per session."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# before any test imports torch: idle OpenMP threads sleep rather than spin, so the tests' subprocesses and
# this process do not slow each other down many times over on 2 cores (see nas.cli.yield_idle_threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from nas.space import load_space

# a private cache per run and per xdist worker: the suite neither reads nor fills the user's ~/.cache/nas, and two
# workers never race on one table or dataset file (subprocesses the tests start inherit these;
# nas reads both when it looks, not when imported)
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_CACHE = Path(tempfile.mkdtemp(prefix=f"nas-tests-{_WORKER}-"))
os.environ["NAS_LUT_DIR"] = str(_CACHE / "latency_luts")
os.environ["NAS_DATA_DIR"] = str(_CACHE / "datasets")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


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


OBJECTS_SMALL = "builtin:objects:train=256,val=64,test=64,classes=10"


@pytest.fixture(scope="session")
def objects_ckpt(tmp_path_factory):
    """A tiny supernet trained for one short epoch on a small ``builtin:objects`` (its recipe is in the checkpoint,
    as the ranking check needs)."""
    from supernet.config import TrainConfig
    from supernet.train import train_supernet

    path = tmp_path_factory.mktemp("objects") / "objects.pt"
    cfg = TrainConfig(space="tiny", data=OBJECTS_SMALL, epochs=1, batch_size=32, num_random=1, val_images=64,
                      bn_images=32, warmup_epochs=0.5)
    train_supernet(cfg, path, progress=False)
    return path


@pytest.fixture(autouse=True)
def _one_multiprocess_test_at_a_time(request):
    """Under pytest-xdist (``-n 2``, the default in pyproject.toml) a test that starts a local Ray runtime or
    torch.distributed workers (marked ``ray`` or ``distributed``) holds a lock shared by the run's workers, so no
    two run at once: two of them starve each other's raylets and gloo rendezvous into timeouts, and one's
    ``ray stop`` kills the other's Ray. A lock, because xdist's ``--dist loadgroup`` silently stopped grouping with
    pytest 9.2 (pytest-dev/pytest-xdist#1386)."""
    node = request.node
    if node.get_closest_marker("ray") is None and node.get_closest_marker("distributed") is None:
        yield
        return
    import fcntl

    # the run's base temporary folder (pytest-N/, each worker's popen-gwK/ is inside it): shared, and pytest prunes it
    shared = request.getfixturevalue("tmp_path_factory").getbasetemp()
    shared = shared.parent if "PYTEST_XDIST_WORKER" in os.environ else shared
    with open(shared / "multiprocess.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # released when the file closes, after the test
        yield
