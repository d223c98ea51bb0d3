"""The training noise schedule and q_sample."""

from __future__ import annotations

import pytest
import torch

from conjure.diffusion.schedule import alpha_bar, q_sample, training_scheduler


def test_training_schedule_settings():
    cfg = training_scheduler().config
    assert cfg.num_train_timesteps == 1000 and cfg.prediction_type == "v_prediction"
    assert cfg.beta_schedule == "scaled_linear" and cfg.timestep_spacing == "trailing" and not cfg.clip_sample
    assert training_scheduler(50, "epsilon").config.num_train_timesteps == 50


def test_alpha_bar_falls_from_one_towards_zero():
    a = alpha_bar(training_scheduler())
    assert a.shape == (1000,)
    assert (a[1:] < a[:-1]).all()
    assert 0.99 < a[0] < 1 and 0 < a[-1] < 0.01


def test_q_sample_mixes_signal_and_noise_by_alpha_bar():
    a = torch.tensor([1.0, 0.25, 0.0])
    x_0, eps = torch.full((3, 1, 2, 2), 2.0), torch.full((3, 1, 2, 2), -1.0)
    x_t = q_sample(x_0, eps, torch.tensor([0, 1, 2]), a)
    assert x_t[:, 0, 0, 0].tolist() == pytest.approx([2.0, 0.5 * 2.0 - (0.75 ** 0.5), -1.0])
