"""Every registered token mixer, as timm's tests run every registered model: the elastic twin runs any active size
as its static twin does, hands it back exactly, and takes it in again."""
from __future__ import annotations

import pytest
import torch

from nas.errors import ArchError
from nas.space import MixerChoices
from supernet.mixers import ElasticMixer, get_mixer, mixer_names, register_mixer
from tests.helpers import randomize_

MAX_DIM, RESOLUTION = 32, 4


def _choices(name: str) -> MixerChoices:
    """Small knobs of the kinds the mixer's registration says it takes."""
    knobs = get_mixer(name).knobs
    return MixerChoices(heads=(1, 2, 4) if "heads" in knobs else (), key_dims=(8, 16) if "key_dims" in knobs else (),
                        attn_ratio=2 if "attn_ratio" in knobs else 0)


def _elastic(name: str) -> ElasticMixer:
    cls = get_mixer(name).elastic_cls
    return randomize_(cls(MAX_DIM, choices=_choices(name), resolution=RESOLUTION), seed=1).eval()


def _knobs(name: str, heads: int, key_dim: int) -> tuple[int, int]:
    c = _choices(name)
    return (heads if c.heads else 0), (key_dim if c.key_dims else 0)


@pytest.mark.parametrize("name", mixer_names())
@pytest.mark.parametrize("dim, heads, key_dim", [(32, 4, 16), (16, 2, 8), (24, 1, 16), (32, 2, 8)])
def test_elastic_mixer_equals_its_static_twin(name, dim, heads, key_dim):
    elastic = _elastic(name)
    heads, key_dim = _knobs(name, heads, key_dim)
    x = torch.randn(2, RESOLUTION ** 2, dim)
    twin = elastic.to_static(dim, heads, key_dim).eval()
    assert isinstance(twin, get_mixer(name).static_cls)
    with torch.no_grad():
        want = elastic(x, heads, key_dim)
        torch.testing.assert_close(twin(x), want)
        assert want.abs().mean() > 1e-2                      # randomised weights: not a trivially zero output
    fresh = get_mixer(name).static_cls(dim, num_heads=heads, key_dim=key_dim, attn_ratio=_choices(name).attn_ratio,
                                       resolution=RESOLUTION)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in twin.state_dict().items()}


@pytest.mark.parametrize("name", mixer_names())
def test_elastic_mixer_trains_through_every_slice(name):
    """Train mode (BatchNorm on batch statistics) and gradients reach the active slice's weights."""
    elastic = _elastic(name).train()
    heads, key_dim = _knobs(name, 2, 8)
    x = torch.randn(3, RESOLUTION ** 2, 16)
    twin = elastic.to_static(16, heads, key_dim).train()
    out = elastic(x, heads, key_dim)
    torch.testing.assert_close(twin(x), out, atol=1e-5, rtol=1e-4)
    out.square().mean().backward()
    grads = [p.grad for p in elastic.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", mixer_names())
def test_absorb_writes_the_static_weights_back(name):
    source, target = _elastic(name), _elastic(name)
    randomize_(target, seed=7)
    heads, key_dim = _knobs(name, 2, 8)
    twin = source.to_static(16, heads, key_dim)
    target.absorb(twin)
    for (key, a), b in zip(twin.state_dict().items(), target.to_static(16, heads, key_dim).state_dict().values()):
        torch.testing.assert_close(a, b, msg=key)


def test_registry_refuses_unknown_names_and_non_elastic_classes():
    with pytest.raises(ArchError, match="not registered; known: .*mhsa"):
        get_mixer("no-such-mixer")
    with pytest.raises(TypeError, match="must subclass"):
        register_mixer("bad", torch.nn.Identity, torch.nn.Identity, knobs=())  # type: ignore[arg-type]
    assert "bad" not in mixer_names()


# ------------------------------------------------------------------------------------------ against timm's modules


@torch.no_grad()
def _randomise_timm(module: torch.nn.Module, std: float = 0.1) -> None:
    """Every parameter and BN buffer: timm's zero-initialised projection BN (gamma 0) would hide any bug."""
    g = torch.Generator().manual_seed(0)
    for p in module.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * std)
    for name, b in module.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(torch.randn(b.shape, generator=g) * 0.1)
        if name.endswith("running_var"):
            b.copy_(torch.rand(b.shape, generator=g) + 0.5)


@torch.no_grad()
def _copy_bn(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name))


@pytest.mark.parametrize("dim, heads, key_dim, kernels", [
    (448, 8, 16, (7, 5, 3, 3, 7, 5, 3, 3)),     # EfficientViT's kernels at L1's last-stage width
    (768, 4, 32, (7, 5, 3, 3)),
    (64, 2, 8, (7, 5)),
])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_cga_equals_timms_cascaded_group_attention(dim, heads, key_dim, kernels, mode):
    from timm.models.efficientvit_msra import CascadedGroupAttention as TimmCGA

    from supernet.cga import Q_KERNELS, CascadedGroupAttention

    assert kernels == tuple(Q_KERNELS[j % len(Q_KERNELS)] for j in range(heads))
    r = 7
    ref = TimmCGA(dim, key_dim, heads, attn_ratio=dim / (key_dim * heads), resolution=r, kernels=kernels)
    _randomise_timm(ref)          # before any forward pass: timm caches its bias table in eval mode
    ours = CascadedGroupAttention(dim, num_heads=heads, key_dim=key_dim, resolution=r)
    with torch.no_grad():
        for j in range(heads):
            ours.qkvs[j].conv.weight.copy_(ref.qkvs[j].conv.weight[:, :, :, 0])
            _copy_bn(ref.qkvs[j].bn, ours.qkvs[j].bn)
            ours.dws[j].conv.weight.copy_(ref.dws[j].conv.weight)
            _copy_bn(ref.dws[j].bn, ours.dws[j].bn)
        ours.proj.conv.weight.copy_(ref.proj[1].conv.weight[:, :, :, 0])
        _copy_bn(ref.proj[1].bn, ours.proj.bn)
        ours.attention_biases.copy_(ref.attention_biases)
    ref.train(mode == "train")    # (timm's train() returns None: call it as a statement)
    ours.train(mode == "train")
    x = torch.randn(2, r * r, dim)
    # strided heads: our channel c goes to head c % h, timm's to head c // (C / h); the same module on permuted input
    perm = torch.arange(dim).view(dim // heads, heads).t().reshape(-1)
    with torch.no_grad():
        want = ref(x[..., perm].transpose(1, 2).reshape(2, dim, r, r)).flatten(2).transpose(1, 2)
        got = ours(x)
    assert want.abs().mean() > 0.05
    assert (got - want).abs().max() <= (1e-5 if mode == "eval" else 2e-5)


@pytest.mark.parametrize("dim", [448, 64])
def test_ssa_equals_timms_linear_self_attention(dim):
    from timm.models.mobilevit import LinearSelfAttention

    from supernet.ssa import SeparableSelfAttention

    ref = LinearSelfAttention(embed_dim=dim)
    _randomise_timm(ref, std=0.05)      # outputs of order 0.1-1 (0.1 gives ~5 at 448 wide: fp32 rounding is 1e-5)
    ref.eval()
    ours = SeparableSelfAttention(dim).eval()
    with torch.no_grad():
        ours.qkv_proj.weight.copy_(ref.qkv_proj.weight[:, :, 0, 0])
        ours.qkv_proj.bias.copy_(ref.qkv_proj.bias)
        ours.out_proj.weight.copy_(ref.out_proj.weight[:, :, 0, 0])
        ours.out_proj.bias.copy_(ref.out_proj.bias)
        x = torch.randn(2, 49, dim)
        want = ref(x.transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2)   # [B, C, P=1, N=49]
        got = ours(x)
    assert want.abs().mean() > 0.01
    assert (got - want).abs().max() <= 1e-5


def test_cga_refuses_a_width_its_heads_cannot_split():
    from supernet.cga import CascadedGroupAttention

    with pytest.raises(ArchError, match="width 30 is not divisible by 4 heads"):
        CascadedGroupAttention(30, num_heads=4, key_dim=8)
