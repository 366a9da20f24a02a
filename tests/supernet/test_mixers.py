"""Every registered token mixer, as timm's tests run every registered model: the elastic twin runs any active size
as its static twin does, hands it back exactly, and takes it in again."""
from __future__ import annotations

import pytest
import torch

from nas.errors import ArchError
from supernet.mixers import ElasticMixer, get_mixer, mixer_names, register_mixer
from tests.helpers import randomize_

MAX = {"dim": 32, "heads": 4, "key_dim": 16, "attn_ratio": 2, "resolution": 4}


def _elastic(name: str) -> ElasticMixer:
    cls = get_mixer(name).elastic_cls
    return randomize_(cls(MAX["dim"], max_heads=MAX["heads"], max_key_dim=MAX["key_dim"],
                          attn_ratio=MAX["attn_ratio"], resolution=MAX["resolution"]), seed=1).eval()


@pytest.mark.parametrize("name", mixer_names())
@pytest.mark.parametrize("dim, heads, key_dim", [(32, 4, 16), (16, 2, 8), (24, 1, 16)])
def test_elastic_mixer_equals_its_static_twin(name, dim, heads, key_dim):
    elastic = _elastic(name)
    x = torch.randn(2, MAX["resolution"] ** 2, dim)
    twin = elastic.to_static(dim, heads, key_dim).eval()
    assert isinstance(twin, get_mixer(name).static_cls)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), elastic(x, heads, key_dim))


@pytest.mark.parametrize("name", mixer_names())
def test_absorb_writes_the_static_weights_back(name):
    source, target = _elastic(name), _elastic(name)
    randomize_(target, seed=7)
    twin = source.to_static(16, 2, 8)
    target.absorb(twin)
    for (key, a), b in zip(twin.state_dict().items(), target.to_static(16, 2, 8).state_dict().values()):
        torch.testing.assert_close(a, b, msg=key)


def test_registry_refuses_unknown_names_and_non_elastic_classes():
    with pytest.raises(ArchError, match="not registered; known: .*mhsa"):
        get_mixer("no-such-mixer")
    with pytest.raises(TypeError, match="must subclass"):
        register_mixer("bad", torch.nn.Identity, torch.nn.Identity)  # type: ignore[arg-type]
    assert "bad" not in mixer_names()
