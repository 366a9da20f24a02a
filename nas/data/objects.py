"""``builtin:objects``: procedurally generated objects, a hard classification set that ships as code.

Why it exists: the ranking check (``nas supernet rank``) needs data on which archs of the tiny spaces *differ*
after a short training, and no installable wheel bundles natural images (sklearn's digits are solved to 97-99% by
every tiny arch). So the images are drawn here, deterministically from a seed, the way natural categories look to
a classifier:

- every **class** is an object template: ``PARTS`` primitives (ellipse, box, triangle, ring), each with its
  offset, size, elongation, orientation, colour from a small shared palette (so colour alone does not tell the
  classes apart) and a striped or plain fill;
- every **image** draws one template under a random pose (position, scale, rotation), jitters each part (offset,
  size, colour), drops parts now and then (occlusion), on a gradient background with clutter parts of random
  colours, plus pixel noise.

``difficulty`` in [0, 1] scales all of the variation at once (0: upright, full-size, unjittered, no clutter);
``classes`` sets the number of templates. At the defaults (30 classes, difficulty 0.5) short trainings of the tiny
spaces' archs spread over tens of points of top-1 while one arch's seeds agree within a few, and a linear model on
raw pixels does far worse: the figures are in docs/benchmarks.md (``benchmarks/ranking.py`` measures them).

Every image is a function of (seed, split, index): the three splits come from separate random streams (so they
never share an image) and are generated in fixed chunks, so a split is the same on every machine and in every
process that asks for it. Generated splits are kept in memory and in a cache folder (``NAS_DATA_DIR``, default
``~/.cache/nas/datasets``), written atomically; a missing or unreadable cache is regenerated.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1          # bump when the drawing changes: it names the cache files
PRIMITIVES = ("ellipse", "box", "triangle", "ring")
PARTS = 4                      # primitives per template
CHUNK = 500                    # images drawn per random stream: fixed, so the data do not depend on batching
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
# Fill colours of template parts and clutter: a small shared palette, so a colour narrows the class down without
# naming it (a linear model on pixels gets the colours, not the arrangement)
PALETTE = np.array([[0.90, 0.20, 0.20], [0.20, 0.80, 0.30], [0.20, 0.30, 0.90], [0.95, 0.85, 0.20],
                    [0.80, 0.30, 0.85], [0.20, 0.85, 0.85], [0.95, 0.55, 0.15], [0.50, 0.50, 0.50]], np.float32)
F32 = np.float32


@dataclass(frozen=True)
class ObjectsSpec:
    """What ``builtin:objects[:key=value,...]`` names; every field is a key of that spelling."""

    seed: int = 0
    difficulty: float = 0.5
    classes: int = 30
    train: int = 20000
    val: int = 2000
    test: int = 2000
    size: int = 64               # side of the drawn images (resized to a space's input size when it differs)

    LIMITS = {"seed": (0, 2**31 - 1), "difficulty": (0.0, 1.0), "classes": (2, 1000), "train": (1, 1_000_000),
              "val": (1, 1_000_000), "test": (1, 1_000_000), "size": (16, 512)}

    def count(self, split: str) -> int:
        return int(getattr(self, split))

    def digest(self) -> str:
        """Names this spec's cache files (and the generator version that drew them)."""
        text = repr(sorted(asdict(self).items())) + f"v{GENERATOR_VERSION}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------- drawing


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0) -> np.ndarray:
    return rng.random(shape, dtype=F32) * F32(high - low) + F32(low)


def _primitive_distance(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside, in units of the part's size) of primitive ``kind`` at (u, v)."""
    if kind == 0:                                     # ellipse (a circle before elongation)
        return np.sqrt(u * u + v * v) - 1
    if kind == 1:                                     # box
        return np.maximum(np.abs(u), np.abs(v)) - 1
    if kind == 2:                                     # equilateral triangle: the largest of its edge distances
        edges = [u * F32(math.cos(a)) + v * F32(math.sin(a)) - F32(0.5)
                 for a in (2 * math.pi * (i + 0.5) / 3 + math.pi / 2 for i in range(3))]
        return np.maximum(np.maximum(edges[0], edges[1]), edges[2])
    return np.abs(np.sqrt(u * u + v * v) - F32(0.7)) - F32(0.3)   # ring


def _paint(img: np.ndarray, kinds: np.ndarray, cx: np.ndarray, cy: np.ndarray, size: np.ndarray,
           elongation: np.ndarray, angle: np.ndarray, colour: np.ndarray, striped: np.ndarray,
           grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Paint one primitive on every image of ``img`` (n, 3, H, W), anti-aliased over one pixel. Per-image arguments
    are shaped (n, 1, 1), ``colour`` (n, 3, 1, 1), ``kinds`` and ``striped`` (n,)."""
    yy, xx = grid
    n, side = len(kinds), xx.shape[-1]
    cos, sin, stretch = np.cos(angle), np.sin(angle), np.exp(elongation)
    dx, dy = (xx - cx) / size, (yy - cy) / size
    u, v = (dx * cos + dy * sin) * stretch, (-dx * sin + dy * cos) / stretch
    coverage = np.empty((n, side, side), F32)
    for kind in range(len(PRIMITIVES)):
        i = np.nonzero(kinds == kind)[0]
        if len(i):   # distance in pixels (approximately: the elongation bends it), clipped to a 1-pixel ramp
            coverage[i] = np.clip(F32(0.5) - _primitive_distance(kind, u[i], v[i]) * size[i] / stretch[i], 0, 1)
    fill = np.where(striped[:, None, None], F32(0.5) + F32(0.5) * (np.sin(u * F32(6)) > 0), F32(1.0))
    return img + (colour * fill[:, None] - img) * coverage[:, None]


@dataclass(frozen=True)
class Templates:
    kind: np.ndarray        # (classes, PARTS) primitive index
    offset: np.ndarray      # (classes, PARTS, 2) part centre in the object's frame (units of its radius)
    size: np.ndarray        # (classes, PARTS) part size (units of the object's radius)
    elongation: np.ndarray  # (classes, PARTS) log aspect ratio
    angle: np.ndarray       # (classes, PARTS) orientation in the object's frame
    colour: np.ndarray      # (classes, PARTS) palette index
    striped: np.ndarray     # (classes, PARTS) bool

    @classmethod
    def of(cls, spec: ObjectsSpec) -> Templates:
        rng = np.random.default_rng([spec.seed, 0x7E4D1A7E])   # a stream of its own, apart from every split's
        shape = (spec.classes, PARTS)
        return cls(kind=rng.integers(0, len(PRIMITIVES), shape), offset=_uniform(rng, (*shape, 2), -0.55, 0.55),
                   size=_uniform(rng, shape, 0.2, 0.5), elongation=_uniform(rng, shape, -0.5, 0.5),
                   angle=_uniform(rng, shape, 0, math.pi), colour=rng.integers(0, len(PALETTE), shape),
                   striped=rng.random(shape) < 0.4)


def draw_chunk(spec: ObjectsSpec, templates: Templates, split: str, chunk: int, n: int = CHUNK
               ) -> tuple[np.ndarray, np.ndarray]:
    """Images ``chunk * CHUNK`` .. ``+ n`` of ``split``: uint8 (n, 3, size, size) and int64 labels (n,). A whole
    chunk is always drawn (the random draws' shapes depend on its size), so an image does not depend on how many
    the split holds."""
    images, labels = _draw(spec, templates, np.random.default_rng([spec.seed, SPLIT_INDEX[split], chunk]), CHUNK)
    return images[:n], labels[:n]


def _draw(spec: ObjectsSpec, templates: Templates, rng: np.random.Generator, n: int
          ) -> tuple[np.ndarray, np.ndarray]:
    d, side = F32(spec.difficulty), spec.size
    g = np.arange(side, dtype=F32) + F32(0.5)
    grid = (g[None, :, None], g[None, None, :])
    labels = rng.integers(0, spec.classes, n)

    # background: a gradient between two random colours, then clutter parts of random kinds and palette colours
    low, high = _uniform(rng, (n, 3, 1, 1)), _uniform(rng, (n, 3, 1, 1))
    tilt = _uniform(rng, (n, 1, 1), 0, 2 * math.pi)
    ramp = np.clip((grid[1] * np.cos(tilt) + grid[0] * np.sin(tilt)) / F32(1.5 * side) + F32(0.5), 0, 1)
    img = low + (high - low) * ramp[:, None] * F32(0.6)
    for _ in range(int(round(6 * float(d)))):
        colour = PALETTE[rng.integers(0, len(PALETTE), n)][:, :, None, None] + _uniform(rng, (n, 3, 1, 1), -0.15, 0.15)
        img = _paint(img, rng.integers(0, len(PRIMITIVES), n), _uniform(rng, (n, 1, 1), 0, side),
                     _uniform(rng, (n, 1, 1), 0, side), _uniform(rng, (n, 1, 1), side * 0.04, side * 0.12),
                     _uniform(rng, (n, 1, 1), -0.5, 0.5), _uniform(rng, (n, 1, 1), 0, math.pi), colour,
                     rng.random(n) < 0.4, grid)

    # the object: pose, then its parts, each jittered and sometimes dropped
    radius = _uniform(rng, (n, 1, 1), side * (0.42 - 0.2 * float(d)), side * 0.42)
    turn = _uniform(rng, (n, 1, 1), -math.pi * float(d), math.pi * float(d))
    room = side * 0.5 - radius * F32(0.7)
    ox = F32(side / 2) + room * _uniform(rng, (n, 1, 1), -1, 1)
    oy = F32(side / 2) + room * _uniform(rng, (n, 1, 1), -1, 1)
    cos, sin = np.cos(turn)[:, 0, 0], np.sin(turn)[:, 0, 0]
    dropped = rng.random((n, PARTS)) < 0.25 * float(d)
    t = templates
    for k in range(PARTS):
        off = t.offset[labels, k] + _uniform(rng, (n, 2), -0.15, 0.15) * d
        px = ox + radius * (off[:, 0] * cos - off[:, 1] * sin)[:, None, None]
        py = oy + radius * (off[:, 0] * sin + off[:, 1] * cos)[:, None, None]
        size = radius * t.size[labels, k][:, None, None] * _uniform(rng, (n, 1, 1), 1 - 0.3 * float(d),
                                                                     1 + 0.3 * float(d))
        colour = PALETTE[t.colour[labels, k]][:, :, None, None] + _uniform(rng, (n, 3, 1, 1), -0.25, 0.25) * d
        painted = _paint(img, t.kind[labels, k], px, py, size, t.elongation[labels, k][:, None, None],
                         t.angle[labels, k][:, None, None] + turn, colour, t.striped[labels, k], grid)
        img = np.where(dropped[:, k, None, None, None], img, painted)
    img += rng.standard_normal(img.shape, dtype=F32) * (F32(0.02) + F32(0.08) * d)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), labels.astype(np.int64)


def generate(spec: ObjectsSpec, split: str, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All of ``split``: uint8 images (N, 3, size, size) and labels (N,)."""
    templates = Templates.of(spec)
    total = spec.count(split)
    chunks = range(math.ceil(total / CHUNK))
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=f"builtin:objects {split}", unit="chunk", dynamic_ncols=True, leave=False)
    parts = [draw_chunk(spec, templates, split, c, min(CHUNK, total - c * CHUNK)) for c in chunks]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ------------------------------------------------------------------------------------------------- caching


def cache_dir() -> Path:
    return Path(os.environ.get("NAS_DATA_DIR", Path.home() / ".cache" / "nas" / "datasets"))


_MEMORY: dict[tuple[ObjectsSpec, str], tuple[np.ndarray, np.ndarray]] = {}


def load_split(spec: ObjectsSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``split`` of ``spec``: from this process's memory, else the cache folder, else drawn (and cached)."""
    key = (spec, split)
    if key not in _MEMORY:
        _MEMORY[key] = _from_disk(spec, split) or _draw_and_store(spec, split)
    return _MEMORY[key]


def _cache_file(spec: ObjectsSpec, split: str) -> Path:
    return cache_dir() / f"objects-{spec.digest()}-{split}.npz"


def _from_disk(spec: ObjectsSpec, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = _cache_file(spec, split)
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
    except (OSError, ValueError, KeyError):      # absent, unreadable or cut short: draw it again
        return None
    n, side = spec.count(split), spec.size
    if images.shape != (n, 3, side, side) or images.dtype != np.uint8 or labels.shape != (n,):
        return None
    if labels.min() < 0 or labels.max() >= spec.classes:
        return None
    return images, labels


def _draw_and_store(spec: ObjectsSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    import sys

    big = spec.count(split) >= 4 * CHUNK
    if big:
        print(f"nas: drawing builtin:objects {split} ({spec.count(split)} images, once; cached in {cache_dir()})",
              file=sys.stderr)
    images, labels = generate(spec, split, progress=big and sys.stderr.isatty())
    _store(_cache_file(spec, split), images, labels)
    return images, labels


def _store(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the cache file through a staging file of this process's own (several processes, Ray workers say,
    may draw the same split at once: each replaces the file whole, and readers see one of them)."""
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError:          # a read-only home, or a file where the folder should be: the data are only not kept
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, labels=labels)
        os.replace(staging, path)
    except OSError:          # a full disk: likewise
        Path(staging).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- as a dataset


class ObjectsDataset:
    """A split as (normalised RGB tensor of ``input_size``, label) pairs (mean 0.5, std 0.5, as ``builtin:digits``);
    ``training`` adds a random translation by up to 1/16 of the side (the only augmentation: the drawing varies
    pose, colour and clutter already)."""

    def __init__(self, spec: ObjectsSpec, split: str, input_size: int, training: bool = False):
        import torch

        images, labels = load_split(spec, split)
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
        self.input_size, self.native, self.training = input_size, spec.size, training
        self.shift = max(1, input_size // 16)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        import torch
        import torch.nn.functional as F

        image = self.images[i].float().div_(127.5).sub_(1.0)
        if self.input_size != self.native:
            image = F.interpolate(image[None], size=(self.input_size, self.input_size), mode="bilinear",
                                  align_corners=False, antialias=self.input_size < self.native)[0]
        if self.training:   # shift by up to 1/16 of the side, the uncovered border repeating the edge pixels
            dy, dx = (int(v) for v in torch.randint(-self.shift, self.shift + 1, (2,)))
            s = self.shift
            image = F.pad(image[None], [s] * 4, mode="replicate")[0, :, s + dy:s + dy + self.input_size,
                                                                   s + dx:s + dx + self.input_size]
        return image, int(self.labels[i])


def _register() -> None:
    from nas.data.builtin import BuiltinDataset, register

    register(BuiltinDataset(
        name="objects", summary="procedurally drawn objects (templates of 4 parts under pose, jitter, occlusion "
                                "and clutter), 30 classes by default; hard; train/val/test",
        spec_type=ObjectsSpec, splits=("train", "val", "test"), num_classes=lambda spec: spec.classes,
        build=lambda spec, split, input_size, training: ObjectsDataset(spec, split, input_size, training)))


_register()
