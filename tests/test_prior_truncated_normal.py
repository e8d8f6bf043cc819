"""The truncated normal prior (BigGAN's truncation trick) against scipy.stats.truncnorm and the reference's
``truncation * truncnorm.rvs(-2, 2)``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dplase.priors import PRIOR_NAMES, TruncatedNormalPrior, make_prior, prior_from_config

CASES = [(1.0, 2.0), (0.4, 2.0), (0.7, 1.0)]


def _scipy(truncation: float, bound: float):
    return stats.truncnorm(-bound, bound, loc=0.0, scale=truncation)


@pytest.mark.parametrize(("truncation", "bound"), CASES)
def test_log_density_matches_scipy(truncation, bound):
    prior = make_prior("truncated_normal", 3, truncation=truncation, bound=bound)
    edge = truncation * bound
    x = torch.linspace(-edge, edge, 101, dtype=torch.float64)
    expected = _scipy(truncation, bound).logpdf(x.numpy())
    np.testing.assert_allclose(prior.log_prob_1d(x).numpy(), expected, rtol=1e-12, atol=1e-12)
    outside = torch.tensor([-edge * 1.001, edge * 1.001, 50.0])
    assert torch.isneginf(prior.log_prob_1d(outside)).all()
    z = prior.sample(5, seed=0).double()
    torch.testing.assert_close(prior.log_prob(z), prior.log_prob_1d(z).sum(-1))


@pytest.mark.parametrize(("truncation", "bound"), CASES)
def test_samples_have_scipys_moments_and_support(truncation, bound):
    prior = TruncatedNormalPrior(dim=4, truncation=truncation, bound=bound)
    z = prior.sample(50_000, seed=1).double()
    ref = _scipy(truncation, bound)
    assert z.abs().max() <= truncation * bound
    torch.testing.assert_close(z.mean(0), torch.zeros(4, dtype=torch.float64), rtol=0,
                               atol=5 * ref.std() / math.sqrt(50_000))
    np.testing.assert_allclose(z.var(0).numpy(), ref.var(), rtol=0.03)
    assert stats.kstest(z[:, 0].numpy(), ref.cdf).pvalue > 1e-3


def test_same_distribution_as_the_references_noise():
    """pytorch-pretrained-biggan's truncated_noise_sample: truncation * truncnorm.rvs(-2, 2)."""
    ours = make_prior("truncated_normal", 1, truncation=0.4).sample(20_000, seed=2)[:, 0].numpy()
    theirs = 0.4 * stats.truncnorm.rvs(-2, 2, size=20_000, random_state=np.random.RandomState(0))
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3


def test_sampling_is_seeded_on_the_cpu():
    prior = make_prior("truncated_normal", 6, truncation=0.5)
    a = prior.sample(8, seed=3)
    assert a.dtype == torch.float32 and a.device.type == "cpu"
    assert torch.equal(a, prior.sample(8, seed=3, device="cpu"))
    assert torch.equal(a, prior.sample(8, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, prior.sample(8, seed=4))


def test_config_round_trip_and_registry():
    prior = make_prior("truncated_normal", 7, truncation=0.3)
    assert "truncated_normal" in PRIOR_NAMES and prior.independent
    assert prior.to_config() == {"name": "truncated_normal", "dim": 7, "truncation": 0.3, "bound": 2.0}
    assert prior_from_config(prior.to_config()) == prior
    for bad in ({"truncation": 0.0}, {"bound": -1.0}):
        with pytest.raises(ValueError, match="truncation > 0 and bound > 0"):
            make_prior("truncated_normal", 2, **bad)
