"""Spaces whose MB3D blocks choose among token mixers, each with its own knobs (``attention.mixers``)."""
from __future__ import annotations

import itertools

import pytest

from nas.errors import ArchError, SpaceError
from nas.latency.ops import mb3d_op, space_ops
from nas.space import load_space


@pytest.fixture(scope="module")
def hybrid():
    return load_space("efficientformer_hybrid")


def test_hybrid_space_gives_each_mixer_its_own_knobs(hybrid, space):
    assert hybrid.mixers == ("mhsa", "cga", "ssa")
    assert hybrid.knobs("cga").heads == (4, 8) and hybrid.knobs("cga").attn_ratio == 0   # V tied to C / h
    assert hybrid.knobs("ssa").heads == () and hybrid.knobs("ssa").key_dims == ()
    assert len(hybrid.mixer_variants()) == 4 + 4 + 1
    # the same stages as the default space; only the 3D blocks' choices grow
    assert hybrid.stages == space.stages and hybrid.n3d == space.n3d
    assert hybrid.size()["macro"] == space.size()["macro"] and hybrid.size()["fine"] > space.size()["fine"]


@pytest.mark.parametrize("name", ["l1", "l3", "l7"])
def test_hybrid_presets_are_the_default_spaces_timm_models(hybrid, space, name):
    a, b = hybrid.preset(name).to_dict(), space.preset(name).to_dict()
    assert a.pop("space") == "efficientformer_hybrid" and b.pop("space") == "efficientformer"
    assert a == b and set(a["mixers"]) == {"mhsa"}


def test_no_op_for_a_knob_combination_that_cannot_exist(hybrid):
    last = hybrid.stages[-1].widths
    mb3d = [op for op in space_ops(hybrid) if op.kind == "mb3d"]
    assert len(mb3d) == len(last) * len(hybrid.mlp_ratios) * 9
    ssa = [op for op in mb3d if op["mixer"] == "ssa"]
    assert ssa and all(set(dict(op.params)) == {"n", "c", "e", "mixer"} for op in ssa)
    assert all("ar" not in dict(op.params) for op in mb3d if op["mixer"] == "cga")
    # MHSA keeps the signature every table has always used, so tables of the default space stay valid
    assert mb3d_op(hybrid, 448, 4, 8, 32, "mhsa").key == "mb3d|n=49|c=448|e=4|h=8|kd=32|mixer=mhsa|ar=4"
    default_keys = {op.key for op in space_ops(load_space("efficientformer"))}
    assert default_keys < {op.key for op in space_ops(hybrid)}


def test_arch_knobs_follow_the_blocks_mixer(hybrid):
    arch = hybrid.preset("l1").to_dict()
    arch.update(mixers=["ssa"], heads=[0], key_dims=[0])
    assert hybrid.arch_from_dict(arch).blocks()[-1].mixer == "ssa"
    arch.update(heads=[8])
    with pytest.raises(ArchError, match=r"'heads\[0\]' = 8 is not allowed; allowed: 0 \(mixer 'ssa' has no such knob"):
        hybrid.arch_from_dict(arch)
    arch.update(mixers=["cga"], heads=[4], key_dims=[0])
    with pytest.raises(ArchError, match=r"'key_dims\[0\]' = 0 is not allowed; allowed: 16, 32"):
        hybrid.arch_from_dict(arch)
    arch.update(mixers=["nope"])
    with pytest.raises(ArchError, match=r"'mixers\[0\]' = 'nope' is not allowed; allowed: mhsa, cga, ssa"):
        hybrid.arch_from_dict(arch)


def test_sampling_draws_every_mixer_with_its_own_knobs(hybrid):
    archs = [hybrid.sample(seed=s) for s in range(300)]
    blocks = [(m, h, k) for a in archs for m, h, k in zip(a.mixers, a.heads, a.key_dims)]
    assert {m for m, _, _ in blocks} == {"mhsa", "cga", "ssa"}
    assert set(blocks) <= set(hybrid.mixer_variants())
    assert hybrid.largest("cga").mixers == ("cga",) * 8 and hybrid.largest("cga").heads == (8,) * 8
    assert hybrid.smallest("ssa").heads == () and hybrid.largest("ssa").heads == (0,) * 8


def _write(tmp_path, attention: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(f"""
name: s{abs(hash(attention))}
input_size: 32
num_classes: 4
stages:
  - {{widths: [16], depths: [1]}}
  - {{widths: [24, 32], depths: [1, 2]}}
mlp_ratios: [2]
n3d: {{min: 0, max: 2}}
attention: {attention}
""")
    return str(path)


def test_size_counts_each_mixers_own_knobs(tmp_path):
    space = load_space(_write(tmp_path, "{mixers: {mhsa: {heads: [1, 2], key_dims: [8], attn_ratio: 2}, ssa: {}}}"))
    per_block = 2 + 1
    count = sum(2 * per_block ** n3d for d2 in (1, 2) for n3d in range(d2 + 1))
    assert space.size()["fine"] == count
    seen = {space.sample(seed=s).to_json() for s in range(3000)}
    assert len(seen) == count


def test_the_older_list_form_still_loads(tmp_path):
    space = load_space(_write(tmp_path, "{mixers: [mhsa], heads: [1, 2], key_dims: [8], attn_ratio: 2}"))
    assert space.mixer_choices[0][1].to_dict() == {"heads": [1, 2], "key_dims": [8], "attn_ratio": 2}


@pytest.mark.parametrize("attention, message", [
    ("{mixers: {ssa: {heads: [2]}}}", "mixer 'ssa' takes knobs none; got heads"),
    ("{mixers: {cga: {heads: [2]}}}", "mixer 'cga' takes knobs heads, key_dims; got heads"),
    ("{mixers: {cga: {heads: [5], key_dims: [8]}}}", "width 24 is not divisible by 5 heads"),
])
def test_a_space_is_held_to_what_each_mixer_takes(tmp_path, attention, message):
    from supernet.mixers import check_space

    space = load_space(_write(tmp_path, attention))
    with pytest.raises(SpaceError, match=message):
        check_space(space)


def test_every_shipped_space_passes_the_mixer_check():
    from nas.space import known_spaces
    from supernet.mixers import check_space

    for name in known_spaces():
        check_space(load_space(name))


@pytest.mark.parametrize("attention, message", [
    ("{mixers: {mhsa: {heads: [1], colour: 3}}}", "field 'colour' is unknown in attention.mixers.mhsa"),
    ("{mixers: []}", "field 'attention.mixers' = \\[\\]; expected a mapping of mixer name to its knobs"),
])
def test_malformed_mixers_are_one_line_errors(tmp_path, attention, message):
    with pytest.raises(SpaceError, match=message):
        load_space(_write(tmp_path, attention))


def test_ops_of_a_mixer_space_enumerate_its_variants(hybrid):
    combos = {(op["mixer"], dict(op.params).get("h", 0), dict(op.params).get("kd", 0))
              for op in space_ops(hybrid) if op.kind == "mb3d"}
    assert combos == set(hybrid.mixer_variants())
    assert list(itertools.chain(hybrid.knobs("mhsa").variants())) == [(4, 16), (4, 32), (8, 16), (8, 32)]
