import pytest
import timm
import torch

from nas.errors import UsageError
from supernet import Supernet
from tests.helpers import randomize_

PARAMS_M = {"l1": 12.29, "l3": 31.41, "l7": 82.23}


@pytest.fixture(scope="module")
def supernet(space):
    return Supernet(space).eval()


@pytest.mark.parametrize("name", ["l1", "l3", "l7"])
def test_load_timm_reproduces_logits(supernet, space, name):
    model = randomize_(timm.create_model(f"efficientformer_{name}"), seed=4).eval()
    arch = supernet.load_timm(model)
    assert arch == space.preset(name)
    sub = supernet.extract(space.preset(name)).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        supernet.set_active(arch)
        assert expected.abs().max() > 1e-2
        assert (sub(x) - expected).abs().max().item() <= 1e-4
        assert (supernet(x) - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["l1", "l3", "l7"])
def test_extracted_presets_have_timm_parameter_counts(supernet, space, name):
    sub = supernet.extract(space.preset(name))
    n = sum(p.numel() for p in sub.parameters())
    assert round(n / 1e6, 2) == PARAMS_M[name]
    assert n == sum(p.numel() for p in timm.create_model(f"efficientformer_{name}").parameters())
    assert set(sub.state_dict()) == set(timm.create_model(f"efficientformer_{name}").state_dict())


def test_load_timm_from_state_dict(tiny):
    """A state dict works as well as a module, for a custom timm EfficientFormer inside a small space."""
    from timm.models.efficientformer import EfficientFormer
    model = randomize_(EfficientFormer(depths=(1, 1, 2, 2), embed_dims=(16, 32, 48, 64), num_vit=1,
                                       num_classes=10), seed=2).eval()
    # timm's Attention defaults (8 heads, key dim 32) are outside 'tiny'; the refusal names the field
    net = Supernet(tiny)
    with pytest.raises(UsageError, match=r"'heads\[0\]' = 8 is not allowed; allowed: 2, 4"):
        net.load_timm(model.state_dict())


def test_load_timm_refuses_other_models(supernet):
    with pytest.raises(UsageError, match="not an EfficientFormer state dict"):
        supernet.load_timm({"conv.weight": torch.zeros(1)})
    model = timm.create_model("efficientformer_l1", num_classes=10)
    with pytest.raises(UsageError, match="has 10 classes, the space 'efficientformer' has 1000"):
        supernet.load_timm(model)
