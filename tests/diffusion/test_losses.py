"""Training targets and the loss (eps, v and flow parameterisations)."""

from __future__ import annotations

import pytest
import torch

from conjure.diffusion.losses import TARGETS, diffusion_loss, target_eps, target_flow, target_v
from conjure.diffusion.schedule import q_sample, training_scheduler


def test_v_target_on_a_constructed_case():
    # alpha_bar = 0.64: sqrt = 0.8 and sqrt(1 - a) = 0.6, so v = 0.8 * eps - 0.6 * x_0
    x_0 = torch.full((1, 1, 1, 1), 1.0)
    eps = torch.full((1, 1, 1, 1), 2.0)
    a = torch.tensor(0.64).view(1, 1, 1, 1)
    torch.testing.assert_close(target_v(x_0, eps, a), torch.full((1, 1, 1, 1), 0.8 * 2.0 - 0.6 * 1.0))


def test_v_target_recovers_x0_from_x_t():
    """x_0 = sqrt(a) x_t - sqrt(1 - a) v: the identity v-prediction samplers rely on."""
    g = torch.Generator().manual_seed(0)
    x_0, eps = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    alpha_bar = training_scheduler().alphas_cumprod
    t = torch.tensor([0, 250, 600, 999])
    a = alpha_bar[t].view(-1, 1, 1, 1)
    x_t = q_sample(x_0, eps, t, alpha_bar)
    torch.testing.assert_close(a.sqrt() * x_t - (1 - a).sqrt() * target_v(x_0, eps, a), x_0, atol=1e-5, rtol=1e-5)


def test_eps_and_flow_targets():
    x_0, eps, a = torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0), torch.full((1, 1, 1, 1), 0.5)
    assert torch.equal(target_eps(x_0, eps, a), eps)
    assert torch.equal(target_flow(x_0, eps, a), torch.full((1, 1, 2, 2), 2.0))


@pytest.mark.parametrize("prediction_type", list(TARGETS))
def test_loss_is_the_mse_to_the_parameterisation_target(prediction_type):
    g = torch.Generator().manual_seed(1)
    x_0, eps = torch.randn(3, 4, 4, 4, generator=g), torch.randn(3, 4, 4, 4, generator=g)
    alpha_bar = training_scheduler().alphas_cumprod
    t = torch.tensor([10, 500, 990])
    target = TARGETS[prediction_type](x_0, eps, alpha_bar[t].view(-1, 1, 1, 1))
    assert diffusion_loss(target, x_0, eps, t, alpha_bar, prediction_type).item() == pytest.approx(0.0, abs=1e-12)
    off = target + 0.5
    assert diffusion_loss(off, x_0, eps, t, alpha_bar, prediction_type).item() == pytest.approx(0.25, rel=1e-5)


def test_every_prediction_type_a_model_can_declare_has_a_target():
    assert training_scheduler().config.prediction_type in TARGETS
    assert {"epsilon", "v_prediction"} <= set(TARGETS)
