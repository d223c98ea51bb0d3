"""Classifier-free guidance."""

from __future__ import annotations

import torch

from conjure.diffusion.guidance import cfg_combine


def _preds():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)


def test_scale_one_returns_the_conditional_prediction():
    uncond, cond = _preds()
    torch.testing.assert_close(cfg_combine(uncond, cond, 1.0), cond)


def test_scale_zero_returns_the_unconditional_prediction():
    uncond, cond = _preds()
    torch.testing.assert_close(cfg_combine(uncond, cond, 0.0), uncond)


def test_scale_extrapolates_away_from_the_unconditional_branch():
    uncond, cond = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    assert cfg_combine(uncond, cond, 7.5).item() == 7.5


def test_per_sample_scale_tensor_applies_row_by_row():
    uncond, cond = _preds()
    scales = torch.tensor([1.0, 0.0, 5.0])
    out = cfg_combine(uncond, cond, scales)
    assert out.shape == cond.shape
    for i, s in enumerate(scales.tolist()):
        torch.testing.assert_close(out[i], cfg_combine(uncond[i], cond[i], s))
    torch.testing.assert_close(out[0], cond[0])
    torch.testing.assert_close(out[1], uncond[1])


def test_tensor_scale_follows_the_prediction_dtype():
    uncond, cond = (p.to(torch.bfloat16) for p in _preds())
    assert cfg_combine(uncond, cond, torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64)).dtype == torch.bfloat16
