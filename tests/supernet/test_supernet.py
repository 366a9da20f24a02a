import copy

import pytest
import torch
import torch.nn as nn

from nas.errors import ArchError
from supernet import EfficientFormerNet, Supernet, elastic
from tests.helpers import randomize_


@pytest.fixture(scope="module")
def supernet(space):
    torch.manual_seed(0)
    return randomize_(Supernet(space), seed=1).eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def _max_diff(net: Supernet, arch, x) -> tuple[float, float]:
    net.set_active(arch)
    sub = net.extract(arch).eval()
    with torch.no_grad():
        y_super, y_sub = net(x), sub(x)
    return (y_super - y_sub).abs().max().item(), y_super.abs().max().item()


@pytest.mark.parametrize("preset", ["l1", "l3", "l7"])
def test_extract_equals_supernet_on_presets(supernet, space, image, preset):
    diff, scale = _max_diff(supernet, space.preset(preset), image)
    assert scale > 1e-2          # the output is not trivially zero
    assert diff <= 1e-5


@pytest.mark.parametrize("seed", range(20))
def test_extract_equals_supernet_on_random_archs(supernet, space, image, seed):
    diff, scale = _max_diff(supernet, space.sample(seed=seed), image)
    assert scale > 1e-2
    assert diff <= 1e-5


def test_extracted_model_is_plain_and_standalone(space, image):
    net = randomize_(Supernet(space), seed=2).eval()
    arch = space.sample(seed=11)
    net.set_active(arch)
    sub = net.extract(arch).eval()
    assert isinstance(sub, EfficientFormerNet)
    assert not any(type(m).__module__ == elastic.__name__ for m in sub.modules())
    with torch.no_grad():
        before = sub(image)
        for p in net.parameters():     # the extracted weights are copies, not views of the supernet
            p.add_(1.0)
        assert torch.equal(sub(image), before)
    assert sub.arch_config["widths"] == list(arch.widths)
    rebuilt = EfficientFormerNet(**{k: v for k, v in sub.arch_config.items()})
    rebuilt.load_state_dict(sub.state_dict())    # arch_config alone recreates the model


def test_tiny_space_all_4d_and_train_mode(tiny):
    net = randomize_(Supernet(tiny), seed=3)
    x = torch.randn(4, 3, 64, 64)
    arch = tiny.sample(seed=0)
    arch = tiny.arch_from_dict({**arch.to_dict(), "n3d": 0, "heads": [], "key_dims": [], "mixers": []})
    net.set_active(arch)
    sub = net.extract(arch)
    assert sub.training
    # in train mode BN uses batch statistics: outputs still agree, and running stats move identically
    y_super, y_sub = net(x), sub(x)
    assert y_super.shape == (4, tiny.num_classes)
    assert (y_super - y_sub).abs().max().item() <= 1e-5
    assert torch.allclose(net.stem.norm1.running_mean[: arch.widths[0] // 2], sub.stem.norm1.running_mean, atol=1e-6)


def test_gradients_reach_only_the_active_slices(tiny):
    net = Supernet(tiny)
    arch = tiny.smallest()
    net.set_active(arch)
    net(torch.randn(2, 3, 64, 64)).sum().backward()
    conv = net.stem.conv2.weight.grad
    w = arch.widths[0]
    assert conv[:w, : w // 2].abs().sum() > 0
    assert conv[w:].abs().sum() == 0 and conv[:, w // 2:].abs().sum() == 0
    unused = net.stages[0].blocks4d[arch.depths[0]]    # past the active depth: identity, no gradient
    assert all(p.grad is None for p in unused.parameters())


def test_set_active_validates(space, tiny):
    net = Supernet(tiny)
    with pytest.raises(ArchError, match="does not match the supernet's space 'tiny'"):
        net.set_active(space.preset("l1"))
    bad = copy.copy(tiny.preset("small"))
    object.__setattr__(bad, "widths", (16, 32, 48, 96))
    with pytest.raises(ArchError, match=r"'widths\[3\]' = 96 is not allowed; allowed: 64, 80"):
        net.set_active(bad)


def test_absorb_then_extract_round_trips(tiny):
    net = Supernet(tiny)
    arch = tiny.sample(seed=5)
    plain = randomize_(net.static_model(arch), seed=9).eval()
    net.absorb(arch, plain)
    out = net.extract(arch).eval()
    for (name, a), b in zip(plain.state_dict().items(), out.state_dict().values()):
        assert torch.equal(a, b), name
    assert isinstance(out.stages[-1].blocks[-1], nn.Module)


# ---------------------------------------------------------------------------------------- slot identity


def _middle_removed(tiny):
    """The largest tiny arch with stage 3's middle block set to identity: stage 3 keeps slots 0 and 2."""
    data = tiny.largest().to_dict()
    data["depths"][2] = 2
    data["mlp_ratios"][2] = [4, 4]
    data["slots"] = [[0, 1], [0, 1], [0, 2], [0, 1, 2]]
    return tiny.arch_from_dict(data)


def test_a_removed_middle_slot_keeps_later_blocks_on_their_own_weights(tiny):
    torch.manual_seed(0)
    net = randomize_(Supernet(tiny), seed=5).eval()
    arch = _middle_removed(tiny)
    assert [b.slot for b in arch.blocks() if b.stage == 2] == [0, 2]
    x = torch.randn(2, 3, 64, 64)
    net.set_active(arch)
    with torch.no_grad():
        expected = net(x)
        model = net.extract(arch).eval()
        assert torch.allclose(model(x), expected, atol=1e-5)
    # the second block of stage 3 is slot 2's weights, not slot 1's (a depth prefix would have used slot 1)
    blocks = [m for m in model.stage_list[2].blocks if not isinstance(m, nn.Identity) and hasattr(m, "mlp")]
    slot2 = net.super_stages[2].blocks4d[2]
    assert torch.equal(blocks[1].mlp.fc1.weight, slot2.mlp.fc1.weight[:blocks[1].mlp.fc1.weight.shape[0],
                                                                      :blocks[1].mlp.fc1.weight.shape[1]])
    assert not torch.equal(blocks[1].mlp.fc1.weight, net.super_stages[2].blocks4d[1].mlp.fc1.weight[
        :blocks[1].mlp.fc1.weight.shape[0], :blocks[1].mlp.fc1.weight.shape[1]])
    # the prefix arch of the same shape differs: it runs slot 1
    prefix = tiny.arch_from_dict({k: v for k, v in arch.to_dict().items() if k != "slots"})
    net.set_active(prefix)
    with torch.no_grad():
        assert not torch.allclose(net(x), expected, atol=1e-4)


def test_absorb_writes_back_into_the_slots_the_arch_names(tiny):
    net = randomize_(Supernet(tiny), seed=6)
    arch = _middle_removed(tiny)
    model = net.extract(arch)
    fresh = Supernet(tiny)
    fresh.absorb(arch, model)
    w = model.stage_list[2].blocks[1].mlp.fc1.weight
    assert torch.equal(fresh.super_stages[2].blocks4d[2].mlp.fc1.weight[:w.shape[0], :w.shape[1]], w)
