"""The supernet of a space whose MB3D blocks choose among token mixers: each mixer its own weights, every subnet
run by slicing equals its extracted plain model, and the default space's timm models are still exact."""
from __future__ import annotations

import pytest
import timm
import torch

from nas.space import load_space
from supernet import EfficientFormerNet, Supernet
from tests.helpers import randomize_


@pytest.fixture(scope="module")
def hybrid_supernet(tiny_hybrid):
    torch.manual_seed(0)
    return randomize_(Supernet(tiny_hybrid), seed=2).eval()


def _all_three(space, heads=(2, 4, 0), key_dims=(8, 16, 0), width=80):
    return space.arch_from_dict({"space": space.name, "widths": [16, 32, 48, width], "depths": [1, 1, 1, 3],
                                 "n3d": 3, "mlp_ratios": [[2], [2], [2], [2, 3, 4]], "heads": list(heads),
                                 "key_dims": list(key_dims), "mixers": ["mhsa", "cga", "ssa"]})


def _diff(net: Supernet, arch, x) -> tuple[float, float]:
    net.set_active(arch)
    with torch.no_grad():
        y = net(x)
        return (y - net.extract(arch).eval()(x)).abs().max().item(), y.abs().max().item()


@pytest.mark.parametrize("arch_of", [
    lambda s: _all_three(s),
    lambda s: _all_three(s, heads=(4, 2, 0), key_dims=(16, 8, 0), width=64),
    lambda s: _all_three(s, heads=(2, 4, 0), key_dims=(8, 8, 0), width=64),
    lambda s: s.largest("cga"), lambda s: s.smallest("ssa"),
] + [lambda s, seed=seed: s.sample(seed=seed) for seed in range(8)])
def test_extract_equals_the_supernet_for_every_mixer(hybrid_supernet, tiny_hybrid, arch_of):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    diff, scale = _diff(hybrid_supernet, arch_of(tiny_hybrid), x)
    assert scale > 1e-2 and diff <= 1e-5


def test_each_mixer_has_its_own_slot_weights(tiny_hybrid):
    net = Supernet(tiny_hybrid)
    slots = net.super_stages[-1].blocks3d
    assert {key.split("_", 1)[1] for key in slots} == {"mhsa", "cga", "ssa"}
    ids = {key: {id(p) for p in slots[key].parameters()} for key in slots}
    keys = list(ids)
    assert all(not ids[a] & ids[b] for i, a in enumerate(keys) for b in keys[i + 1:])
    # CGA keeps one weight set per head count: heads share poorly (C / h changes every head's input)
    assert set(slots["0_cga"].token_mixer.per_heads) == {"2", "4"}


def test_a_training_step_reaches_the_active_mixers_only(tiny_hybrid):
    net = Supernet(tiny_hybrid).train()
    arch = _all_three(tiny_hybrid)
    net.set_active(arch)
    net(torch.randn(4, 3, 64, 64)).square().mean().backward()
    slots = net.super_stages[-1].blocks3d
    active = {f"{b.index}_{b.mixer}" for b in arch.blocks() if b.kind == "3d"}
    assert active == {"0_mhsa", "1_cga", "2_ssa"}
    for key, slot in slots.items():
        touched = any(p.grad is not None and p.grad.abs().sum() > 0 for p in slot.token_mixer.parameters())
        assert touched == (key in active), key


@pytest.mark.slow
def test_timm_l1_loads_into_the_hybrid_supernet_exactly():
    hybrid = load_space("efficientformer_hybrid")
    model = randomize_(timm.create_model("efficientformer_l1"), seed=4).eval()
    net = Supernet(hybrid).eval()
    arch = net.load_timm(model)
    assert arch == hybrid.preset("l1")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
        assert (net.extract(arch).eval()(x) - want).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["l3", "l7"])
def test_hybrid_presets_build_timms_networks(name):
    """Same modules, names and shapes as timm's (L1's logits are checked above; the arch equals the default
    space's preset, whose logits test_timm_interop checks for all three)."""
    hybrid = load_space("efficientformer_hybrid")
    ours = EfficientFormerNet.from_arch(hybrid.preset(name), hybrid).state_dict()
    theirs = timm.create_model(f"efficientformer_{name}").state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_sandwich_training_takes_each_mixer_in_turn(tiny_hybrid):
    from supernet.config import TrainConfig
    from supernet.train import SupernetTrainer

    trainer = SupernetTrainer(TrainConfig("tiny_hybrid", "builtin:digits", epochs=1, batch_size=8,
                                          max_train_images=24, num_random=1))
    assert [trainer.teacher(step).mixers for step in range(3)] == [(m,) * 3 for m in ("mhsa", "cga", "ssa")]
    assert trainer.students(1)[0] == tiny_hybrid.smallest("cga")
    slots = trainer.net.super_stages[-1].blocks3d
    before = {key: [p.detach().clone() for p in slot.token_mixer.parameters()] for key, slot in slots.items()}
    losses = [trainer.train_step() for _ in range(3)]
    assert all(loss == loss and loss > 0 for loss in losses)             # finite
    for mixer in tiny_hybrid.mixers:      # the largest subnet of each mixer trained its last slot (position 2)
        after = list(slots[f"2_{mixer}"].token_mixer.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(after, before[f"2_{mixer}"])), mixer


def test_training_and_eval_report_the_largest_of_every_mixer(tiny_hybrid, tiny):
    from supernet.evaluate import ends_of_space

    ends = ends_of_space(tiny_hybrid)
    assert list(ends) == ["largest", "smallest", "largest_cga", "largest_ssa"]
    assert ends["largest_ssa"].mixers == ("ssa",) * 3
    assert list(ends_of_space(tiny)) == ["largest", "smallest"]        # one mixer: as before
