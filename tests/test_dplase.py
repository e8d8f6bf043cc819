"""DP-LaSE: loss terms, analytic recovery on a linear G1, walks, determinism, resume, NaN guard, artifact."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.generators.dcgan import DCGANAdapter
from dplase.methods import FitContext, fit, make_config
from dplase.methods.dplase import DPLaSEConfig, DPLaSETrainer
from dplase.methods.dplase_losses import (
    Directions,
    as_matrix,
    batched_gram,
    full_terms,
    orthogonality_penalty,
    stochastic_terms,
)
from dplase.priors import make_prior
from dplase.results import history_frame
from dplase.training.loop import NonFiniteLossError, Preempted
from dplase.walks import norm_walk, walk_for


class LinearAdapter(GeneratorAdapter):
    """G1(z) = W z (flat features); G2 reshapes the features to a one-channel image."""

    def __init__(self, weight: torch.Tensor, nan: bool = False, tanh: bool = False) -> None:
        self.weight, self.tanh = weight, tanh
        self.z_dim = weight.shape[1]
        self.image_size, self.channels = 1, weight.shape[0]
        self.prior = make_prior("gaussian", self.z_dim)
        self.device = torch.device("cpu")
        self.nan = nan

    @property
    def layers(self) -> list[str]:
        return ["lin"]

    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        out = z @ self.weight.T
        out = torch.tanh(out) if self.tanh else out
        return out * float("nan") if self.nan else out

    def from_features(self, f: torch.Tensor, layer: str, latent: torch.Tensor | None = None) -> torch.Tensor:
        return f.reshape(f.shape[0], -1, 1, 1)


def _linear_weight(seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen))
    s = torch.tensor([3.0, 2.5, 2.0, 1.0, 0.6, 0.3])
    weight = u[:, :6] @ torch.diag(s) @ v.T
    return weight, v.numpy()


def _tiny_dcgan() -> DCGANAdapter:
    return DCGANAdapter.build({"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}, seed=0)


QUICK = {"k": 3, "steps": 6, "batch_size": 4, "score_samples": 8, "density_batch": 32, "correction_width": 16}


# ---------------------------------------------------------------------------------------------- loss terms


def _cross_reference(delta: np.ndarray) -> float:
    """Independent loop: mean over n and ordered pairs of ||D_j^T D_h||_F^2 / (||D_j||^2 ||D_h||^2)."""
    n, k = delta.shape[:2]
    values = []
    for i in range(n):
        for j in range(k):
            for h in range(k):
                if j != h:
                    a, b = delta[i, j].T, delta[i, h].T  # positions x channels
                    values.append(np.linalg.norm(a.T @ b) ** 2 / (np.linalg.norm(a) ** 2 * np.linalg.norm(b) ** 2))
    return float(np.mean(values))


@pytest.mark.parametrize("shape", [(2, 3, 5, 2), (2, 3, 2, 5)])  # N x K x C x P: position and channel routes
def test_full_terms_match_reference(shape):
    delta = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    terms = full_terms(delta)
    assert float(terms["variation"]) == pytest.approx(float((delta.numpy() ** 2).mean()), rel=1e-12)
    assert float(terms["cross"]) == pytest.approx(_cross_reference(delta.numpy()), rel=1e-10)


def test_batched_gram_gradient():
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(batched_gram, (x,))
    assert torch.autograd.gradcheck(lambda y: batched_gram(y, transpose=True), (x,))
    torch.testing.assert_close(batched_gram(x, transpose=True), x.transpose(1, 2) @ x)


def test_full_terms_hand_values():
    # flat features (D x 1): cross is the squared cosine; D_1 = (1, 0), D_2 = (1, 1) -> cos^2 = 1/2
    delta = torch.tensor([[[[1.0, 0.0]], [[1.0, 1.0]]]])  # N=1, K=2, C=1, P=2
    terms = full_terms(delta)
    assert float(terms["variation"]) == pytest.approx(3 / 4)
    assert float(terms["cross"]) == pytest.approx(0.5)
    # a zero change gives cross 0, never 0/0
    assert float(full_terms(torch.zeros(1, 2, 1, 2))["cross"]) == 0.0
    # position route: D_1 = [[1,0,0],[0,1,0]], D_2 = [[1,0,0],[0,0,1]] (P=2 x C=3): ||D_1^T D_2||^2 = 2,
    # ||D_1||^2 = ||D_2||^2 = 2 -> cross 1/2; variation 4 / 12
    d1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    d2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    terms = full_terms(torch.stack([d1.T, d2.T])[None])  # N=1, K=2, C=3, P=2
    assert float(terms["cross"]) == pytest.approx(0.5)
    assert float(terms["variation"]) == pytest.approx(1 / 3)


def test_stochastic_terms_hand_values():
    # two samples, C = 2 channels with spatial patterns over P = 2 positions (N x C x P)
    dj = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]]])
    dh = torch.tensor([[[1.0, 1.0], [1.0, 0.0]], [[3.0, 3.0], [0.0, 0.0]]])
    differ = torch.tensor([True, False])
    terms = stochastic_terms(dj, dh, differ)
    assert float(terms["variation"]) == pytest.approx(dj.pow(2).mean() + dh.pow(2).mean())
    # sample 0: channel 0: (1,0).(1,1) -> cos^2 = 1/2; channel 1: (0,2).(1,0) -> 0; mean 1/4 (sample 1 excluded)
    assert float(terms["cross"]) == pytest.approx(0.25)
    none_differ = stochastic_terms(dj, dh, torch.tensor([False, False]))
    assert float(none_differ["cross"]) == 0.0


def test_orthogonality_penalty():
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert float(orthogonality_penalty(q.T[:3])) == pytest.approx(0.0, abs=1e-24)
    gamma = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert float(orthogonality_penalty(gamma)) == pytest.approx(2.0)
    assert float(orthogonality_penalty(gamma, per_k2=True)) == pytest.approx(0.5)


def test_expm_directions_are_exactly_orthonormal():
    dirs = Directions(3, 6, "expm", torch.Generator().manual_seed(0))
    with torch.no_grad():
        dirs.skew.normal_(generator=torch.Generator().manual_seed(1))
        gamma = dirs()
    torch.testing.assert_close(gamma @ gamma.T, torch.eye(3), atol=1e-5, rtol=0)


def test_as_matrix_layouts():
    assert as_matrix(torch.zeros(2, 7)).shape == (2, 1, 7)
    f = torch.arange(2 * 3 * 2 * 2.0).reshape(2, 3, 2, 2)
    m = as_matrix(f)
    assert m.shape == (2, 3, 4) and float(m[1, 2, 3]) == float(f[1, 2, 1, 1])


# ------------------------------------------------------------------------------------- analytic recovery


@pytest.mark.parametrize(
    ("estimator", "orthogonal"), [("full", "expm"), ("stochastic", "expm"), ("full", "penalty")]
)
def test_linear_generator_recovers_top_right_singular_vectors(estimator, orthogonal):
    weight, v = _linear_weight()
    config = DPLaSEConfig(k=2, walk="linear", estimator=estimator, orthogonal=orthogonal, steps=300, lr=0.05,
                          batch_size=16, lam=1.0, zeta=50.0, max_step=2.0, score_samples=64)
    ds = fit("dplase", LinearAdapter(weight), config, FitContext(seed=0, progress=False))
    angles = subspace_angles(ds.directions.double().numpy().T, v[:, :2])
    assert np.degrees(angles.max()) < 5.0
    random_dirs = torch.randn(2, 6, generator=torch.Generator().manual_seed(9)).numpy().T
    assert np.degrees(subspace_angles(random_dirs, v[:, :2]).max()) > 20.0  # the tolerance means something
    assert ds.scores[0] >= ds.scores[1]


def _feature_cross(adapter: GeneratorAdapter, directions: torch.Tensor) -> float:
    """Mean squared cosine between the feature changes of different directions (held-out samples)."""
    z0 = adapter.prior.sample(256, 123)
    f0 = adapter.features(z0, "lin")
    deltas = torch.stack([f0 - adapter.features(z0 + 1.5 * g, "lin") for g in directions], dim=1)
    return float(full_terms(deltas[:, :, None, :])["cross"])


@pytest.mark.parametrize(("estimator", "tanh"), [("full", False), ("stochastic", False), ("full", True),
                                                  ("stochastic", True)])
def test_lambda_zero_gives_more_correlated_changes(estimator, tanh):
    weight, _ = _linear_weight()
    adapter = LinearAdapter(2 * weight if tanh else weight, tanh=tanh)
    crosses = {}
    for lam in (0.0, 2.0):
        config = DPLaSEConfig(k=3, walk="linear", orthogonal="expm", estimator=estimator, steps=250, lr=0.05,
                              batch_size=16, lam=lam, max_step=2.0, score_samples=32)
        ds = fit("dplase", adapter, config, FitContext(seed=3, progress=False))
        crosses[lam] = _feature_cross(adapter, ds.directions)
    # linear: lambda > 0 picks the singular vectors (cross ~ 0); tanh: measured 0.27 vs 0.17
    assert crosses[0.0] > (1.3 if tanh else 10.0) * crosses[2.0]


# ------------------------------------------------------------------------------------------------ walks


def test_norm_walk_preserves_norm_to_float_precision():
    z0 = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    gamma = torch.nn.functional.normalize(torch.randn(16, generator=torch.Generator().manual_seed(1)), dim=0)
    for eps in (-10.0, -1.0, 0.3, 5.0):
        z = norm_walk(z0, gamma, eps)
        torch.testing.assert_close(z.norm(dim=1), z0.norm(dim=1), rtol=2e-6, atol=0)


# ----------------------------------------------------------------------------------- robustness and I/O


@pytest.mark.parametrize("estimator", ["full", "stochastic"])
@pytest.mark.parametrize(("k", "lam"), [(1, 1.0), (3, 0.0)])
def test_k1_and_lambda0_are_finite(estimator, k, lam):
    config = make_config("dplase", **{**QUICK, "k": k, "lam": lam, "estimator": estimator})
    ds = fit("dplase", _tiny_dcgan(), config, FitContext(progress=False))
    assert ds.k == k and torch.isfinite(ds.scores).all() and torch.isfinite(ds.directions).all()


def test_same_seed_same_directions_different_seed_different():
    config = make_config("dplase", **QUICK, walk="learned")
    a = fit("dplase", _tiny_dcgan(), config, FitContext(seed=1, progress=False))
    b = fit("dplase", _tiny_dcgan(), config, FitContext(seed=1, progress=False))
    c = fit("dplase", _tiny_dcgan(), config, FitContext(seed=2, progress=False))
    assert torch.equal(a.directions, b.directions) and torch.equal(a.scores, b.scores)
    assert torch.equal(a.extra["correction"]["weights"]["out.weight"], b.extra["correction"]["weights"]["out.weight"])
    assert not torch.equal(a.directions, c.directions)


@pytest.mark.parametrize("overrides", [{"walk": "norm"}, {"walk": "learned", "density_mode": "pretrain",
                                                          "density_pretrain_steps": 3, "subspace": True,
                                                          "subspace_steps": 2}])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch, overrides):
    config = make_config("dplase", **{**QUICK, "steps": 8, **overrides})
    ref = fit("dplase", _tiny_dcgan(), config, FitContext(seed=0, progress=False))
    ckpt = tmp_path / "run.ckpt"
    original = DPLaSETrainer.step

    def interrupting(self, step):
        terms = original(self, step)
        if step == 5:
            os.kill(os.getpid(), signal.SIGUSR2)  # pre-emption arrives mid-run
        return terms

    monkeypatch.setattr(DPLaSETrainer, "step", interrupting)
    with pytest.raises(Preempted):
        fit("dplase", _tiny_dcgan(), config, FitContext(seed=0, checkpoint_path=ckpt, progress=False))
    assert ckpt.exists()
    monkeypatch.setattr(DPLaSETrainer, "step", original)
    context = FitContext(seed=0, checkpoint_path=ckpt, progress=False)
    resumed = fit("dplase", _tiny_dcgan(), config, context)
    assert torch.equal(resumed.directions, ref.directions)
    assert torch.equal(resumed.scores, ref.scores)
    if ref.channel_masks is not None:
        assert torch.equal(resumed.channel_masks, ref.channel_masks)
    frame = history_frame(context.history)
    assert list(frame.columns) == ["step", "term", "value"]
    assert sorted(frame.step.unique()) == list(range(8 + overrides.get("density_pretrain_steps", 0)
                                                     + (2 * 3 if overrides.get("subspace") else 0)))


def test_nan_guard_names_the_term_and_step():
    weight, _ = _linear_weight()
    config = DPLaSEConfig(k=2, walk="linear", steps=3, batch_size=4, score_samples=4)
    with pytest.raises(NonFiniteLossError, match=r"loss term 'variation' is nan at step 0"):
        fit("dplase", LinearAdapter(weight, nan=True), config, FitContext(progress=False))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_step"):
        DPLaSEConfig(max_step=0.0)  # the authors' code defaulted the step range to 0
    with pytest.raises(ValueError, match="estimator must be one of full, stochastic"):
        DPLaSEConfig(estimator="exact")
    with pytest.raises(ValueError, match="lam"):
        DPLaSEConfig(lam=-1.0)


def test_direction_set_round_trip_with_learned_walk_and_masks(tmp_path):
    config = make_config("dplase", **{**QUICK, "walk": "learned", "subspace": True, "subspace_steps": 2,
                                      "subspace_groups": 3})
    gen = _tiny_dcgan()
    ds = fit("dplase", gen, config, FitContext(seed=0, progress=False))
    assert ds.channel_masks.shape == (3, 3, 32)  # K x groups x channels at block0 (width 8 * 4)
    assert torch.equal(ds.channel_masks.sum(1), torch.ones(3, 32))  # every channel in exactly one group
    assert ds.layer == "block0" and ds.config["walk"] == "learned" and ds.method == "dplase"
    assert list(ds.scores) == sorted(ds.scores.tolist(), reverse=True)
    path = ds.save(tmp_path / "d.pt")
    back = DirectionSet.load(path)
    assert torch.equal(back.directions, ds.directions) and torch.equal(back.channel_masks, ds.channel_masks)
    assert back.config == ds.config and back.walk == "learned"
    z0 = gen.sample_latents(4, 0)
    eps = torch.linspace(-1, 1, 4)
    a = walk_for(ds, device="cpu")(z0, ds.directions[0], eps)
    b = walk_for(back, device="cpu")(z0, back.directions[0], eps)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, z0 + eps[:, None] * ds.directions[0])  # the correction is really applied


def test_density_gradient_reaches_the_directions_only_with_the_option():
    gen = _tiny_dcgan()

    def directions_after_one_step(option: bool) -> torch.Tensor:
        config = make_config("dplase", **{**QUICK, "walk": "learned", "density_to_directions": option})
        trainer = DPLaSETrainer(gen, config, seed=0)
        trainer.step(0)
        return trainer.dirs().detach()

    off = directions_after_one_step(False)
    assert torch.equal(off, directions_after_one_step(False))  # deterministic, so a difference is the option's
    assert not torch.equal(off, directions_after_one_step(True))  # l_den's gradient moved Gamma too


def test_learned_walk_refuses_a_prior_with_dependent_dimensions():
    gen = _tiny_dcgan()
    gen.prior = make_prior("gaussian_full", 8, scale_tril=torch.eye(8).add(0.5 * torch.tril(torch.ones(8, 8), -1))
                           .tolist())
    with pytest.raises(ValueError, match="assumes independent latent dimensions"):
        DPLaSETrainer(gen, make_config("dplase", **{**QUICK, "walk": "learned"}), seed=0)
    DPLaSETrainer(gen, make_config("dplase", **{**QUICK, "walk": "linear"}), seed=0)  # other walks are fine


class _NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradient is broken."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("nan")


def test_nan_gradient_with_a_finite_loss_stops_before_the_update():
    weight, _ = _linear_weight()
    gen = LinearAdapter(weight)
    features = gen.features
    gen.features = lambda z, layer: _NanGradient.apply(features(z, layer))
    trainer = DPLaSETrainer(gen, make_config("dplase", k=3, steps=4, batch_size=4, score_samples=8), seed=0)
    before = trainer.dirs().detach().clone()
    with pytest.raises(NonFiniteLossError, match=r"gradient of loss term .* is nan at step 0"):
        trainer.step(0)
    assert torch.equal(trainer.dirs().detach(), before)  # the broken update never reached Gamma
