"""The planted generator (known directions), the oracle method and the recovery metric, checked against the
truth they are built from."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import gamma

from dplase.config import ConfigError, check_config, prepare, validate_config
from dplase.generators import load_generator
from dplase.generators.planted import (
    DEFAULT_GAINS,
    FACTORS,
    MAX_AXIS_COSINE,
    build_planted,
    planted_basis,
    save_planted,
)
from dplase.methods import fit
from dplase.metrics.recovery import expected_abs_cosine, recovery_scores
from dplase.priors import PRIOR_NAMES
from dplase.walks import linear_walk, norm_walk

CASES = [(size, channels, level, prior) for size, channels in ((32, 1), (64, 3)) for level in ("aligned", "mixed")
         for prior in PRIOR_NAMES]


@pytest.fixture(scope="module")
def planted():
    return build_planted(z_dim=16, image_size=32, seed=3)


@pytest.mark.parametrize(("size", "channels", "level", "prior"), CASES)
def test_adapter_contract_every_layer(size, channels, level, prior):
    g = build_planted(z_dim=8, image_size=size, channels=channels, seed=1, level=level, prior=prior)
    z = g.sample_latents(6, 0)
    images = g(z)
    assert images.shape == (6, channels, size, size) and images.min() >= -1 and images.max() <= 1
    for layer in g.layers:
        torch.testing.assert_close(g.from_features(g.features(z, layer), layer), images, atol=1e-5, rtol=0)
    assert torch.equal(build_planted(z_dim=8, image_size=size, channels=channels, seed=1, level=level,
                                     prior=prior)(z), images)  # a pure function of its config


def test_planted_directions_are_orthonormal_far_from_the_axes_and_seeded():
    q = planted_basis(16, 5, seed=0)
    torch.testing.assert_close(q @ q.T, torch.eye(16), atol=1e-5, rtol=0)
    assert q[:5].abs().max() <= MAX_AXIS_COSINE
    assert not torch.equal(planted_basis(16, 5, seed=1), q) and torch.equal(planted_basis(16, 5, seed=0), q)
    assert planted_basis(5, 5, seed=0)[:5].abs().max() <= MAX_AXIS_COSINE  # also when every row is planted


def test_each_planted_direction_changes_its_factor_only_and_null_directions_none(planted):
    basis = planted.net.basis
    z0 = planted.sample_latents(32, 5)
    before = planted.exact_factors(z0)
    for i, name in enumerate(FACTORS):
        after = planted.exact_factors(linear_walk(z0, basis[i], 0.7))
        changed = {f: float((after[f] - before[f]).abs().max()) for f in FACTORS}
        assert changed[name] > 1e-2, (name, changed)
        assert all(v < 1e-5 for f, v in changed.items() if f != name), (name, changed)
    for j in range(len(FACTORS), 16):  # null directions move no factor
        after = planted.exact_factors(linear_walk(z0, basis[j], 1.5))
        assert max(float((after[f] - before[f]).abs().max()) for f in FACTORS) < 1e-5, j


def test_factors_are_monotone_in_the_planted_coordinate_with_the_documented_gains(planted):
    basis = planted.net.basis
    steps = torch.linspace(-2, 2, 41)
    z = steps[:, None] * basis[2]  # along the scale direction from the origin
    scale = planted.exact_factors(z)["scale"]
    assert torch.all(scale[1:] > scale[:-1])
    # t = 2 Phi(g u) - 1, so the slope of the code at u = 0 is g sqrt(2 / pi) (sigma = 1 for N(0, I))
    codes = planted.features(torch.stack([-1e-3 * basis[2], 1e-3 * basis[2]]), "factors")[:, 2]
    slope = float(codes[1] - codes[0]) / 2e-3
    assert slope == pytest.approx(DEFAULT_GAINS[2] * math.sqrt(2 / math.pi), rel=0.02)


def test_sefa_recovers_the_aligned_level_exactly_and_not_the_mixed_one():
    for level, solved in (("aligned", True), ("mixed", False)):
        g = build_planted(z_dim=16, image_size=32, seed=0, level=level)
        found = fit("sefa", g, {"k": 5}).directions
        cos = (found @ g.planted_directions().T).abs()
        if solved:  # in gain order, to numerical precision
            torch.testing.assert_close(cos, torch.eye(5), atol=1e-5, rtol=0)
        else:
            assert float(cos.max(dim=1).values.min()) < 0.95, cos


def test_fidelity_falls_off_the_typical_set_under_a_linear_walk_not_a_norm_walk(planted):
    z0 = planted.sample_latents(64, 7)
    null = planted.net.basis[10]
    fid0 = planted.exact_factors(z0)["fidelity"]
    linear = planted.exact_factors(linear_walk(z0, null, 3.0))["fidelity"]
    norm = planted.exact_factors(norm_walk(z0, null, 3.0))["fidelity"]
    assert float(fid0.mean()) > 0.85
    assert float((fid0 - linear).mean()) > 0.1  # ||z|| grows, log p0 falls, contrast drops
    torch.testing.assert_close(norm, fid0, atol=1e-4, rtol=0)  # iso-density: unchanged for N(0, I)
    assert planted.exact_factors(torch.full((1, 16), 1.5))["fidelity"].item() < 0.5  # far out in the tail


def test_uniform_prior_fidelity_is_zero_outside_the_cube():
    g = build_planted(z_dim=8, image_size=32, seed=0, prior="uniform")
    inside = g.sample_latents(16, 0)
    assert torch.all(g.exact_factors(inside)["fidelity"] == 1.0)
    outside = inside.clone()
    outside[:, 0] = 5.0
    assert torch.all(g.exact_factors(outside)["fidelity"] == 0.0)
    assert torch.all(g(outside) == -1.0)  # nothing drawn: a blank frame


def test_images_are_differentiable_in_z(planted):
    z = planted.sample_latents(4, 1).requires_grad_(True)
    planted(z).pow(2).sum().backward()
    assert torch.isfinite(z.grad).all() and float(z.grad.abs().sum()) > 0


def test_checkpoint_round_trip_gives_the_same_images(tmp_path):
    path = save_planted(tmp_path / "p.pt", z_dim=12, image_size=32, channels=3, seed=4, level="mixed")
    loaded = load_generator(path)
    built = build_planted(z_dim=12, image_size=32, channels=3, seed=4, level="mixed")
    z = built.sample_latents(5, 2)
    assert torch.equal(loaded(z), built(z))
    assert torch.equal(loaded.planted_directions(), built.planted_directions())
    assert loaded.checkpoint_sha256 and loaded.factor_names == FACTORS


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"factors": ["pos_x", "size"]}, "unknown planted factor"),
    ({"z_dim": 4}, "z_dim=4 is smaller than the 5 planted factors"),
    ({"gains": [1.0, 1.0, 0.0, 1.0, 1.0]}, "positive gain"),
    ({"gains": [1.0, 2.0]}, "one positive gain per planted factor"),
    ({"level": "hard"}, "unknown planted level"),
    ({"factors": ["shape", "shape"]}, "distinct"),
])
def test_bad_planted_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_planted(**kwargs)


# ------------------------------------------------------------------------------------ oracle and recovery


def test_oracle_returns_the_planted_directions_and_refuses_other_generators(planted):
    from dplase.generators.dcgan import DCGANAdapter

    ds = fit("oracle", planted, {})
    assert torch.equal(ds.directions, planted.planted_directions())
    assert ds.scores.tolist() == pytest.approx(list(DEFAULT_GAINS))
    scores = recovery_scores(ds.directions, planted.planted_directions())
    assert scores["mean"] == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(scores["per_factor"], 1.0) and np.allclose(scores["null_leakage"], 0.0, atol=1e-3)
    dcgan = DCGANAdapter.build({"z_dim": 8, "image_size": 32, "channels": 1, "width": 4})
    with pytest.raises(ValueError, match="needs a generator with planted directions"):
        fit("oracle", dcgan, {"k": 3})
    with pytest.raises(ValueError, match="exceeds the 5 planted directions"):
        fit("oracle", planted, {"k": 6})


def test_two_planted_directions_mixed_by_45_degrees_score_cos_45(planted):
    q = planted.planted_directions()
    mixed = torch.cat([((q[0] + q[1]) / math.sqrt(2))[None], ((q[0] - q[1]) / math.sqrt(2))[None], q[2:]])
    scores = recovery_scores(mixed, q)
    assert scores["per_factor"][:2] == pytest.approx([math.cos(math.pi / 4)] * 2, abs=1e-6)
    assert scores["per_factor"][2:] == pytest.approx([1.0] * 3, abs=1e-6)
    assert scores["mean"] == pytest.approx((2 * math.cos(math.pi / 4) + 3) / 5, abs=1e-6)


def test_random_directions_score_the_analytic_expectations(planted):
    """Uniform directions on the sphere of R^16: E[leakage^2] = (d - F) / d, E|cos| = Gamma(d/2) / (sqrt(pi)
    Gamma((d+1)/2)) per pair before matching, and the matched mean lies above that."""
    q = planted.planted_directions()
    d, f = q.shape[1], q.shape[0]
    gen = torch.Generator().manual_seed(0)
    leak2, cosines, matched = [], [], []
    for _ in range(400):
        directions = torch.randn(5, d, generator=gen)
        directions = directions / directions.norm(dim=1, keepdim=True)
        scores = recovery_scores(directions, q)
        leak2.append(scores["null_leakage"] ** 2)
        cosines.append((directions @ q.T).abs().numpy())
        matched.append(scores["mean"])
    assert np.mean(leak2) == pytest.approx((d - f) / d, abs=0.01)
    assert np.mean(cosines) == pytest.approx(expected_abs_cosine(d), abs=0.005)
    assert expected_abs_cosine(d) == pytest.approx(gamma(d / 2) / (math.sqrt(math.pi) * gamma((d + 1) / 2)))
    assert expected_abs_cosine(d) == pytest.approx(0.2026, abs=1e-4)
    assert np.mean(matched) > expected_abs_cosine(d) + 0.05


def test_recovery_metric_rows_through_evaluate(planted):
    from dplase.data import load_dataset
    from dplase.metrics.evaluate import EvalConfig, evaluate
    from dplase.metrics.predictor import FactorPredictor

    data = load_dataset("shapes", image_size=32, seed=0)
    torch.manual_seed(0)
    predictor = FactorPredictor(1, 32, data.factor_specs, width=8, feature_dim=16)
    rows = evaluate(planted, fit("oracle", planted, {}), predictor, data,
                    EvalConfig(metrics=("recovery",), n_samples=4, n_steps=3, progress=False))
    values = {(r["metric"], r.get("direction")): r["value"] for r in rows}
    assert values[("recovery", None)] == pytest.approx(1.0, abs=1e-6)
    assert {m for m, _ in values} == {"recovery", "null_leakage", "latent_dim", *(f"recovery.{f}" for f in FACTORS)}
    assert all(values[("null_leakage", j)] < 1e-3 for j in range(5))


def test_oracle_on_a_trained_gan_model_is_a_config_error():
    config = {"datasets": {"shapes": {"image_size": 32}}, "models": {"dcgan": {"train": {"z_dim": 8}}},
              "sweeps": [{"methods": ["sefa", "oracle"], "params": {"k": 3}}]}
    validate_config(config)
    with pytest.raises(ConfigError, match="needs a generator with planted directions") as info:
        check_config(config)
    assert info.value.key == "sweeps[0].methods[1]"


def planted_config(**planted):
    return {"datasets": {"planted": {"image_size": 32}}, "models": {"p": {"family": "planted", "planted": planted}},
            "sweeps": [{"methods": ["oracle", "sefa"], "params": {"k": 3}}]}


def test_a_planted_model_is_built_by_the_workflow_or_read_from_its_checkpoint(tmp_path):
    config = planted_config()
    validate_config(config)
    check_config(config)  # no checkpoint needed: the workflow builds it
    sweep = prepare(config)
    assert sweep.job_keys("train_gan") == [("p", "planted", 0)]
    job = sweep.job_kwargs("train_gan", ("p", "planted", 0))
    assert job["family"] == "planted" and job["options"]["image_size"] == 32 and job["options"]["seed"] == 0
    config = planted_config()
    config["models"]["p"]["checkpoint"] = str(save_planted(tmp_path / "p.pt", image_size=32))
    validate_config(config)
    check_config(config)  # the oracle is fine on a planted checkpoint too
    assert prepare(config).job_keys("train_gan") == []


def test_generator_seeds_fan_the_runs_out():
    config = planted_config()
    config["models"]["p"]["seeds"] = [0, 3, 5]
    validate_config(config)
    sweep = prepare(config)
    assert [r.model_seed for r in sweep.runs] == [0, 0, 3, 3, 5, 5]
    assert len({r.run_id for r in sweep.runs}) == 6  # the generator seed is part of the run's identity
    assert sweep.job_keys("train_gan") == [("p", "planted", 0), ("p", "planted", 3), ("p", "planted", 5)]
    run = sweep.runs[2]
    assert sweep.run_paths(run)["generator"] == "results/generators/planted/p/seed3.pt"
    assert run.labels()["model_seed"] == 3 and run.to_row()["model_seed"] == 3


@pytest.mark.parametrize(("planted", "key", "message"), [
    ({"factors": ["pos_x", "colour"]}, "models.p.planted.factors", "unknown planted factor"),
    ({"z_dim": 4}, "models.p.planted.z_dim", "smaller than the 5 planted factors"),
    ({"gains": [1.0, 1.0, -1.0, 1.0, 1.0]}, "models.p.planted.gains", "positive gain"),
    ({"gains": [1.0, 2.0]}, "models.p.planted.gains", "one positive gain per planted factor"),
    ({"level": "hard"}, "models.p.planted.level", "unknown planted level"),
])
def test_bad_planted_options_are_config_errors_naming_the_key(planted, key, message):
    config = planted_config(**planted)
    validate_config(config)
    with pytest.raises(ConfigError, match=message) as info:
        check_config(config)
    assert info.value.key == key


def test_a_planted_dataset_must_match_its_model():
    config = planted_config(z_dim=12)
    validate_config(config)
    with pytest.raises(ConfigError, match="z_dim is 16, the model's 12") as info:
        check_config(config)
    assert info.value.key == "datasets.planted.options"
    config["datasets"]["planted"]["options"] = {"z_dim": 12}
    check_config(config)
