"""Learned density: F (monotone CDF network), C (correction), their losses, and validation on known priors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from dplase.priors import make_prior
from dplase.walks.learned import (
    CorrectionNet,
    DensityConfig,
    DensityModel,
    MonotoneCDF,
    correction_from_state,
    correction_state,
)
from dplase.walks.steps import max_step
from dplase.walks.validation import eval_log_prob, validate_density


def _random_cdf(dim: int = 3, seed: int = 1) -> MonotoneCDF:
    cdf = MonotoneCDF(dim, width=8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for p in cdf.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + 5)))
    return cdf


def test_cdf_is_monotone_and_in_unit_interval():
    cdf = _random_cdf()
    x = torch.linspace(-8, 8, 2001)[:, None].expand(-1, 3).contiguous()
    with torch.no_grad():
        f = cdf(x)
    assert torch.all((f > 0) & (f < 1))
    assert torch.all(f[1:] >= f[:-1])


def test_log_slope_matches_finite_difference_and_derivative():
    cdf = _random_cdf().double()
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)[:, None].expand(-1, 3).contiguous()
    delta = 1e-3
    with torch.no_grad():
        naive = torch.log((cdf(x + delta) - cdf(x)) / delta)
        stable = cdf.log_slope(x, delta)
    torch.testing.assert_close(stable, naive, rtol=1e-7, atol=1e-9)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(cdf(xg).sum(), xg)
    # forward difference vs exact derivative: O(delta) apart
    torch.testing.assert_close(stable, grad.log(), rtol=0, atol=2e-2)


def test_log_slope_keeps_precision_in_the_tails():
    cdf = _random_cdf(dim=1)
    x = torch.tensor([[30.0], [-30.0]])
    value = cdf.log_slope(x, 1e-3)
    assert torch.isfinite(value).all()


def test_cdf_losses_against_direct_computation():
    prior = make_prior("gaussian", 3)
    cfg = DensityConfig(min_slope=0.2, delta=1e-3, batch=8)
    model = DensityModel(prior, cfg, step_scale=1.0, seed=0).double()
    z = torch.tensor([[0.0, 1.0, -2.0], [3.0, -4.0, 0.5]], dtype=torch.float64)
    terms = model.cdf_losses(z)
    with torch.no_grad():
        slope = (model.cdf(z + 1e-3) - model.cdf(z)) / 1e-3
    expected_mon = torch.clamp(0.2 - slope, min=0).sum(1).mean()
    expected_lik = (-slope.log()).sum(1).mean()
    assert float(expected_mon) > 0  # the tail points are below the slope floor, so the term is exercised
    assert terms["mon"].item() == pytest.approx(float(expected_mon), rel=1e-5)
    assert terms["lik"].item() == pytest.approx(float(expected_lik), rel=1e-5)


def test_den_loss_of_untrained_correction_is_the_linear_walk_drift():
    prior = make_prior("gaussian", 2)
    cfg = DensityConfig(proximity=0.5)
    model = DensityModel(prior, cfg, step_scale=1.0, seed=0)
    z0 = torch.tensor([[0.5, -1.0], [1.0, 2.0]])
    eps = torch.tensor([1.0, -0.5])
    gamma = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    terms = model.den_losses(z0, eps, gamma)
    with torch.no_grad():
        lp0 = model.cdf.log_density(z0, cfg.delta)
        lp1 = model.cdf.log_density(z0 + eps[:, None] * gamma, cfg.delta)
    assert terms["den"].item() == pytest.approx(float((lp0 - lp1).pow(2).mean()), rel=1e-5)
    assert terms["prox"].item() == 0.0  # zero-initialised output layer: C = 0


def test_correction_is_zero_at_zero_step_and_round_trips():
    c = CorrectionNet(4, width=16, depth=2, step_scale=2.0, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        c.out.weight.normal_(generator=torch.Generator().manual_seed(4))
    z0 = torch.randn(5, 4, generator=torch.Generator().manual_seed(5))
    gamma = torch.eye(4)[0]
    assert torch.equal(c(z0, torch.zeros(5), gamma), torch.zeros(5, 4))
    corr = c(z0, torch.linspace(-2, 2, 5), gamma).detach()
    assert corr.abs().sum() > 0 and (corr @ gamma).abs().max().item() < 1e-6  # C is orthogonal to gamma
    rebuilt = correction_from_state({"correction": correction_state(c)})
    eps = torch.linspace(-1, 1, 5)
    torch.testing.assert_close(rebuilt(z0, eps, gamma), c(z0, eps, gamma), rtol=0, atol=0)
    with pytest.raises(ValueError, match="no learned correction network"):
        correction_from_state({})


def test_max_step_scales_like_the_authors_T():
    # T = 10 at d = 512 for N(0, I): the authors' setting
    assert max_step(make_prior("gaussian", 512)) == pytest.approx(10.0, rel=0.01)
    assert max_step(make_prior("gaussian", 16)) == pytest.approx(10 * math.sqrt(16 / 512), rel=0.03)


def test_eval_log_prob_smooths_the_uniform_only_at_its_edges():
    prior = make_prior("uniform", 2)
    inside = torch.tensor([[0.0, 0.5], [1.0, -1.2]])
    torch.testing.assert_close(eval_log_prob(prior, inside), prior.log_prob(inside))
    outside = torch.tensor([[2.0, 0.0], [2.5, 0.0]])
    values = eval_log_prob(prior, outside)
    assert torch.isfinite(values).all() and values[1] < values[0] < prior.log_prob(inside)[0]
    gauss = make_prior("gaussian", 2)
    torch.testing.assert_close(eval_log_prob(gauss, inside), gauss.log_prob(inside))


FAST = DensityConfig(correction_width=64, batch=256)


def test_learned_density_matches_the_gaussian_pdf():
    result = validate_density("gaussian", dim=2, cdf_steps=500, correction_steps=300, n_directions=2,
                              n_eval=128, cfg=FAST)
    # max |log p_hat - log p| on [-3, 3]; the tails (|x| ~ 3, 0.3% of the samples) dominate the error
    assert result["max_abs_log_pdf_error"] < 0.6
    grid = torch.linspace(-3, 3, 7)
    assert torch.allclose(torch.as_tensor(norm.logpdf(grid.numpy())).float(),
                          make_prior("gaussian", 1).log_prob_1d(grid), atol=1e-6)
    assert result["drift_norm"] < 1e-5  # the exact rescale


def test_learned_walk_keeps_gaussian_log_density_drift_bounded():
    result = validate_density("gaussian", dim=4, cdf_steps=400, correction_steps=400, n_directions=4,
                              n_eval=256, cfg=FAST)
    # measured 0.21 vs 0.47 for the linear walk (the norm rescale is exact here, but only keeps ~74% of
    # the step along gamma; the learned walk keeps all of it)
    assert result["drift_learned"] < 0.3
    assert result["drift_learned"] < 0.6 * result["drift_linear"]
    assert result["progress_learned"] == pytest.approx(1.0, abs=1e-4)


def test_learned_walk_beats_norm_rescale_on_the_uniform_prior():
    result = validate_density("uniform", dim=4, cdf_steps=400, correction_steps=400, n_directions=4, n_eval=256,
                              cfg=FAST)
    assert result["drift_learned"] < result["drift_norm"]
    assert result["drift_learned"] < 0.25 * result["drift_linear"]
    assert result["outside_learned"] <= result["outside_norm"]
    assert result["progress_learned"] == pytest.approx(1.0, abs=1e-4)


def test_learned_walk_on_the_mixture_prior_moves_the_full_step_with_less_drift_than_linear():
    # Honest limit: with the full step kept along gamma, the learned walk does NOT beat the norm rescale on
    # this bimodal prior in a run this short (measured 1.8 vs norm 1.4, linear 2.0); with 1500 + 1500 steps
    # and C width 256 it does (1.29 vs 1.40 vs 1.96). The norm walk also shortens the step to ~75%.
    result = validate_density("mixture", dim=4, cdf_steps=400, correction_steps=400, n_directions=4, n_eval=256,
                              cfg=FAST)
    assert result["drift_learned"] < result["drift_linear"]
    assert result["progress_learned"] == pytest.approx(1.0, abs=1e-4)
    assert result["progress_norm"] < 0.9
