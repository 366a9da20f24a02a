"""Built-in datasets: ``builtin:objects`` is a function of its seed, its splits never share an image, its
difficulty knob widens what one class looks like, and a spelling mistake is one line naming it."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from nas.data import dataset, num_classes
from nas.data.builtin import canonical, parse
from nas.data.objects import CHUNK, ObjectsSpec, Templates, draw_chunk, generate, load_split
from nas.errors import UsageError

SMALL = ObjectsSpec(train=300, val=120, test=120, classes=12)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path / "datasets"))


def test_the_same_seed_draws_the_same_images_and_another_seed_others():
    images, labels = generate(SMALL, "train")
    again, labels_again = generate(SMALL, "train")
    assert images.dtype == np.uint8 and images.shape == (300, 3, 64, 64)
    assert np.array_equal(images, again) and np.array_equal(labels, labels_again)
    other, _ = generate(ObjectsSpec(train=300, classes=12, seed=1), "train")
    assert not np.array_equal(images, other)


def test_an_image_is_the_same_whatever_the_size_of_its_split():
    """Images are drawn in fixed chunks: a split of 300 is the first 300 of a split of 700."""
    small, _ = generate(SMALL, "train")
    big, _ = generate(ObjectsSpec(train=700, classes=12), "train")
    assert np.array_equal(small, big[:300])
    chunk, _ = draw_chunk(SMALL, Templates.of(SMALL), "train", 0, 300)
    assert np.array_equal(chunk, small) and CHUNK >= 300


def test_splits_are_disjoint_and_every_class_is_drawn():
    seen: dict[str, str] = {}
    for split in ("train", "val", "test"):
        images, labels = generate(SMALL, split)
        assert set(labels.tolist()) == set(range(12))
        for image in images:
            digest = hashlib.sha256(image.tobytes()).hexdigest()
            assert digest not in seen, f"an image of {split} is also in {seen.get(digest)}"
            seen[digest] = split


def _spread_within_class(difficulty: float) -> float:
    """Mean pixel distance between images of the same class (one template seen many ways)."""
    images, labels = generate(ObjectsSpec(train=400, classes=4, difficulty=difficulty), "train")
    x = images.astype(np.float32) / 255
    return float(np.mean([np.abs(x[labels == c][:, None] - x[labels == c][None]).mean() for c in range(4)]))


def test_difficulty_widens_what_one_class_looks_like():
    assert _spread_within_class(0.0) < _spread_within_class(0.5) < _spread_within_class(1.0)


def test_a_split_is_cached_on_disk_and_a_broken_cache_is_drawn_again(tmp_path):
    from nas.data import objects

    spec = ObjectsSpec(train=50, classes=3, seed=7)
    first, labels = load_split(spec, "train")
    path = objects._cache_file(spec, "train")
    assert path.exists()
    objects._MEMORY.clear()
    cached, _ = load_split(spec, "train")
    assert np.array_equal(first, cached)
    objects._MEMORY.clear()
    path.write_bytes(b"not an npz")                  # a cache cut short: drawn again, same images
    redrawn, _ = load_split(spec, "train")
    assert np.array_equal(first, redrawn)


def test_the_torch_dataset_normalises_resizes_and_shifts_only_when_training():
    data = "builtin:objects:train=40,val=20,test=20,classes=5"
    val = dataset(data, "val", 64)
    image, label = val[0]
    assert image.shape == (3, 64, 64) and 0 <= label < 5 and -1.0 <= float(image.min()) <= float(image.max()) <= 1.0
    assert dataset(data, "val", 32)[0][0].shape == (3, 32, 32)
    assert bool((val[0][0] == val[0][0]).all())            # evaluation is deterministic
    train = dataset(data, "train", 64, training=True)
    import torch

    torch.manual_seed(0)
    a = train[0][0]
    torch.manual_seed(1)
    b = train[0][0]
    assert a.shape == b.shape and not torch.equal(a, b)    # a random shift


def test_settings_are_parsed_and_spelled_one_way():
    record, spec = parse("builtin:objects:difficulty=0.8,classes=12")
    assert record.name == "objects" and spec.difficulty == 0.8 and spec.classes == 12 and spec.train == 20000
    assert canonical("builtin:objects:classes=30,difficulty=0.8") == "builtin:objects:difficulty=0.8"
    assert num_classes("builtin:objects:classes=12") == 12 and num_classes("builtin:digits") == 10


@pytest.mark.parametrize("text, words", [
    ("builtin:nosuch", "unknown built-in dataset 'nosuch'; available: builtin:digits, builtin:objects"),
    ("builtin:objects:colour=1", "accepted: seed=, difficulty=, classes="),
    ("builtin:objects:difficulty=1.5", "difficulty=1.5 is out of range; accepted: 0.0 to 1.0"),
    ("builtin:objects:classes=many", "classes='many' is not an integer"),
    ("builtin:objects:seed=1,seed=2", "seed is given twice"),
    ("builtin:digits:seed=1", "is not a setting of builtin:digits; accepted: none"),
])
def test_bad_settings_are_one_usage_error_naming_them(text, words):
    with pytest.raises(UsageError) as err:
        parse(text)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_split_the_dataset_lacks_is_refused():
    with pytest.raises(UsageError, match="has no test split"):
        dataset("builtin:digits", "test", 64)
