"""EMA set by a half-life in images, with a warm-up ramp."""

from __future__ import annotations

import pytest
import torch

from conjure.training.ema import EMA


def _model(value: float) -> torch.nn.Module:
    m = torch.nn.Linear(2, 2)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(value)
    return m


def test_the_average_is_a_frozen_copy():
    model = _model(1.0)
    ema = EMA(model, half_life_images=100)
    assert ema.model is not model and not ema.model.training
    assert not any(p.requires_grad for p in ema.model.parameters())
    with torch.no_grad():
        model.weight.fill_(5.0)
    assert (ema.model.weight == 1.0).all()


def test_one_half_life_moves_halfway():
    ema = EMA(_model(0.0), half_life_images=100, ramp=0)
    decay = ema.update(_model(1.0), images_seen=10_000, batch=100)
    assert decay == pytest.approx(0.5)
    assert torch.allclose(ema.model.weight, torch.full((2, 2), 0.5))


def test_decay_per_step_follows_batch_over_half_life():
    ema = EMA(_model(0.0), half_life_images=1000, ramp=0)
    assert ema.update(_model(0.0), images_seen=10_000, batch=10) == pytest.approx(0.5 ** (10 / 1000))


def test_warm_up_caps_the_half_life():
    """Early on the half-life is ramp * images seen, so the random start is forgotten quickly."""
    ema = EMA(_model(0.0), half_life_images=10_000, ramp=0.1)
    early = ema.update(_model(1.0), images_seen=40, batch=4)      # half-life 4 images
    assert early == pytest.approx(0.5)
    late = ema.update(_model(1.0), images_seen=1_000_000, batch=4)
    assert late == pytest.approx(0.5 ** (4 / 10_000))


def test_buffers_are_copied_not_averaged():
    import torch
    from conjure.training.ema import EMA
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    ema = EMA(net, half_life_images=1e9)
    net.train()
    net(torch.randn(64, 3) * 5 + 2)                      # moves the running statistics
    ema.update(net, images_seen=10**6, batch=64)
    assert torch.equal(ema.model[1].running_mean, net[1].running_mean)
