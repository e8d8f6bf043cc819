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
    LearnedCorrection,
    MonotoneCDF,
    correction_from_state,
    correction_state,
    level_projection,
)
from dplase.walks.steps import StepRange, max_step
from dplase.walks.validation import eval_log_prob, evaluation_steps, validate_density, walk_records


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
    cfg = DensityConfig(proximity=0.5, projection_start="network")  # l_den trains the network
    model = DensityModel(prior, cfg, step_scale=1.0, seed=0)
    assert model.trains_network and not DensityModel(prior, DensityConfig(), 1.0, seed=0).trains_network
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


# The acceptance bounds of the learned walk (issue 16), at the default study's z_dim 16, over the evaluation's
# step grid in [-T, T], for both projections of C (the default along the level's normal; orthogonal to gamma).
# Short runs (800 F steps, batch 256; C projects from the linear point, so it has no network steps): the six cost
# ~40 s together; `dplase validate-density` (1500 F steps) gives about the same numbers (README).
ACCEPT = {"dim": 16, "cdf_steps": 800, "correction_steps": 400, "n_eval": 256}
PROJECTIONS = ["normal", "orthogonal"]


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_learned_walk_matches_the_norm_rescale_on_a_gaussian(projection):
    result = validate_density("gaussian", **ACCEPT, cfg=DensityConfig(batch=256, projection=projection))
    # spec: drift <= 0.1 nats (measured: normal 0.054, orthogonal 0.072; the exact norm rescale ~1e-7, the
    # linear walk ~1.2)
    assert result["drift_learned"] <= 0.1
    assert result["drift_norm"] < 1e-5 and result["drift_linear"] > 1.0
    assert result["outside_norm_learned"] <= result["outside_norm_linear"]
    if projection == "orthogonal":  # the full step along gamma is kept
        assert result["progress_learned"] == pytest.approx(1.0, abs=1e-4)
    else:  # along F's score, which is -z for N(0, I): the norm rescale, whose step along gamma shortens alike
        assert result["progress_learned"] == pytest.approx(result["progress_norm"], abs=0.01)


@pytest.mark.parametrize("projection", PROJECTIONS)
@pytest.mark.parametrize("prior", ["uniform", "mixture"])
def test_learned_walk_beats_the_norm_rescale_on_non_gaussian_priors(prior, projection):
    result = validate_density(prior, **ACCEPT, cfg=DensityConfig(batch=256, projection=projection))
    # spec: below half of the norm walk's drift (measured, normal / orthogonal: uniform 0.52 / 0.60 vs 7.9,
    # mixture 0.78 / 1.37 vs 5.5)
    assert result["drift_learned"] < 0.5 * result["drift_norm"]
    if projection == "orthogonal":
        assert result["progress_learned"] == pytest.approx(1.0, abs=1e-4)
    if prior == "uniform":
        assert result["outside_learned"] < result["outside_norm"]  # fewer walks leave the cube


def test_normal_projection_is_the_norm_rescale_for_an_exact_gaussian_density():
    gen = torch.Generator().manual_seed(4)
    z0 = torch.randn(64, 8, generator=gen)
    gamma = torch.nn.functional.normalize(torch.randn(64, 8, generator=gen), dim=1)
    z_lin = z0 + 0.8 * gamma
    z = level_projection(_ExactGaussianDensity(), 1e-3, z0, z_lin, gamma, steps=8, keep_step=False)
    reference = z_lin * (z0.norm(dim=1) / z_lin.norm(dim=1))[:, None]  # the analytic rescale
    torch.testing.assert_close(z, reference, rtol=1e-4, atol=1e-4)


def test_validation_runs_on_the_evaluation_grid_and_reports_one_record_per_walk():
    prior = make_prior("gaussian", 16)
    grid = evaluation_steps(prior)
    assert torch.equal(grid, torch.tensor(StepRange(max_step(prior)).nonzero(7)))  # EvalConfig.n_steps = 7
    result = validate_density("gaussian", dim=3, cdf_steps=5, correction_steps=5, n_directions=2, n_eval=8)
    records = walk_records(result)
    assert [r["walk"] for r in records] == ["linear", "norm", "learned"]
    keys = {"prior", "walk", "drift", "outside_norm", "outside", "progress", "steps"}
    assert all(set(r) >= keys for r in records)
    assert records[0]["drift"] == result["drift_linear"]
    assert records[2]["outside_norm"] == result["outside_norm_learned"]


class _ExactGaussianDensity:
    """Duck-typed F whose log-density is the exact N(0, I) one (for the projection alone)."""

    def log_density(self, z: torch.Tensor, delta: float, detach_params: bool = False) -> torch.Tensor:
        return -0.5 * z.pow(2).sum(-1)


def test_level_projection_reaches_the_start_level_orthogonally_to_gamma():
    gen = torch.Generator().manual_seed(3)
    z0 = torch.randn(64, 8, generator=gen)
    gamma = torch.nn.functional.normalize(torch.randn(64, 8, generator=gen), dim=1)
    eps = torch.full((64,), 1.0)
    z_lin = z0 + eps[:, None] * gamma
    z = level_projection(_ExactGaussianDensity(), 1e-3, z0, z_lin, gamma, steps=6)
    feasible = (z0 * gamma).sum(1).add(1.0).pow(2) < z0.pow(2).sum(1) - 0.5  # the level is reachable
    torch.testing.assert_close(z.norm(dim=1)[feasible], z0.norm(dim=1)[feasible], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(((z - z_lin) * gamma).sum(1), torch.zeros(64), rtol=0, atol=1e-4)
    # the nearest level point within the hyperplane: the component orthogonal to gamma is only rescaled
    perp0 = z0 - (z0 * gamma).sum(1, keepdim=True) * gamma
    perp = z - (z * gamma).sum(1, keepdim=True) * gamma
    cos = torch.nn.functional.cosine_similarity(perp, perp0, dim=1)
    assert bool((cos[feasible] > 1 - 1e-5).all())


def test_learned_correction_round_trips_with_its_projection_and_old_states_load():
    gen = torch.Generator().manual_seed(0)
    net, cdf = CorrectionNet(4, width=8, generator=gen), _random_cdf(4)
    with torch.no_grad():
        net.out.weight.normal_(generator=gen)
    c = LearnedCorrection(net, cdf, 1e-3, newton_steps=2)
    z0, gamma = torch.randn(5, 4, generator=gen), torch.nn.functional.normalize(torch.randn(4, generator=gen), dim=0)
    eps = torch.linspace(-1, 1, 5)
    rebuilt = correction_from_state({"correction": correction_state(c)})
    torch.testing.assert_close(rebuilt(z0, eps, gamma), c(z0, eps, gamma), rtol=0, atol=0)
    assert not torch.allclose(c(z0, eps, gamma), net(z0, eps, gamma))  # the projection moved the proposal
    linear_start = LearnedCorrection(net, cdf, 1e-3, newton_steps=2, start="linear")
    rebuilt = correction_from_state({"correction": correction_state(linear_start)})
    torch.testing.assert_close(rebuilt(z0, eps, gamma), linear_start(z0, eps, gamma), rtol=0, atol=0)
    assert not torch.allclose(linear_start(z0, eps, gamma), c(z0, eps, gamma))  # the network is not used
    older = correction_state(net)  # a DirectionSet written before the projection: the network alone
    torch.testing.assert_close(correction_from_state({"correction": older})(z0, eps, gamma), net(z0, eps, gamma))


def test_a_prior_with_dependent_dimensions_is_refused():
    prior = make_prior("gaussian_full", 2, scale_tril=[[1.0, 0.0], [0.8, 0.6]])
    with pytest.raises(ValueError, match=r"assumes independent latent dimensions.*gaussian_full"):
        DensityModel(prior, DensityConfig(), 1.0, seed=0)
    assert make_prior("mixture", 2).independent and not prior.independent
    # its joint log-density is exact (against torch's multivariate normal)
    z = prior.sample(6, 0)
    reference = torch.distributions.MultivariateNormal(torch.zeros(2), scale_tril=prior.tril().float())
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z), rtol=1e-5, atol=1e-5)


def test_validate_density_cli_prints_one_json_object_per_prior_and_walk():
    import json

    from click.testing import CliRunner

    from dplase.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["validate-density", "--prior", "gaussian", "--prior", "uniform", "--dim", "3",
                                  "--cdf-steps", "5", "--directions", "2", "--n-eval", "8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["prior"], r["walk"]) for r in records] == [
        (p, w) for p in ("gaussian", "uniform") for w in ("linear", "norm", "learned")]
    assert all(r["projection"] == "normal" and len(r["steps"]) == 6 for r in records)
    assert records[3]["max_abs_log_pdf_error"] is None  # NaN (not a Gaussian) is written as null
    bad = runner.invoke(main, ["validate-density", "--dim", "2", "--directions", "3"])
    assert bad.exit_code == 2 and "more than --dim" in bad.output
