import itertools
import json
from pathlib import Path

import pytest

from nas.errors import ArchError, SpaceError
from nas.space import Arch, load_space

TIMM_CONFIGS = {  # timm/models/efficientformer.py: EfficientFormer_width / _depth and num_vit
    "l1": ((48, 96, 224, 448), (3, 2, 6, 4), 1),
    "l3": ((64, 128, 320, 512), (4, 4, 12, 6), 4),
    "l7": ((96, 192, 384, 768), (6, 6, 18, 8), 8),
}


@pytest.mark.parametrize("name", sorted(TIMM_CONFIGS))
def test_presets_are_timm_models(space, name):
    arch = space.preset(name)
    widths, depths, n3d = TIMM_CONFIGS[name]
    assert (arch.widths, arch.depths, arch.n3d) == (widths, depths, n3d)
    assert all(e == 4 for stage in arch.mlp_ratios for e in stage)
    assert arch.heads == (8,) * n3d and arch.key_dims == (32,) * n3d


def test_space_covers_l1_to_l7(space):
    for s, stage in enumerate(space.stages):
        assert all(w % 16 == 0 for w in stage.widths)
        assert min(stage.widths) == TIMM_CONFIGS["l1"][0][s] and max(stage.widths) == TIMM_CONFIGS["l7"][0][s]
        assert min(stage.depths) == TIMM_CONFIGS["l1"][1][s] and max(stage.depths) == TIMM_CONFIGS["l7"][1][s]
    assert space.mlp_ratios == (2, 3, 4) and space.n3d == tuple(range(0, 9))
    assert space.resolutions() == (56, 28, 14, 7)


def test_sample_is_deterministic_and_valid(space):
    a, b = [space.sample(seed=s) for s in (7, 7)]
    assert a == b
    archs = {space.sample(seed=s).to_json() for s in range(50)}
    assert len(archs) == 50
    for text in archs:
        arch = Arch.from_json(text)
        assert space.validate(arch) == arch
        assert 0 <= arch.n3d <= arch.depths[-1]
        assert [len(r) for r in arch.mlp_ratios] == list(arch.depths)


def test_json_round_trip(space):
    arch = space.sample(seed=3)
    assert Arch.from_json(arch.to_json()) == arch
    assert json.loads(arch.to_json())["space"] == "efficientformer"


def test_blocks_partition(space):
    blocks = space.preset("l3").blocks()
    assert len(blocks) == sum((4, 4, 12, 6))
    kinds = [b.kind for b in blocks]
    assert kinds[-4:] == ["3d"] * 4 and set(kinds[:-4]) == {"4d"}
    assert all(b.stage == 3 for b in blocks if b.kind == "3d")


def _bad(space, change):
    data = space.preset("l1").to_dict()
    data.update(change)
    return data


@pytest.mark.parametrize("change, field, allowed", [
    ({"widths": [48, 96, 230, 448]}, "widths[2]", "224, 240, ..., 384"),
    ({"depths": [3, 2, 6, 9]}, "depths[3]", "4, 5, 6, 7, 8"),
    ({"n3d": 5}, "n3d", "at most depths[3] = 4"),
    ({"heads": [6]}, "heads[0]", "4, 8"),
    ({"key_dims": [64]}, "key_dims[0]", "16, 32"),
    ({"mixers": ["swin"]}, "mixers[0]", "mhsa"),
    ({"widths": [48, 96, 224]}, "widths", "4 entries"),
    ({"colour": "red"}, "colour", "allowed fields"),
    ({"space": "other"}, "space", "efficientformer"),
])
def test_bad_arch_names_field_and_allowed_values(space, change, field, allowed):
    with pytest.raises(ArchError) as err:
        Arch.from_dict(_bad(space, change), space)
    message = str(err.value)
    assert repr(field) in message and allowed in message
    assert "\n" not in message


def test_bad_mlp_ratio_and_missing_field(space):
    data = space.preset("l1").to_dict()
    data["mlp_ratios"][1][0] = 5
    with pytest.raises(ArchError, match=r"'mlp_ratios\[1\]\[0\]' = 5 is not allowed; allowed: 2, 3, 4"):
        Arch.from_dict(data)
    del data["n3d"]
    with pytest.raises(ArchError, match="'n3d' is missing"):
        Arch.from_dict(data)
    with pytest.raises(ArchError, match="not valid JSON"):
        Arch.from_json("{widths: [")


def test_unknown_space_and_preset(space):
    with pytest.raises(SpaceError, match="unknown search space 'nope'; known: efficientformer"):
        load_space("nope")
    with pytest.raises(ArchError, match="unknown preset 'l9'.*l1, l3, l7"):
        space.preset("l9")


def test_size_matches_enumeration(tmp_path):
    """The closed-form size equals a brute-force count on a space small enough to enumerate."""
    path = tmp_path / "micro.yaml"
    path.write_text("""
name: micro
input_size: 32
num_classes: 4
stages:
  - {widths: [16], depths: [1]}
  - {widths: [16, 32], depths: [1, 2]}
mlp_ratios: [2, 4]
n3d: {min: 0, max: 2}
attention: {mixers: [mhsa], heads: [1, 2], key_dims: [8], attn_ratio: 2}
""")
    space = load_space(path)
    count = 0
    for d2 in (1, 2):
        for n3d in range(0, d2 + 1):
            ratios = list(itertools.product((2, 4), repeat=1 + d2))
            count += 2 * len(ratios) * 2 ** n3d    # 2 widths of stage 2; heads per 3D block
    assert space.size()["fine"] == count
    assert space.size()["macro"] == 2 * (2 + 3)
    seen = {space.sample(seed=s).to_json() for s in range(2000)}
    assert len(seen) == count   # sampling reaches every point of this small space


# ---------------------------------------------------------------------------------------- slots


def test_slots_are_optional_and_the_prefix_form_is_stored_without_them(tiny):
    data = tiny.largest().to_dict()
    assert "slots" not in data                                   # files written before slots still mean the same
    explicit = tiny.arch_from_dict({**data, "slots": [[0, 1], [0, 1], [0, 1, 2], [0, 1, 2]]})
    assert explicit == tiny.largest() and "slots" not in explicit.to_dict()
    data["depths"][0], data["mlp_ratios"][0] = 1, [4]
    kept = tiny.arch_from_dict({**data, "slots": [[1], [0, 1], [0, 1, 2], [0, 1, 2]]})
    assert kept.to_dict()["slots"][0] == [1] and kept.stage_slots(0) == (1,)
    assert Arch.from_json(kept.to_json()) == kept


@pytest.mark.parametrize("slots, words", [
    ([[1, 0], [0, 1], [0, 1, 2], [0, 1, 2]], "not increasing"),
    ([[0, 2], [0, 1], [0, 1, 2], [0, 1, 2]], "slots[0][1]"),
    ([[0, 1], [0, 1], [0, 1, 2]], "list of 4"),
    ([[0], [0, 1], [0, 1, 2], [0, 1, 2]], "2 entries"),
])
def test_bad_slots_are_refused_naming_the_field(tiny, slots, words):
    data = {**tiny.largest().to_dict(), "slots": slots}
    with pytest.raises(ArchError, match=None) as info:
        tiny.arch_from_dict(data)
    assert words in str(info.value)


def test_mb3d_blocks_may_use_any_slot_that_holds_mb3d_weights(tmp_path):
    text = (Path(__file__).parents[2] / "search_spaces" / "tiny.yaml").read_text()
    text = text.replace("name: tiny", "name: tiny_one3d").replace("n3d: {min: 0, max: 3}", "n3d: [0, 1]")
    text = text.replace("{widths: [64, 80], depths: {min: 1, max: 3}}", "{widths: [64, 80], depths: [2, 3]}")
    text = text.split("presets:")[0]
    path = tmp_path / "tiny_one3d.yaml"
    path.write_text(text)
    one3d = load_space(path)
    assert list(one3d.positions_3d()) == [1, 2]            # no MB3D weights at position 0
    data = one3d.largest().to_dict()
    data.update(depths=[2, 2, 3, 2], mlp_ratios=[[4, 4], [4, 4], [4, 4, 4], [4, 4]])
    data["slots"] = [[0, 1], [0, 1], [0, 1, 2], [0, 2]]
    assert one3d.arch_from_dict(data).blocks()[-1].slot == 2
    data["slots"][3] = [1, 2]
    assert one3d.arch_from_dict(data).blocks()[-2].slot == 1
    # increasing slots of a stage at least its minimum depth always put its last n3d blocks at positions_3d
    # (>= min depth - max n3d): the check in SearchSpace._slots guards against a space edited under a file
