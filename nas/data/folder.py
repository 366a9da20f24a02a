"""ImageFolder trees (ImageNet layout, ``ROOT/<class>/<image>``, optionally under ``ROOT/train``, ``ROOT/val`` and
``ROOT/test``), read with timm's dataset and transforms."""
from __future__ import annotations

from pathlib import Path

from nas.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def split_folder(root: Path, split: str) -> Path:
    """Where ``split`` lives: ``ROOT/split`` when it exists, else the whole tree."""
    return root / split if (root / split).is_dir() else root


def class_names(root: Path, split: str = "train") -> list[str]:
    """The class folders of ``split``, refused in one line when the tree is not an ImageFolder."""
    from nas.data import builtin

    if not root.is_dir():
        raise UsageError(f"--data {root}: not a folder; expected an ImageFolder tree (DIR/<class>/<image>, "
                         f"optionally under DIR/train and DIR/val) or one of {', '.join(builtin.names())}")
    folder = split_folder(root, split)
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*")):
        raise UsageError(f"--data {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) under it; expected an "
                         "ImageFolder tree (DIR/<class>/<image>)")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if len(classes) < 2:
        found = f"one class ({classes[0]})" if classes else "no class folders"
        raise UsageError(f"--data {folder}: {found}; expected an ImageFolder tree with at least two classes "
                         "(DIR/<class>/<image>)")
    return classes


def folder_dataset(root: Path, split: str, input_size: int, training: bool, auto_augment: str | None = None,
                   re_prob: float = 0.0):
    from timm.data import ImageDataset, create_transform

    class_names(root, split)
    if training and auto_augment:
        try:
            create_transform(input_size, is_training=True, auto_augment=auto_augment)
        except (AssertionError, ValueError, KeyError, IndexError):   # timm asserts on an unknown policy
            raise UsageError(f"--aa {auto_augment}: not a timm augmentation policy; e.g. rand-m9-mstd0.5-inc1 "
                             "(RandAugment), augmix-m5-w4-d2, original, v0") from None
    transform = (create_transform(input_size, is_training=True, interpolation="bicubic", auto_augment=auto_augment,
                                  re_prob=re_prob) if training
                 else create_transform(input_size, is_training=False, interpolation="bicubic", crop_pct=0.95))
    return ImageDataset(str(split_folder(root, split)), transform=transform)
