"""Supernet checkpoints: plain tensors plus JSON-able metadata, loaded with ``weights_only=True`` (never pickle).

A checkpoint names its space, so ``load_supernet`` rebuilds the right supernet before loading the weights;
``meta`` carries what training knows (epochs, data, accuracy of reference subnets) for model cards.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from nas.errors import UsageError
from nas.fileio import atomic_output
from nas.schemas import problem
from supernet.supernet import Supernet

CHECKPOINT_FORMAT = "nas-supernet/1"


def save_supernet(net: Supernet, path: str | Path, meta: dict[str, Any] | None = None,
                  training_state: dict[str, Any] | None = None) -> None:
    """Write ``net``'s weights atomically (a kill mid-write keeps the previous checkpoint). ``training_state``
    (optimiser state, step; plain tensors and numbers) lets ``nas supernet train --resume`` continue."""
    payload = {"format": CHECKPOINT_FORMAT, "space": net.space.source or net.space.name,
               "num_classes": net.num_classes,
               "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "meta": dict(meta or {})}
    if training_state is not None:
        payload["training"] = training_state
    with atomic_output(path) as staging:
        torch.save(payload, staging)


def load_supernet(path: str | Path) -> tuple[Supernet, dict[str, Any]]:
    """The supernet stored at ``path`` and its metadata; anything else is refused in one line."""
    payload = load_checkpoint_payload(path)
    classes = payload.get("num_classes")      # absent before heads followed the data: the space's
    net = Supernet(payload["space"], classes)
    own = net.state_dict()
    for key, tensor in payload["state_dict"].items():     # torch's size-mismatch error is many lines
        if key in own and (not isinstance(tensor, torch.Tensor) or tensor.shape != own[key].shape):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise UsageError(f"--supernet {path} does not fit space {net.space.name!r}: tensor {key!r} is "
                             f"{shape}, the space's is {tuple(own[key].shape)}")
    missing, unexpected = net.load_state_dict(payload["state_dict"], strict=False)
    # checkpoints from before Gumbel training existed hold no α: it stays uniform (no importance)
    missing = [k for k in missing if not k.startswith("metapath.")]
    if missing or unexpected:
        raise UsageError(f"--supernet {path} does not fit space {net.space.name!r}: "
                         f"{len(missing)} missing, {len(unexpected)} unexpected tensors "
                         f"(e.g. {(missing or unexpected)[0]})")
    return net.eval(), dict(payload.get("meta") or {})


def load_importance(path: str | Path) -> Any:
    """The MetaPath importances (``supernet.gumbel.Importance``) of a checkpoint trained with ``--gumbel``;
    refused in one line for any other."""
    from supernet.gumbel import Importance, has_importance

    net, _ = load_supernet(path)
    if not has_importance(net.state_dict()):
        raise UsageError(f"--supernet {path} holds no MetaPath importances (trained without --gumbel); train with "
                         "nas supernet train --gumbel")
    return Importance.of(net)


def load_checkpoint_payload(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict (weights-only unpickling), after its format check."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--supernet {path}: no such file (a checkpoint written by supernet.save_supernet)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--supernet {path} is not a readable weights-only checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise UsageError(f"--supernet {path}: format {found!r}, expected {CHECKPOINT_FORMAT!r} "
                         "(written by supernet.save_supernet)")
    problem = _shape_problem(payload)
    if problem:
        raise UsageError(f"--supernet {path} is not a whole checkpoint: {problem} (written by hand, or by another "
                         "version?)")
    return payload


def _shape_problem(payload: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint that has the right format tag but not the right fields (None: nothing): its
    fields by the ``checkpoint`` schema (``nas.schemas``), its weights (tensors, which JSON Schema cannot name)
    here."""
    found = problem(payload, "checkpoint")
    if found is not None:
        return found
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["state_dict"].items()):
        return "field 'state_dict' is not a mapping of names to tensors"
    return None


def file_digest(path: str | Path) -> str:
    """sha256 of a file, to name the exact checkpoint a model came from."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
