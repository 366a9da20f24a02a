"""Images for BatchNorm recalibration and supernet evaluation: any ImageFolder tree (ImageNet layout,
``ROOT/<class>/<image>``), read with timm's dataset and eval transform (resize, center crop, normalize)."""
from __future__ import annotations

from pathlib import Path

import torch

from nas.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def image_batches(root: str | Path, input_size: int, max_images: int, batch_size: int = 32,
                  seed: int = 0, with_labels: bool = False) -> torch.utils.data.DataLoader:
    """Up to ``max_images`` images of ``root`` (a random subset, the same for the same seed), in batches of
    images, or of (images, labels) with ``with_labels``."""
    from timm.data import ImageDataset, create_transform

    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--data {root}: not a folder; expected an ImageFolder tree (DIR/<class>/<image>)")
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.rglob("*")):
        raise UsageError(f"--data {root}: no images ({', '.join(IMAGE_SUFFIXES)}) under it; expected an ImageFolder "
                         "tree (DIR/<class>/<image>)")
    dataset = ImageDataset(str(root), transform=create_transform(input_size, is_training=False,
                                                                 interpolation="bicubic", crop_pct=0.95))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:max_images]
    subset = torch.utils.data.Subset(dataset, order.tolist())
    return torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=0,
                                       collate_fn=_with_labels if with_labels else _images_only)


def _images_only(items):
    return torch.stack([image for image, _ in items])


def _with_labels(items):
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])
