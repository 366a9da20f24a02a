"""``builtin:digits``: scikit-learn's copy of the UCI handwritten digits (1,797 real 8x8 scans of 10 classes, 16
grey levels), upsampled to the space's input size. Easy (every tiny arch reaches 97-99%), small and real: the demo
and test set. A fixed 80/20 train/val split (seed 0); there is no test split."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nas.data.builtin import BuiltinDataset, register


@dataclass(frozen=True)
class DigitsSpec:
    """No settings."""


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


register(BuiltinDataset(
    name="digits", summary="scikit-learn's 1,797 handwritten 8x8 digits, 10 classes (easy; train/val)",
    spec_type=DigitsSpec, splits=("train", "val"), num_classes=lambda spec: 10,
    build=lambda spec, split, input_size, training: DigitsDataset(split, input_size, training)))
