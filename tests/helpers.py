"""Helpers the tests share (import them from here; ``conftest.py`` holds only fixtures).

Freshly initialised EfficientFormer blocks are nearly the identity (layer scale 1e-5), which would let a wrong
slice pass an output-equality test; ``randomize_`` gives every tensor a random value of a sane scale.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import uuid
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        if name.startswith("metapath."):                              # α: a random supernet has no importances
            continue
        if name.endswith("gamma"):                                    # layer scale
            p.copy_(0.1 + 0.2 * torch.rand(p.shape, generator=g))
        elif p.dim() == 1 and ("norm" in name or "bn" in name) and name.endswith("weight"):
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
        elif p.dim() == 1 or "attention_biases" in name or name.endswith("bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        else:
            if "proj_weight" in name:                       # [out, heads, per-head in]
                fan_in = p.shape[1] * p.shape[2]
            elif p.dim() == 3 and name.endswith("_weight"):  # per-head stored [heads, out, in]
                fan_in = p.shape[-1]
            else:
                fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    for name, b in module.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=g))
        elif name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return module


def run_nas(*args: str, check: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, check=check, env=env)


def nas_here(*args: str) -> subprocess.CompletedProcess:
    """The command line run in this process, through ``main`` and its one error and exit path: for the quick calls
    a test makes many of (an ingest, a refusal), which would each spend seconds importing torch in a subprocess.
    Kills, resumes and anything that must start clean stay with ``run_nas``."""
    from nas.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:           # argparse's refusals exit; a subprocess would show the same status
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(["nas", *args], code, out.getvalue(), err.getvalue())


class OwnProcesses:
    """The processes one test started, found by an environment variable they all inherit (Ray's raylet and workers
    too, after the driver exits and they are re-parented), so a test kills only its own: a machine-wide ``pgrep``
    or ``ray stop --force`` would kill another test run's Ray on the same machine.

        own = OwnProcesses()
        subprocess.run([...], env=own.env())
        own.kill()
    """

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **extra, "NAS_TEST_OWNER": self.tag}

    def pids(self, named: str = "") -> list[int]:
        """This test's live processes whose command line contains ``named`` (Ray workers name themselves
        ``ray::FUNCTION``), oldest first."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if f"NAS_TEST_OWNER={self.tag}".encode() not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                if named.encode() in (entry / "cmdline").read_bytes().replace(b"\0", b" "):
                    found.append(int(entry.name))
            except OSError:                                   # gone meanwhile, or another user's
                continue
        return sorted(found)

    def kill(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def random_supernet_and_images(folder: Path, space, per_class: int) -> tuple[Path, Path]:
    """A supernet of ``space`` with random weights (``folder/supernet.pt``) and an ImageFolder of two classes of
    random 64x64 images (``folder/data``): enough for a search whose objective is inherited accuracy to run."""
    import numpy as np
    from PIL import Image

    from supernet import Supernet
    from supernet.checkpoint import save_supernet

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (folder / "data" / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "data" / cls / f"{i}.png")
    save_supernet(randomize_(Supernet(space)), folder / "supernet.pt")
    return folder / "supernet.pt", folder / "data"
