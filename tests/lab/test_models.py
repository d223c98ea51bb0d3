"""The lab's architectures: shapes, parameter parity, padding, and the autoregressive key/value cache."""

import pytest
import torch

from conjure.lab.families import FAMILIES, build_family
from conjure.models.ar import ARConfig, CodeTransformer
from conjure.models.small_unet import SmallUNet, SmallUNetConfig


def _params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def test_sampling_networks_are_within_2x_of_each_other_and_about_1m():
    counts = {}
    for name in ("gan", "vae", "ddpm", "ldm", "flow", "ar"):
        fam = build_family(name)
        counts[name] = _params(fam.nets[fam.sampling_net_name])
    assert max(counts.values()) <= 2 * min(counts.values()), counts
    assert all(0.5e6 <= c <= 2e6 for c in counts.values()), counts


@pytest.mark.parametrize("shape,patch,widths", [((2, 1, 28, 28), 2, [8, 16, 16]), ((2, 4, 7, 7), 1, [8, 16])])
def test_unet_keeps_the_input_shape_through_padding(shape, patch, widths):
    net = SmallUNet(SmallUNetConfig(in_channels=shape[1], widths=widths, emb_dim=16, patch=patch))
    out = net(torch.randn(shape), torch.rand(shape[0]) * 999, torch.randn(shape[0], 384))
    assert out.shape == shape
    assert out.abs().max() == 0          # zero-initialised output layer: the first step starts from zero


def test_null_condition_replaces_the_text():
    net = SmallUNet(SmallUNetConfig(widths=[8, 16], emb_dim=16, patch=2))
    torch.nn.init.normal_(net.out[-2].weight)
    x, t = torch.randn(1, 1, 28, 28), torch.tensor([500.0])
    drop = torch.ones(1, dtype=torch.bool)
    a = net(x, t, torch.randn(1, 384), drop)
    b = net(x, t, torch.randn(1, 384), drop)
    c = net(x, t, torch.randn(1, 384))
    assert torch.allclose(a, b) and not torch.allclose(a, c)


def test_cached_decoding_matches_full_recompute():
    torch.manual_seed(0)
    net = CodeTransformer(ARConfig(vocab=16, length=9, dim=32, layers=2, heads=2)).eval()
    text = torch.randn(3, 384)
    codes, nfe = net.generate(text, torch.Generator().manual_seed(1))
    assert codes.shape == (3, 9) and nfe == 9
    assert net.generate(text, torch.Generator().manual_seed(1), guidance=2.0)[1] == 18
    with torch.no_grad():
        full = net(text, codes[:, :-1]).log_softmax(-1)                         # (B, L, V)
        # the cached sampler drew each code from the same distribution the full pass gives it
        logp = full.gather(2, codes[..., None]).squeeze(-1)
    assert torch.isfinite(logp).all()
    # teacher-forced loss is the mean negative log-likelihood of those codes
    assert torch.isclose(net.loss(text, codes), -logp.mean(), atol=1e-5)


def test_every_family_has_a_spec_and_unknown_names_fail_clearly():
    assert {"gan", "gan-unstable", "vae", "ddpm", "ldm", "flow", "ar"} <= set(FAMILIES)
    with pytest.raises(ValueError, match="choose from"):
        build_family("transformer-xl")
