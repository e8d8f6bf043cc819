"""Density along walks: zero norm drift for the norm walk, analytic drift for the linear walk."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chi

from dplase.metrics import density
from dplase.priors import GaussianPrior, UniformPrior
from dplase.walks import linear_walk, norm_walk


def _setup(d: int = 16, n: int = 500):
    prior = GaussianPrior(dim=d)
    z0 = prior.sample(n, 0)
    gamma = torch.nn.functional.normalize(torch.randn(d, generator=torch.Generator().manual_seed(1)), dim=0)
    return prior, z0, gamma


@pytest.mark.parametrize("eps", [-3.0, 0.5, 4.0])
def test_norm_walk_on_gaussian_has_no_drift(eps: float) -> None:
    prior, z0, gamma = _setup()
    terms = density.density_terms(prior, z0, norm_walk(z0, gamma, eps))
    torch.testing.assert_close(terms["norm_ratio"], torch.ones(len(z0), dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(terms["logp_drift"], torch.zeros(len(z0), dtype=torch.float64), atol=1e-4, rtol=0)


@pytest.mark.parametrize("eps", [-2.0, 1.0, 3.0])
def test_linear_walk_drift_is_analytic(eps: float) -> None:
    prior, z0, gamma = _setup()
    terms = density.density_terms(prior, z0, linear_walk(z0, gamma, eps))
    # log N(z0 + eps g) - log N(z0) = -eps <z0, g> - eps^2 / 2 for a unit g
    want = (-eps * (z0 @ gamma) - eps**2 / 2).double()
    torch.testing.assert_close(terms["logp_drift"], want, atol=1e-4, rtol=1e-5)
    want_ratio = (z0 + eps * gamma).norm(dim=1).double() / z0.norm(dim=1).double()
    torch.testing.assert_close(terms["norm_ratio"], want_ratio, atol=1e-6, rtol=1e-6)


def test_outside_share_uses_chi_quantiles() -> None:
    prior = GaussianPrior(dim=8)
    lo, hi = density.norm_bounds(prior)
    assert (lo, hi) == pytest.approx((chi.ppf(0.01, 8), chi.ppf(0.99, 8)), rel=1e-5)
    z0 = prior.sample(20_000, 3)
    summary = density.density_summary(prior, z0, z0)
    assert summary["outside_share"] == pytest.approx(0.02, abs=0.005)  # the prior itself: 2% outside
    far = density.density_summary(prior, z0, z0 * 5)
    assert far["outside_share"] > 0.99 and far["norm_ratio"] == pytest.approx(5.0)


def test_uniform_prior_drift_is_minus_inf_outside_the_cube() -> None:
    prior = UniformPrior(dim=2)
    z0 = torch.zeros(3, 2)
    zw = torch.tensor([[0.0, 0.0], [0.5, 0.5], [5.0, 0.0]])
    drift = density.density_terms(prior, z0, zw)["logp_drift"]
    assert drift[:2].tolist() == [0.0, 0.0] and drift[2] == -math.inf
