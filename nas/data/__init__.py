"""Images for supernet training, BatchNorm recalibration, evaluation and the ranking check.

``--data`` is either

- an ImageFolder tree (ImageNet layout, ``ROOT/<class>/<image>``), read with timm's dataset and transforms. If it
  has ``train/``, ``val/`` (and ``test/``) subfolders, those are the splits; otherwise train and val are the whole
  folder (and there is no test split); or
- a dataset that ships as code, ``builtin:NAME[:key=value,...]`` (``nas.data.builtin``), so that training,
  accuracy-driven search, the ranking check and their tests run without any download:

  - ``builtin:digits``: scikit-learn's handwritten digits, easy (``nas.data.digits``);
  - ``builtin:objects``: procedurally drawn objects, hard, with a difficulty knob (``nas.data.objects``).

Splits: ``train`` (training, BatchNorm recalibration), ``val`` (what training reports and the search maximises)
and ``test`` (held out from both: final figures only).
"""
from __future__ import annotations

from pathlib import Path

import torch

from nas.data import builtin, digits, objects  # noqa: F401  (importing a dataset module registers it)
from nas.data.builtin import PREFIX as BUILTIN_PREFIX
from nas.data.digits import DigitsDataset
from nas.data.folder import class_names, folder_dataset, split_folder
from nas.errors import UsageError

SPLITS = ("train", "val", "test")

__all__ = ["BUILTIN_PREFIX", "SPLITS", "DigitsDataset", "dataset", "describe", "image_batches", "num_classes"]


def describe(data: str | Path, split: str) -> str:
    """Where ``split`` of ``data`` comes from, for labels and model cards."""
    if builtin.is_builtin(data):
        return f"{data} ({split} split)"
    return str(split_folder(Path(data), split))


def num_classes(data: str | Path) -> int:
    """How many classes ``data`` has: a built-in dataset's, or the class folders of the training split."""
    if builtin.is_builtin(data):
        record, spec = builtin.parse(str(data))
        return record.num_classes(spec)
    return len(class_names(Path(data), "train"))


def dataset(data: str | Path, split: str, input_size: int, training: bool = False, auto_augment: str | None = None,
            re_prob: float = 0.0) -> torch.utils.data.Dataset:
    """``split`` ('train', 'val' or 'test') of ``data`` as (image tensor, label) pairs; ``training`` adds the
    training augmentation (random crops and flips for folders, small shifts for built-in sets). ``auto_augment``
    (a timm policy such as ``rand-m9-mstd0.5-inc1``) and ``re_prob`` (random erasing) are timm's, for folders
    only."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} not in {SPLITS}")
    text = str(data)
    if builtin.is_builtin(text):
        record, spec = builtin.parse(text)
        if split not in record.splits:
            raise UsageError(f"--data {text} has no {split} split (it has {', '.join(record.splits)}); use "
                             f"{BUILTIN_PREFIX}objects or a folder with a {split}/ subfolder")
        if auto_augment or re_prob:
            raise UsageError(f"--aa/--reprob apply to ImageFolder data, not {text} (drawn or scanned at a low "
                             "resolution, already shifted at random); drop them or use an ImageFolder tree")
        return record.build(spec, split, input_size, training)
    root = Path(data)
    if split == "test" and not (root / "test").is_dir():
        raise UsageError(f"--data {root} has no test/ subfolder; a test split must be held apart from train/ "
                         "and val/")
    return folder_dataset(root, split, input_size, training, auto_augment, re_prob)


def image_batches(data: str | Path, input_size: int, max_images: int, batch_size: int = 32,
                  seed: int = 0, with_labels: bool = False, split: str | None = None) -> torch.utils.data.DataLoader:
    """Up to ``max_images`` images of ``data``'s ``split`` (default: 'train' for folders with splits; for a plain
    folder, the folder), a random subset that is the same for the same seed, in batches of images, or of
    (images, labels) with ``with_labels``."""
    ds = dataset(data, split or "train", input_size)
    order = torch.randperm(len(ds),  # type: ignore[arg-type]   # map-style datasets with a length
                            generator=torch.Generator().manual_seed(seed))[:max_images]
    subset = torch.utils.data.Subset(ds, order.tolist())
    return torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=0,
                                       collate_fn=_with_labels if with_labels else _images_only)


def _images_only(items):
    return torch.stack([image for image, _ in items])


def _with_labels(items):
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])
