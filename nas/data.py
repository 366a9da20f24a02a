"""Images for supernet training, BatchNorm recalibration and evaluation.

``--data`` is either

- an ImageFolder tree (ImageNet layout, ``ROOT/<class>/<image>``), read with timm's dataset and transforms. If it
  has ``train/`` and ``val/`` subfolders, those are the splits; otherwise both splits are the whole folder; or
- ``builtin:digits``: a small real dataset that ships inside an installed package (scikit-learn's copy of the UCI
  handwritten digits: 1,797 8x8 greyscale images of 10 classes), upsampled to the space's input size, so that
  training, accuracy-driven search and their tests run without any download. A fixed 80/20 split (seed 0).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from nas.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
BUILTIN_PREFIX = "builtin:"
BUILTINS = ("digits",)
SPLITS = ("train", "val")


def describe(data: str | Path, split: str) -> str:
    """Where ``split`` of ``data`` comes from, for labels and model cards."""
    if str(data).startswith(BUILTIN_PREFIX):
        return f"{data} ({split} split)"
    root = Path(data)
    return str(root / split if (root / split).is_dir() else root)


def dataset(data: str | Path, split: str, input_size: int, training: bool = False, auto_augment: str | None = None,
            re_prob: float = 0.0) -> torch.utils.data.Dataset:
    """``split`` ('train' or 'val') of ``data`` as (image tensor, label) pairs; ``training`` adds the training
    augmentation (random crops and flips for folders, small shifts for digits). ``auto_augment`` (a timm policy
    such as ``rand-m9-mstd0.5-inc1``) and ``re_prob`` (random erasing) are timm's, for folders only: the
    built-in digits are 8x8 scans upsampled, where they do not apply."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} not in {SPLITS}")
    text = str(data)
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX):]
        if name not in BUILTINS:
            raise UsageError(f"--data {text}: unknown built-in dataset; available: "
                             f"{', '.join(BUILTIN_PREFIX + b for b in BUILTINS)}")
        if auto_augment or re_prob:
            raise UsageError(f"--aa/--reprob apply to ImageFolder data, not {text} (8x8 scans, already shifted "
                             "at random); drop them or use an ImageFolder tree")
        return DigitsDataset(split, input_size, training)
    return _folder_dataset(Path(data), split, input_size, training, auto_augment, re_prob)


def _folder_dataset(root: Path, split: str, input_size: int, training: bool, auto_augment: str | None = None,
                    re_prob: float = 0.0):
    from timm.data import ImageDataset, create_transform

    if not root.is_dir():
        raise UsageError(f"--data {root}: not a folder; expected an ImageFolder tree (DIR/<class>/<image>, "
                         f"optionally under DIR/train and DIR/val) or one of "
                         f"{', '.join(BUILTIN_PREFIX + b for b in BUILTINS)}")
    folder = root / split if (root / split).is_dir() else root
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*")):
        raise UsageError(f"--data {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) under it; expected an "
                         "ImageFolder tree (DIR/<class>/<image>)")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if len(classes) < 2:
        found = f"one class ({classes[0]})" if classes else "no class folders"
        raise UsageError(f"--data {folder}: {found}; expected an ImageFolder tree with at least two classes "
                         "(DIR/<class>/<image>)")
    if training and auto_augment:
        try:
            create_transform(input_size, is_training=True, auto_augment=auto_augment)
        except (AssertionError, ValueError, KeyError, IndexError):   # timm asserts on an unknown policy
            raise UsageError(f"--aa {auto_augment}: not a timm augmentation policy; e.g. rand-m9-mstd0.5-inc1 "
                             "(RandAugment), augmix-m5-w4-d2, original, v0") from None
    transform = (create_transform(input_size, is_training=True, interpolation="bicubic", auto_augment=auto_augment,
                                  re_prob=re_prob) if training
                 else create_transform(input_size, is_training=False, interpolation="bicubic", crop_pct=0.95))
    return ImageDataset(str(folder), transform=transform)


class DigitsDataset(torch.utils.data.Dataset):
    """scikit-learn's handwritten digits (real scans, 8x8, 16 grey levels) as normalised RGB tensors of
    ``input_size``; the split is a fixed 80/20 permutation, so train and val never share an image."""

    VAL_FRACTION = 0.2

    def __init__(self, split: str, input_size: int, training: bool = False):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32) / 16.0          # (N, 8, 8) in [0, 1]
        labels = torch.tensor(digits.target, dtype=torch.long)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        n_val = int(len(labels) * self.VAL_FRACTION)
        keep = order[n_val:] if split == "train" else order[:n_val]
        x = F.interpolate(images[keep, None], size=(input_size, input_size), mode="bilinear", align_corners=False)
        self.images = ((x - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()      # grey -> RGB, mean 0.5 std 0.5
        self.labels = labels[keep]
        self.training = training
        self.shift = max(1, input_size // 16)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        if self.training:   # random translation by up to input_size/16 pixels (pad with background, crop back)
            dy, dx = (int(v) for v in torch.randint(-self.shift, self.shift + 1, (2,)))
            image = torch.roll(F.pad(image, [self.shift] * 4, value=-1.0), (dy, dx), (1, 2))
            image = image[:, self.shift:-self.shift, self.shift:-self.shift]
        return image, int(self.labels[i])


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
