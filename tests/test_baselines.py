"""Baselines: SeFa, GANSpace, Voynov-Babenko (and its reconstructor), random and coordinate directions."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

from dplase.artifacts import load_artifact
from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.generators.dcgan import DCGANAdapter
from dplase.methods import FitContext, fit, get_method
from dplase.methods.ganspace import fit_pca
from dplase.methods.simple import random_orthonormal
from dplase.priors import GaussianPrior, Prior
from dplase.reconstructor import (
    ShiftSampler,
    load_reconstructor,
    reconstructor_accuracy,
    save_reconstructor,
    train_reconstructor,
)
from dplase.results import history_frame
from dplase.walks import linear_walk

BASELINES = ("sefa", "ganspace", "voynov", "random", "coordinate")
#: small but complete settings per method, for the determinism / round-trip tests
QUICK = {
    "sefa": {},
    "ganspace": {"n_samples": 300, "batch_size": 100, "n_regression": 200},
    "voynov": {"steps": 3, "batch_size": 8, "n_eval": 32, "reconstructor_width": 4},
    "random": {},
    "coordinate": {},
}


@pytest.fixture(scope="module")
def tiny_gan() -> DCGANAdapter:
    return DCGANAdapter.build({"z_dim": 16, "image_size": 32, "channels": 1, "width": 8}, seed=0)


class LinearAdapter(GeneratorAdapter):
    """G1(z) = W z at the single layer "linear" (G2 is the identity); the answer of PCA is known."""

    def __init__(self, weight: torch.Tensor, prior: Prior | None = None) -> None:
        self.weight = weight
        self.z_dim, self.image_size, self.channels = weight.shape[1], 1, 1
        self.prior = prior or GaussianPrior(dim=self.z_dim)
        self.device = torch.device("cpu")

    @property
    def layers(self) -> list[str]:
        return ["linear"]

    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        return z @ self.weight.T

    def from_features(self, f: torch.Tensor, layer: str, latent: torch.Tensor | None = None) -> torch.Tensor:
        return f


class ScaledGaussian(Prior):
    """N(0, diag(std^2)): the latent PCA must find the axes in order of std."""

    def __init__(self, std: torch.Tensor) -> None:
        object.__setattr__(self, "dim", std.numel())
        object.__setattr__(self, "name", "scaled")
        object.__setattr__(self, "std", std)

    def _sample_cpu(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.dim, generator=gen) * self.std


def _linear_weight(features: int, singular: list[float], seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    d = len(singular)
    u, _ = torch.linalg.qr(torch.randn(features, d, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return (u * torch.tensor(singular, dtype=torch.float64)) @ v.T, u, v


# ---------------------------------------------------------------- SeFa


def test_sefa_matches_numpy_eigh_of_normalised_weight():
    gen = DCGANAdapter.build({"z_dim": 64, "image_size": 64, "channels": 1, "width": 32}, seed=0)
    k = 10
    start = time.perf_counter()
    ds = fit("sefa", gen, {"k": k})
    elapsed = time.perf_counter() - start
    # independent reference in genforce/sefa's layout: weight z_dim x out, each column scaled to unit norm
    w = gen.latent_projection_weight().numpy().astype(np.float64).T
    w = w / np.linalg.norm(w, axis=0, keepdims=True)
    values, vectors = np.linalg.eigh(w @ w.T)
    order = np.argsort(values)[::-1][:k]
    np.testing.assert_allclose(ds.scores.numpy(), values[order], rtol=1e-5)
    overlap = np.abs(np.sum(ds.directions.numpy().astype(np.float64) * vectors[:, order].T, axis=1))
    np.testing.assert_allclose(overlap, np.ones(k), atol=1e-4)  # equal up to sign
    assert np.all(np.diff(ds.scores.numpy()) <= 0)
    assert elapsed < 1.0, f"SeFa took {elapsed:.2f} s"


def test_sefa_needs_a_projection_weight():
    adapter = LinearAdapter(torch.eye(4))
    with pytest.raises(NotImplementedError, match="exposes no latent projection weight"):
        fit("sefa", adapter, {"k": 2})


# ---------------------------------------------------------------- GANSpace


def test_ganspace_recovers_principal_subspace_of_linear_g1():
    singular = [10.0, 7.0, 5.0, 2.0, 1.0, 0.5, 0.3, 0.1]
    weight, u, v = _linear_weight(features=24, singular=singular)
    adapter = LinearAdapter(weight.float())
    k = 3
    # regression noise is about sqrt((d - k) / n) rad, so n = 8000 gives about 1.4 degrees
    config = {"k": k, "n_samples": 8000, "batch_size": 1000, "n_regression": 8000}
    ds = fit("ganspace", adapter, config, FitContext(seed=0))
    # latent directions span the top right-singular subspace of W, one by one in order
    angles = subspace_angles(ds.directions.double().numpy().T, v[:, :k].numpy())
    assert np.max(angles) < math.radians(3), np.degrees(angles)
    cosines = np.abs(np.sum(ds.directions.double().numpy() * v[:, :k].numpy().T, axis=1))
    assert np.all(cosines > 0.99), cosines
    # the PCA itself finds W's range: its components span the top left-singular vectors
    pca = fit_pca(adapter, "linear", k, 4000, 500, seed=0)
    assert np.max(subspace_angles(pca.components_.T, u[:, :k].numpy())) < math.radians(3)
    expected_ratio = np.square(singular[:k]) / np.sum(np.square(singular))
    np.testing.assert_allclose(ds.scores.numpy(), expected_ratio, rtol=0.1)


def test_ganspace_latent_space_variant_finds_the_widest_axes():
    std = torch.tensor([0.5, 3.0, 1.0, 2.0, 0.2])
    adapter = LinearAdapter(torch.eye(5), prior=ScaledGaussian(std))
    ds = fit("ganspace", adapter, {"k": 2, "decompose": "latent", "n_samples": 3000, "batch_size": 500})
    assert torch.allclose(ds.directions.abs(), torch.eye(5)[[1, 3]], atol=0.05)
    # same numbers as a one-shot sklearn PCA of the same samples (up to the incremental approximation)
    z = torch.cat([adapter.prior.sample(500, g) for g in _stream_generators(0, 6)]).numpy()
    reference = PCA(n_components=2).fit(z)
    np.testing.assert_allclose(ds.scores.numpy(), reference.explained_variance_ratio_, rtol=0.02)


def _stream_generators(seed: int, n: int):
    from dplase.training.loop import step_generator

    return [step_generator(seed, i) for i in range(n)]


def test_ganspace_rejects_bad_options(tiny_gan):
    with pytest.raises(ValueError, match="unknown decompose 'weights'"):
        fit("ganspace", tiny_gan, {"k": 2, "decompose": "weights"})
    with pytest.raises(ValueError, match=r"must be at least k=4"):
        fit("ganspace", tiny_gan, {"k": 4, "n_samples": 3, "batch_size": 100})


# ---------------------------------------------------------------- random / coordinate


def test_random_directions_are_orthonormal_and_seeded():
    a, b, c = random_orthonormal(12, 40, seed=5), random_orthonormal(12, 40, seed=5), random_orthonormal(12, 40, 6)
    torch.testing.assert_close(a @ a.T, torch.eye(12), atol=1e-6, rtol=0)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # Haar: no direction prefers a coordinate axis (mean |entry| of a unit vector in R^40 is about 0.126)
    big = random_orthonormal(40, 40, seed=1)
    assert 0.10 < float(big.abs().mean()) < 0.15


def test_coordinate_directions_are_the_axes(tiny_gan):
    ds = fit("coordinate", tiny_gan, {"k": 3})
    assert torch.equal(ds.directions, torch.eye(16)[:3]) and torch.equal(ds.scores, torch.ones(3))


# ---------------------------------------------------------------- every method


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_round_trips_and_is_seed_deterministic(tiny_gan, tmp_path, name):
    assert name in get_method(name).names
    context = FitContext(seed=3, progress=False)
    first = fit(name, tiny_gan, {"k": 4, **QUICK[name]}, context)
    again = fit(name, tiny_gan, {"k": 4, **QUICK[name]}, context)
    assert torch.equal(first.directions, again.directions) and torch.equal(first.scores, again.scores)
    assert first.k == 4 and first.method == name and first.seed == 3 and first.layer == "block0"
    assert first.config["k"] == 4 and all(first.config[key] == val for key, val in QUICK[name].items())
    torch.testing.assert_close(first.directions.norm(dim=1), torch.ones(4))
    loaded = DirectionSet.load(first.save(tmp_path / "directions.pt"))
    assert torch.equal(loaded.directions, first.directions) and torch.equal(loaded.scores, first.scores)
    assert (loaded.method, loaded.config, loaded.walk, loaded.layer, loaded.seed, loaded.generator_sha256) == (
        first.method, first.config, first.walk, first.layer, first.seed, first.generator_sha256)


@pytest.mark.parametrize("name", ["ganspace", "voynov", "random"])
def test_seeded_baselines_change_with_the_seed(tiny_gan, name):
    a = fit(name, tiny_gan, {"k": 4, **QUICK[name]}, FitContext(seed=0, progress=False))
    b = fit(name, tiny_gan, {"k": 4, **QUICK[name]}, FitContext(seed=1, progress=False))
    assert not torch.allclose(a.directions, b.directions)


# ---------------------------------------------------------------- Voynov-Babenko


#: the published shift range (scale 6, min 0.5): 60 steps on the untrained tiny GAN learn with it; the default
#: range, T of the prior (1.77 here), needs the default budget (tests/test_budgets.py)
VOYNOV_LEARNS = {"k": 4, "steps": 60, "batch_size": 16, "lr": 3e-3, "directions_lr": 3e-3, "n_eval": 256,
                 "reconstructor_width": 8, "shift_scale": 6.0, "min_shift": 0.5}


def test_voynov_reaches_accuracy_well_above_chance(tiny_gan, tmp_path):
    context = FitContext(seed=0, progress=False)
    ds = fit("voynov", tiny_gan, VOYNOV_LEARNS, context)
    chance = 1 / 4
    # the scores are held-out per-direction recalls of the jointly trained reconstructor
    assert float(ds.scores.mean()) > 2 * chance, ds.scores
    torch.testing.assert_close(ds.directions @ ds.directions.T, torch.eye(4), atol=1e-5, rtol=0)
    losses = history_frame(context.history)
    assert set(losses["term"]) == {"label", "shift", "batch_accuracy"}
    assert losses["step"].max() == VOYNOV_LEARNS["steps"] - 1
    label = losses[losses["term"] == "label"]["value"].to_numpy()
    assert label[-10:].mean() < label[:10].mean()


@pytest.mark.slow
def test_voynov_on_the_64px_shapes_model():
    """The trained shapes GAN when the pipeline has produced it, else the same architecture untrained."""
    path = Path(__file__).resolve().parents[1] / "results" / "models" / "shapes-dcgan64.pt"
    if path.is_file():
        from dplase.generators.registry import load_generator

        generator = load_generator(path, device="cpu")
    else:
        generator = DCGANAdapter.build({"z_dim": 16, "image_size": 64, "channels": 1, "width": 16}, seed=0)
    config = {"k": 5, "steps": 150, "batch_size": 16, "lr": 3e-3, "directions_lr": 3e-3, "n_eval": 500,
              "shift_scale": 6.0, "min_shift": 0.5}  # the published range, as VOYNOV_LEARNS
    ds = fit("voynov", generator, config, FitContext(seed=0, progress=False))
    assert float(ds.scores.mean()) > 2 / 5, ds.scores


def test_voynov_resumes_exactly_after_an_interruption(tiny_gan, tmp_path):
    config = {"k": 3, "steps": 6, "batch_size": 8, "n_eval": 32, "reconstructor_width": 4, "lr": 1e-3,
              "directions_lr": 1e-3}
    whole = fit("voynov", tiny_gan, config, FitContext(seed=2, progress=False))

    crashing = DCGANAdapter(tiny_gan.net, tiny_gan.prior)
    calls = {"n": 0}

    def forward(z: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 2 * 4 + 1:  # two renders per step: die inside step 4, after the step-4 checkpoint
            raise KeyboardInterrupt
        return crashing.net(z)

    crashing.forward = forward
    ckpt = tmp_path / "directions.ckpt"
    context = FitContext(seed=2, progress=False, checkpoint_path=ckpt, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        fit("voynov", crashing, config, context)
    tensors, _ = load_artifact(ckpt, kind="voynov-checkpoint")
    assert tensors["step"] == 4  # really interrupted half-way
    resumed = fit("voynov", tiny_gan, config, context)
    assert torch.equal(resumed.directions, whole.directions) and torch.equal(resumed.scores, whole.scores)


def test_voynov_rejects_the_learned_walk(tiny_gan):
    with pytest.raises(ValueError, match="voynov trains with walk linear or norm, got 'learned'"):
        fit("voynov", tiny_gan, {"k": 2, "walk": "learned", "steps": 1})


# ---------------------------------------------------------------- reconstructor (RCA)


def test_shift_sampler_respects_range_and_minimum():
    idx, eps = ShiftSampler(scale=6.0, min_shift=0.5).sample(5000, 7, torch.Generator().manual_seed(0))
    assert idx.min() == 0 and idx.max() == 6
    assert float(eps.abs().min()) >= 0.5 and float(eps.abs().max()) <= 6.0
    assert 0.45 < float((eps > 0).float().mean()) < 0.55
    with pytest.raises(ValueError, match="unknown shift distribution 'cauchy'"):
        ShiftSampler(distribution="cauchy")


def test_reconstructor_accuracy_separates_distinct_from_identical_directions(tiny_gan, tmp_path):
    distinct = random_orthonormal(4, tiny_gan.z_dim, seed=0)
    identical = distinct[:1].expand(4, -1).clone()  # four labels for one and the same edit: unlearnable
    scores = {}
    for label, dirs in (("distinct", distinct), ("identical", identical)):
        model, history = train_reconstructor(tiny_gan, dirs, linear_walk, steps=60, batch_size=16, seed=0)
        assert len(history) == 60 * 3
        scores[label] = reconstructor_accuracy(model, tiny_gan, dirs, linear_walk, n=512, seed=11)
    assert scores["distinct"] > 0.6, scores
    assert scores["identical"] < 0.4, scores
    loaded = load_reconstructor(save_reconstructor(tmp_path / "rec.pt", model))
    assert reconstructor_accuracy(loaded, tiny_gan, identical, linear_walk, n=512, seed=11) == scores["identical"]
    assert loaded.shifts == ShiftSampler()
