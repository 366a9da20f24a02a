"""Which images each training step sees: a pure function of (seed, step), shared by supernet and stand-alone
training, so that both see the same images in the same order and a resumed run sees what an uninterrupted one
would.

The training split (or a fixed subset of ``max_train_images``, seed 0) is reshuffled every epoch from
(seed, epoch); each image of a step's global batch carries an augmentation seed from (seed, step, position), and
each data-parallel worker (``rank`` of ``world``) takes its contiguous slice of the batch.
"""
from __future__ import annotations

import random

import torch

from nas.errors import UsageError
from supernet.config import TrainConfig


class _SeededItems(torch.utils.data.Dataset):
    """Items keyed by (index, seed): the augmentation of an item is drawn from generators seeded for it, so a
    batch is the same whichever loader worker builds it and whether or not the run was resumed."""

    def __init__(self, base: torch.utils.data.Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]   # map-style datasets here all have a length

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        # the transforms draw from the CPU generator only; torch.manual_seed would also queue a lazy CUDA seeding
        # that formats the call stack, 16% of a small model's training step when done for every image
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        return self.base[index]


class _StepBatches(torch.utils.data.Sampler):
    """This worker's slices of the batches of steps ``start`` .. the end of training, as lists of (index, seed)."""

    def __init__(self, batches: StepBatches, start: int):
        self.batches, self.start = batches, start

    def __len__(self) -> int:
        return self.batches.total_steps - self.start

    def __iter__(self):
        for step in range(self.start, self.batches.total_steps):
            yield self.batches.shard_keys(step)


def collate(items):
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


class StepBatches:
    """The batches of a training run of ``cfg`` (its data, batch size, epochs, seed) for worker ``rank`` of
    ``world``."""

    def __init__(self, cfg: TrainConfig, input_size: int, rank: int = 0, world: int = 1):
        from nas.data import dataset

        self.cfg, self.rank, self.world = cfg, rank, world
        self.train_set = _SeededItems(dataset(cfg.data, "train", input_size, training=True,
                                              auto_augment=cfg.auto_augment, re_prob=cfg.reprob))
        n = len(self.train_set)
        if cfg.max_train_images is not None:
            n = min(n, cfg.max_train_images)
        # a fixed subset (seed 0) when limited, the same on every resume
        self.pool = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(0))[:n]
        self._order: tuple[int, torch.Tensor | None] = (-1, None)
        self.steps_per_epoch = n // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {n} training images of {cfg.data}; "
                             f"use at most {n}")
        self.total_steps = self.steps_per_epoch * cfg.epochs

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The training images in ``epoch``'s order (a new shuffle every epoch; computed once per epoch)."""
        if self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 10_007 + epoch)
            self._order = (epoch, self.pool[torch.randperm(len(self.pool), generator=g)])
        assert self._order[1] is not None
        return self._order[1]

    def batch_keys(self, step: int) -> list[tuple[int, int]]:
        """(image index, augmentation seed) of each image of ``step``'s global batch."""
        epoch, b = divmod(step, self.steps_per_epoch)
        indices = self.epoch_order(epoch)[b * self.cfg.batch_size:(b + 1) * self.cfg.batch_size].tolist()
        base = (self.cfg.seed * 1_000_003 + step) * 4096
        return [(i, base + j) for j, i in enumerate(indices)]

    def shard_keys(self, step: int) -> list[tuple[int, int]]:
        """This worker's contiguous slice of ``step``'s global batch."""
        per = self.cfg.batch_size // self.world
        return self.batch_keys(step)[self.rank * per:(self.rank + 1) * per]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return collate([self.train_set[key] for key in self.shard_keys(step)])

    def loader(self, start: int, workers: int = 0) -> torch.utils.data.DataLoader:
        """This worker's batches from step ``start`` to the end, read by ``workers`` processes (0: this one)."""
        return torch.utils.data.DataLoader(self.train_set, batch_sampler=_StepBatches(self, start),
                                           num_workers=workers, collate_fn=collate)
