"""The StyleGAN2 family and its latent spaces: the adapter contract in z and w, PixelNorm's invariance to ||z||
(images and the metrics), the whitened-w prior against direct numpy computations, SeFa in z and w against numpy
eigendecompositions, every method in w, training (resume-exact, w_avg) and the config's ``space`` axis.

References are computed independently of the library where it matters: the mapping network is written out in
numpy from its raw parameters (`_reference_mapping`), SeFa's weights are stacked from the raw affine
parameters, and the Gaussian of the w prior is fitted with numpy.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_evaluation_setup

from dplase.artifacts import config_hash, load_artifact
from dplase.config import ConfigError, prepare
from dplase.config.loading import read_configs
from dplase.directions import DirectionSet
from dplase.generators import generator_meta, load_generator, save_generator
from dplase.generators.spaces import FIT_SEED, N_FIT, WhitenedPrior
from dplase.generators.stylegan2 import StyleGAN2Adapter, StyleGAN2Generator, fit_w_avg
from dplase.methods import METHODS, FitContext, fit
from dplase.metrics.evaluate import EvalConfig, evaluate, results_frame
from dplase.results import runs_table
from dplase.training.gan import GanConfig, build_networks, generator_arch, output_paths, train_gan

ROOT = Path(__file__).resolve().parent.parent
Z_DIM, W_DIM, LR_MLP = 8, 12, 0.01
#: widths 8, 8, 4, 2 at 4, 8, 16, 32 px; about 16% of the untrained generator's pixels reach the clamp
ARCH = {"z_dim": Z_DIM, "w_dim": W_DIM, "image_size": 32, "channels": 1, "n_mlp": 2, "lr_mlp": LR_MLP,
        "channel_base": 64, "max_channels": 8}
LAYERS = ["res4", "res8", "res16", "res32"]


@pytest.fixture(scope="module")
def sg2() -> StyleGAN2Adapter:
    """A small untrained StyleGAN2 in space z (tests never modify it)."""
    return StyleGAN2Adapter.build(ARCH, seed=0)


@pytest.fixture(scope="module")
def sg2_w(sg2) -> StyleGAN2Adapter:
    return sg2.in_space("w")


def _reference_mapping(net: StyleGAN2Generator, z: np.ndarray) -> np.ndarray:
    """The mapping network in numpy float64 from its raw parameters: PixelNorm, then per layer the
    equalised-learning-rate linear map (weight * lr_mlp / sqrt(fan_in), bias * lr_mlp) and a leaky ReLU
    (slope 0.2) times sqrt 2."""
    h = z / np.sqrt((z**2).mean(axis=1, keepdims=True) + 1e-8)
    for layer in net.mapping:
        weight = layer.weight.detach().double().numpy()
        bias = layer.bias.detach().double().numpy()
        a = h @ (weight * LR_MLP / math.sqrt(weight.shape[1])).T + bias * LR_MLP
        h = np.where(a >= 0, a, 0.2 * a) * math.sqrt(2.0)
    return h


def _randn(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _sefa_reference(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of AᵀA for the row-normalised weight A."""
    a = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    values, vectors = np.linalg.eigh(a.T @ a)
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order]


def _style_rows(net: StyleGAN2Generator, layers: list[int]) -> np.ndarray:
    """The style-modulation weights of synthesis convolutions ``layers``, stacked from the raw parameters
    (out x w_dim; the affine layers' equalised-lr scale 1 / sqrt(w_dim) included)."""
    return np.concatenate([net.convs[i].conv.affine.weight.detach().double().numpy() / math.sqrt(W_DIM)
                           for i in layers])


# ------------------------------------------------------------------------------------------- adapter contract


@pytest.mark.parametrize("space", ["z", "w"])
def test_adapter_contract_at_every_layer(sg2, space) -> None:
    gen = sg2.in_space(space)
    dim = Z_DIM if space == "z" else W_DIM
    assert (gen.space, gen.z_dim, gen.prior.dim, gen.family, gen.spaces) == (space, dim, dim, "stylegan2", ("z", "w"))
    assert gen.layers == LAYERS and gen.default_layer() == "res8" and gen.g2_needs_latent
    latents = gen.sample_latents(5, seed=1)
    assert latents.shape == (5, dim)
    images = gen(latents)
    assert images.shape == (5, 1, 32, 32)
    assert images.min() >= -1 and images.max() <= 1
    assert images.std() > 0.1 and (images[0] - images[1]).abs().max() > 0.1  # neither constant nor one image

    # the images are the synthesis of this space's w: w = M(z) in z (numpy mapping), mu + L u in whitened w
    if space == "z":
        w = torch.from_numpy(_reference_mapping(gen.net, latents.double().numpy())).float()
    else:
        w = (gen.prior.mean + latents.double() @ gen.prior.scale_tril.T).float()
    torch.testing.assert_close(gen.to_w(latents), w, rtol=0, atol=1e-5)
    torch.testing.assert_close(images, gen.net.synthesis(w).clamp(-1, 1), rtol=0, atol=1e-5)

    others = gen.sample_latents(5, seed=2)
    for i, layer in enumerate(LAYERS):
        f = gen.features(latents, layer)
        assert f.shape[0] == 5 and f.shape[-2:] == (4 * 2**i, 4 * 2**i)
        torch.testing.assert_close(gen.from_features(f, layer, latents), images, rtol=0, atol=1e-6)
        if layer != LAYERS[-1]:  # G2 really is modulated by the latent it is given (the last to-RGB too, weakly)
            assert (gen.from_features(f, layer, others) - images).abs().max() > 1e-2
    # batches of 2: another grouped convolution, the same images up to float rounding
    torch.testing.assert_close(gen.generate(latents, batch_size=2), images, rtol=0, atol=1e-5)


def test_adapter_errors_name_what_is_wrong(sg2, sg2_w) -> None:
    z = sg2.sample_latents(2, seed=0)
    f = sg2.features(z, "res8")
    with pytest.raises(ValueError, match="G2 needs the latent as well"):
        sg2.from_features(f, "res8")
    with pytest.raises(ValueError, match="G2 needs the latent as well"):
        sg2_w.from_features(sg2_w.features(sg2_w.sample_latents(2, 0), "res4"), "res4")
    for gen in (sg2, sg2_w):
        with pytest.raises(ValueError, match=r"no latent space 'w\+'; its spaces: z, w"):
            gen.in_space("w+")
        with pytest.raises(ValueError, match=r"unknown layer 'res64'.*choose one of res4, res8, res16, res32"):
            gen.features(gen.sample_latents(2, 0), "res64")
        with pytest.raises(ValueError, match=r"unknown layer 'block0'.*choose one of res4"):
            gen.from_features(f, "block0", z)
    with pytest.raises(ValueError, match=r"has no latent space 'w\+'; its spaces: z, w"):
        StyleGAN2Adapter(sg2.net, sg2.z_prior, space="w+")
    with pytest.raises(ValueError, match="prior dimension 12 != generator z_dim 8"):
        StyleGAN2Adapter(sg2.net, sg2_w.prior)
    with pytest.raises(ValueError, match="image_size must be a power of two >= 4, got 48"):
        StyleGAN2Generator(z_dim=4, w_dim=4, image_size=48)


def test_spaces_share_one_network_and_one_fitted_prior(sg2, sg2_w) -> None:
    assert sg2.in_space("z") is sg2 and sg2_w.in_space("w") is sg2_w
    back = sg2_w.in_space("z")
    assert back.space == "z" and back.net is sg2.net and back.latent_basis is None
    assert back.in_space("w").prior is sg2_w.prior  # not refitted
    z = sg2.sample_latents(3, seed=4)
    torch.testing.assert_close(back(z), sg2(z), rtol=0, atol=0)
    torch.testing.assert_close(sg2_w.latent_basis, sg2_w.prior.scale_tril.float())


def test_truncation_pulls_w_towards_w_avg(sg2) -> None:
    net = copy.deepcopy(sg2.net)
    z = _randn(6, Z_DIM, 3)
    full = torch.from_numpy(_reference_mapping(net, z.double().numpy())).float()
    net.w_avg.copy_(_randn(1, W_DIM, 4)[0])
    net.truncation = 0.5
    torch.testing.assert_close(net.mapping_network(z), net.w_avg + 0.5 * (full - net.w_avg), rtol=0, atol=1e-5)
    torch.testing.assert_close(net.mapping_network(z, truncate=False), full, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------- PixelNorm in z


def test_pixelnorm_makes_images_invariant_to_the_norm_of_z(sg2) -> None:
    z = sg2.sample_latents(4, seed=2)
    for i in range(len(z)):
        base = sg2(z[i : i + 1])
        # (far below c = 0.25 the 1e-8 inside PixelNorm's square root starts to show: 1e-5 at c = 0.05)
        for c in (0.25, 0.5, 2.0, 20.0):
            torch.testing.assert_close(sg2(c * z[i : i + 1]), base, rtol=0, atol=1e-5)
            torch.testing.assert_close(sg2.to_w(c * z[i : i + 1]), sg2.to_w(z[i : i + 1]), rtol=1e-5, atol=1e-6)
    assert (sg2(-z) - sg2(z)).abs().max() > 0.1  # c < 0 is no rescaling: another image


@pytest.fixture(scope="module")
def eval_setup():
    """32 px shapes, an untrained DCGAN (z 8, no PixelNorm) and an untrained factor predictor."""
    return tiny_evaluation_setup()


def _evaluate_random_directions(gen, setup, seed: int = 0) -> tuple[list[dict], DirectionSet, EvalConfig]:
    data, _, predictor, _ = setup
    gammas = torch.linalg.qr(_randn(gen.z_dim, 3, seed))[0].T
    directions = DirectionSet(gammas, torch.ones(3), method="random", config={"k": 3}, seed=seed, space=gen.space)
    config = EvalConfig(metrics=("gap", "density"), walks=("linear", "norm"), n_samples=6, n_steps=5,
                        progress=False)
    return evaluate(gen, directions, predictor, data, config), directions, config


def _values(rows: list[dict], metric: str, walk: str) -> np.ndarray:
    return np.array([r["value"] for r in rows if r["metric"] == metric and r["walk"] == walk])


def test_norm_walk_is_the_linear_walk_for_stylegan2_in_z_but_not_for_the_dcgan(sg2, eval_setup) -> None:
    rows, _, _ = _evaluate_random_directions(sg2, eval_setup)
    gap = _values(rows, "linear_gap", "norm")
    assert len(gap) == 3 * 4 and len(_values(rows, "linear_gap", "linear")) == 0  # K x non-zero steps
    assert np.all(np.abs(gap) < 1e-5), gap
    drift = _values(rows, "abs_logp_drift", "norm")
    assert len(drift) == 3 * 4 and np.all(drift < 1e-5), drift
    assert _values(rows, "abs_logp_drift", "linear").max() > 0.1  # the linear walk does move the density
    ratio = _values(rows, "norm_ratio", "norm")
    np.testing.assert_allclose(ratio, 1.0, atol=1e-5)

    _, dcgan, _, _ = eval_setup  # no PixelNorm: the norm rescale changes the images
    dc_rows, _, _ = _evaluate_random_directions(dcgan, eval_setup)
    dc_gap = _values(dc_rows, "linear_gap", "norm")
    # ~1e-3 on this tiny untrained DCGAN, ~1e-7 (float rounding) on the StyleGAN2
    assert len(dc_gap) == 3 * 4 and dc_gap.min() > 5e-4 and dc_gap.min() > 1000 * gap.max(), (dc_gap, gap)
    assert np.all(_values(dc_rows, "abs_logp_drift", "norm") < 1e-5)


def test_in_whitened_w_the_norm_walk_keeps_the_gaussian_density_but_changes_images(sg2_w, eval_setup) -> None:
    rows, directions, config = _evaluate_random_directions(sg2_w, eval_setup)
    assert np.all(_values(rows, "abs_logp_drift", "norm") < 1e-5)  # iso-density of the fitted Gaussian
    assert _values(rows, "abs_logp_drift", "linear").max() > 0.1
    assert _values(rows, "linear_gap", "norm").max() > 1e-2  # no PixelNorm on w
    frame = results_frame(rows, sg2_w, directions, "shapes", "run-w", {}, config)
    assert frame["space"].unique().tolist() == ["w"]


# ------------------------------------------------------------------------------------------- the whitened prior


def test_whitened_prior_is_the_gaussian_fitted_on_the_mapped_samples(sg2) -> None:
    n_fit = 3000
    prior = WhitenedPrior(sg2.net.mapping_network, Z_DIM, W_DIM, n_fit=n_fit)
    assert prior.dim == W_DIM
    w = _reference_mapping(sg2.net, _randn(n_fit, Z_DIM, FIT_SEED).double().numpy())
    mean, cov = w.mean(axis=0), np.cov(w, rowvar=False)
    scale = np.abs(cov).max()
    np.testing.assert_allclose(prior.mean.numpy(), mean, rtol=1e-5, atol=1e-6 * np.abs(mean).max())
    tril = prior.scale_tril.numpy()
    assert tril.dtype == np.float64 and np.array_equal(tril, np.tril(tril)) and np.all(np.diag(tril) > 0)
    ridge = 1e-6 * np.trace(cov) / W_DIM + 1e-12
    np.testing.assert_allclose(tril @ tril.T, cov + ridge * np.eye(W_DIM), rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(tril, np.linalg.cholesky(cov + ridge * np.eye(W_DIM)), rtol=1e-4,
                               atol=1e-5 * math.sqrt(scale))
    assert np.abs(cov - np.eye(W_DIM)).max() > 0.2  # raw w is far from whitened: the fit matters

    # its log-density is the fitted Gaussian's, in whitened coordinates: log N(w; mu, S) + log det L
    from scipy.stats import multivariate_normal

    w_test = _reference_mapping(sg2.net, _randn(5, Z_DIM, 11).double().numpy())
    u = prior.from_native(torch.from_numpy(w_test))
    expected = multivariate_normal(mean, cov + ridge * np.eye(W_DIM)).logpdf(w_test) + np.log(np.diag(tril)).sum()
    np.testing.assert_allclose(prior.log_prob(u).numpy(), expected, rtol=1e-6)

    with pytest.raises(ValueError, match="needs more than 12 samples, got n_fit=12"):
        WhitenedPrior(sg2.net.mapping_network, Z_DIM, W_DIM, n_fit=W_DIM)


def test_whitened_prior_round_trips_and_samples_the_exact_push_forward(sg2, sg2_w) -> None:
    prior = sg2_w.prior
    w = torch.from_numpy(_reference_mapping(sg2.net, _randn(50, Z_DIM, 5).double().numpy()))
    torch.testing.assert_close(prior.to_native(prior.from_native(w)), w, rtol=0, atol=1e-10)
    u = _randn(50, W_DIM, 6)
    torch.testing.assert_close(prior.from_native(prior.to_native(u)), u, rtol=0, atol=1e-5)
    assert prior.from_native(w.float()).dtype == torch.float32

    # u sampled from a seed is L^-1 (M(z) - mu) for the z that seed draws (numpy mapping and solve)
    samples = prior.sample(40, seed=9)
    z = _randn(40, Z_DIM, 9).double().numpy()
    expected = np.linalg.solve(prior.scale_tril.numpy(), (_reference_mapping(sg2.net, z) - prior.mean.numpy()).T).T
    np.testing.assert_allclose(samples.numpy(), expected, rtol=0, atol=1e-4)
    # hence the images of a seed's samples are the same in z and in w
    torch.testing.assert_close(sg2_w(sg2_w.sample_latents(6, seed=3)), sg2(sg2.sample_latents(6, seed=3)),
                               rtol=0, atol=1e-5)

    # deterministic per seed, and a torch.Generator works as a seed
    assert torch.equal(prior.sample(7, seed=1), prior.sample(7, seed=1))
    assert not torch.equal(prior.sample(7, seed=1), prior.sample(7, seed=2))
    assert torch.equal(prior.sample(7, torch.Generator().manual_seed(1)), prior.sample(7, seed=1))


def test_whitened_samples_have_mean_zero_and_identity_covariance(sg2, sg2_w) -> None:
    # the adapter's prior is the one fitted on N_FIT (>= 100k) samples from FIT_SEED
    assert N_FIT >= 100_000 and sg2_w.prior.to_config()["n_fit"] == N_FIT
    direct = WhitenedPrior(sg2.net.mapping_network, Z_DIM, W_DIM, n_fit=N_FIT)
    assert torch.equal(direct.mean, sg2_w.prior.mean) and torch.equal(direct.scale_tril, sg2_w.prior.scale_tril)

    u = sg2_w.prior.sample(40_000, seed=1).double().numpy()  # fresh: not the fit's seed
    # standard errors: mean 1/sqrt(40k) = 0.005, covariance entries ~0.007 (plus the fit's own, smaller)
    assert np.abs(u.mean(axis=0)).max() < 0.03
    assert np.abs(np.cov(u, rowvar=False) - np.eye(W_DIM)).max() < 0.05
    w = sg2_w.to_w(torch.from_numpy(u[:5000]).float()).double().numpy()  # raw w is not: the test has teeth
    assert np.abs(w.mean(axis=0)).max() > 0.1 and np.abs(np.cov(w, rowvar=False) - np.eye(W_DIM)).max() > 0.2


# ------------------------------------------------------------------------------------------------------ SeFa


def _assert_parallel(a: np.ndarray, b: np.ndarray, tol: float = 1e-5) -> None:
    """Rows of a and b pairwise parallel up to sign: |cos| > 1 - tol."""
    cos = np.abs(np.sum(a * b, axis=1)) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert np.all(cos > 1 - tol), cos


def test_sefa_in_z_factorises_the_first_mapping_layer(sg2) -> None:
    ds = fit("sefa", sg2, {"k": Z_DIM}, FitContext(progress=False))
    assert ds.space == "z" and ds.z_dim == Z_DIM
    first = sg2.net.mapping[0].weight.detach().double().numpy() * LR_MLP / math.sqrt(Z_DIM)  # w_dim x z_dim
    values, vectors = _sefa_reference(first)
    np.testing.assert_allclose(ds.scores.numpy(), values, rtol=1e-5)
    _assert_parallel(ds.directions.double().numpy(), vectors.T, tol=1e-6)


@pytest.mark.parametrize(("layers", "indices"), [("all", list(range(7))), ("0-1", [0, 1]), ("0,3,6", [0, 3, 6])],
                         ids=["all", "0-1", "0,3,6"])
def test_sefa_in_w_factorises_the_stacked_style_weights(sg2_w, layers, indices) -> None:
    assert len(sg2_w.net.convs) == 7  # 1 conv at 4 px, 2 at each of 8, 16, 32 px
    ds = fit("sefa", sg2_w, {"k": W_DIM, "space": "w", "layers": layers}, FitContext(progress=False))
    assert ds.space == "w" and ds.z_dim == W_DIM and ds.config["layers"] == layers
    values, vectors = _sefa_reference(_style_rows(sg2_w.net, indices))
    np.testing.assert_allclose(ds.scores.numpy(), values[:W_DIM], rtol=1e-5, atol=1e-6 * values[0])
    gammas = ds.directions.double()
    np.testing.assert_allclose(gammas.norm(dim=1).numpy(), 1.0, atol=1e-6)
    # the stored u-direction gamma_j is the raw-w eigenvector v_j's line: L gamma_j || v_j, and walking it in the
    # adapter's coordinates moves w along v_j
    raw = (gammas @ sg2_w.prior.scale_tril.T).numpy()
    _assert_parallel(raw, vectors.T)
    u0 = sg2_w.sample_latents(1, seed=0)
    moved = (sg2_w.to_w(u0 + 0.5 * ds.directions) - sg2_w.to_w(u0)).double().numpy()
    _assert_parallel(moved, vectors.T, tol=1e-4)


def test_sefa_layer_selection_changes_the_answer_and_bad_specs_fail(sg2, sg2_w) -> None:
    every = fit("sefa", sg2_w, {"k": 3, "space": "w"}, FitContext(progress=False))
    first = fit("sefa", sg2_w, {"k": 3, "space": "w", "layers": "0-1"}, FitContext(progress=False))
    assert not torch.allclose(every.directions.abs(), first.directions.abs(), atol=1e-3)
    with pytest.raises(ValueError, match=r"SeFa layers must be 'all' or indices such as '0-3'.*got 'first'"):
        fit("sefa", sg2_w, {"k": 3, "space": "w", "layers": "first"})
    with pytest.raises(ValueError, match=r"synthesis layer indices \[7, 8\] out of range 0..6"):
        fit("sefa", sg2_w, {"k": 3, "space": "w", "layers": "5-8"})
    with pytest.raises(ValueError, match="in space z the latent projection is the mapping's first layer"):
        fit("sefa", sg2, {"k": 3, "layers": "0-1"})


# ------------------------------------------------------------------------------------------- every method in w

QUICK = {
    "dplase": {"steps": 6, "batch_size": 4, "score_samples": 8, "density_batch": 32, "correction_width": 16},
    "sefa": {},
    "ganspace": {"n_samples": 300, "batch_size": 100, "n_regression": 200},
    "voynov": {"steps": 3, "batch_size": 8, "n_eval": 32, "reconstructor_width": 4},
    "random": {},
    "coordinate": {},
}


def test_quick_settings_cover_every_method_that_runs_on_stylegan2() -> None:
    assert set(QUICK) == {m for m in METHODS if not METHODS[m].get("needs_planted")}


@pytest.mark.parametrize(("method", "walk"), [*((m, None) for m in QUICK), ("dplase", "learned")])
def test_every_method_fits_in_w_and_records_the_space(sg2, method, walk, tmp_path) -> None:
    options = {**QUICK[method], "k": 3, "space": "w", **({"walk": walk} if walk else {})}
    ds = fit(method, sg2, options, FitContext(seed=0, progress=False))  # a z adapter: fit moves it into w
    assert ds.space == "w" and ds.z_dim == W_DIM and ds.k == 3 and ds.config["space"] == "w"
    np.testing.assert_allclose(ds.directions.norm(dim=1).numpy(), 1.0, atol=1e-5)
    if walk == "learned":  # the learned density of whitened w travels with the set
        assert ds.walk == "learned" and {"correction", "density"} <= set(ds.extra)
    loaded = DirectionSet.load(ds.save(tmp_path / "d.pt"))
    assert loaded.space == "w" and torch.equal(loaded.directions, ds.directions)
    _, meta = load_artifact(tmp_path / "d.pt", kind="directions")
    assert meta["space"] == "w"


def test_k_is_checked_against_the_dimension_of_the_chosen_space(sg2, eval_setup) -> None:
    assert fit("random", sg2, {"k": 10, "space": "w"}).z_dim == W_DIM  # 10 > z_dim, <= w_dim
    with pytest.raises(ValueError, match="k must be between 1 and z_dim=12, got 13"):
        fit("random", sg2, {"k": W_DIM + 1, "space": "w"})
    with pytest.raises(ValueError, match="k must be between 1 and z_dim=8, got 10"):
        fit("random", sg2, {"k": 10})
    z_set = fit("coordinate", sg2, {"k": 2})
    assert z_set.space == "z" and DirectionSet(z_set.directions, z_set.scores, "coordinate", {}).space == "z"
    _, dcgan, _, _ = eval_setup
    with pytest.raises(ValueError, match="has no latent space 'w'; its spaces: z"):
        fit("random", dcgan, {"k": 2, "space": "w"})


# ------------------------------------------------------------------------------------------------------ training


def _sg2_config(**overrides) -> GanConfig:
    base = {"family": "stylegan2", "arch": {"w_dim": W_DIM, "n_mlp": 2}, "dataset": "shapes", "image_size": 32,
            "z_dim": Z_DIM, "width": 4, "steps": 6, "batch_size": 4, "r1_every": 2, "checkpoint_every": 3,
            "grid_every": 0, "seed": 0}
    return GanConfig(**{**base, **overrides})


class _Crash(RuntimeError):
    pass


def test_stylegan2_trains_resumes_exactly_and_saves_w_avg(tmp_path, shapes32) -> None:
    config = _sg2_config()
    reference = train_gan(config, tmp_path / "ref.pt", progress=False, dataset=shapes32)

    def crash(step: int) -> None:
        if step == 4:  # after the step-3 checkpoint: steps 3 and 4 are lost, as with kill -9
            raise _Crash

    out = tmp_path / "run.pt"
    with pytest.raises(_Crash):
        train_gan(config, out, progress=False, dataset=shapes32, on_step=crash)
    assert output_paths(out)["ckpt"].exists() and not out.exists()
    train_gan(config, out, progress=False, dataset=shapes32)
    ref_weights, run_weights = (load_artifact(p, kind="generator")[0]["generator"] for p in (reference, out))
    assert ref_weights.keys() == run_weights.keys() and {"w_avg", "noise_0"} <= set(ref_weights)
    for key in ref_weights:
        assert torch.equal(ref_weights[key], run_weights[key]), key
    pd.testing.assert_frame_equal(pd.read_parquet(output_paths(out)["losses"]),
                                  pd.read_parquet(output_paths(reference)["losses"]))

    meta = generator_meta(out)
    assert meta["family"] == "stylegan2" and meta["config_hash"] == config.hash()
    assert meta["arch"] == {"z_dim": Z_DIM, "w_dim": W_DIM, "image_size": 32, "channels": 1, "n_mlp": 2,
                            "lr_mlp": 0.01, "channel_base": 4 * 32, "max_channels": 4, "noise_seed": 0}
    gen = load_generator(out)
    assert isinstance(gen, StyleGAN2Adapter) and gen.family == "stylegan2" and gen.space == "z"
    assert (gen.z_dim, gen.net.w_dim, gen.image_size, gen.channels) == (Z_DIM, W_DIM, 32, 1)
    w_avg = gen.net.w_avg.clone()
    assert w_avg.abs().max() > 1e-3  # set, not the zero buffer of a fresh network
    # w_avg is the mean of w over fit_w_avg's seeded latents (numpy mapping), and what fit_w_avg gives again
    expected = _reference_mapping(gen.net, _randn(10_000, Z_DIM, config.seed).double().numpy()).mean(axis=0)
    np.testing.assert_allclose(w_avg.numpy(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(fit_w_avg(copy.deepcopy(gen.net), seed=config.seed), w_avg, rtol=0, atol=0)

    init, _ = build_networks(generator_arch(config, 1), config.seed, family="stylegan2")
    assert not torch.equal(init.state_dict()["mapping.0.weight"], ref_weights["mapping.0.weight"])
    assert torch.equal(init.state_dict()["noise_3"], ref_weights["noise_3"])  # fixed noise, from the seed
    images = gen.in_space("w").generate(gen.in_space("w").sample_latents(4, seed=0))
    assert images.shape == (4, 1, 32, 32) and torch.isfinite(images).all()


def test_gan_config_family_and_arch_are_checked(tmp_path, shapes32) -> None:
    with pytest.raises(ValueError, match=r"unknown stylegan2 arch option\(s\) \['depth'\]; known: w_dim"):
        train_gan(_sg2_config(arch={"depth": 3}), tmp_path / "a.pt", progress=False, dataset=shapes32)
    with pytest.raises(ValueError, match=r"the dcgan family takes no arch options, got \['n_mlp', 'w_dim'\]"):
        train_gan(_sg2_config(family="dcgan"), tmp_path / "b.pt", progress=False, dataset=shapes32)
    with pytest.raises(ValueError, match=r"family 'biggan' is not trained by dplase\.training\.gan"):
        train_gan(_sg2_config(family="biggan"), tmp_path / "c.pt", progress=False, dataset=shapes32)
    assert not any(tmp_path.iterdir())  # nothing was written
    # arch keys override the defaults (w_dim = z_dim, n_mlp 4, width channels everywhere)
    assert generator_arch(_sg2_config(arch={}), 1)["w_dim"] == Z_DIM
    assert generator_arch(_sg2_config(arch={}), 1)["n_mlp"] == 4
    assert generator_arch(_sg2_config(arch={"max_channels": 16}), 3)["max_channels"] == 16


def test_dcgan_config_hash_is_unchanged_by_the_family_fields() -> None:
    default = GanConfig()
    result = default.result_dict()
    assert "family" not in result and "arch" not in result
    before = {k: v for k, v in default.to_dict().items()
              if k not in ("family", "arch", "checkpoint_every", "grid_every")}
    assert result == before and default.hash() == config_hash(before)
    assert GanConfig(family="dcgan", arch={}).hash() == default.hash()
    sg = GanConfig(family="stylegan2")
    assert sg.result_dict()["family"] == "stylegan2" and sg.result_dict()["arch"] == {}
    assert len({default.hash(), sg.hash(), GanConfig(family="stylegan2", arch={"w_dim": 8}).hash()}) == 3


# -------------------------------------------------------------------------------------------------------- config


def _study(model: dict, sweep: dict) -> dict:
    """config/config.yaml + config/test.yaml with one StyleGAN2 model and one sweep (defaults not yet filled)."""
    config = read_configs(ROOT / "config/config.yaml", ROOT / "config/test.yaml")
    config["models"]["sg2"] = model
    config["sweeps"] = [{"name": "spaces", "datasets": ["shapes"], "seeds": [0], **sweep}]
    return config


SG2_MODEL = {"family": "stylegan2", "train": {"steps": 5, "z_dim": 16, "width": 4, "arch": {"w_dim": 8}}}


def test_space_is_a_sweep_axis_with_its_own_runs_and_column() -> None:
    config = _study(copy.deepcopy(SG2_MODEL), {"models": ["sg2"], "methods": ["sefa", "random"],
                                               "params": {"k": 3}, "grid": {"space": ["z", "w"]}})
    sweep = prepare(config)
    runs = sweep.runs
    assert sorted((r.method, r.space) for r in runs) == [("random", "w"), ("random", "z"), ("sefa", "w"),
                                                         ("sefa", "z")]
    assert len({r.run_id for r in runs}) == 4
    assert all(r.labels()["space"] == r.space for r in runs)
    table = runs_table([r.to_row() for r in runs])
    assert "space" in table.columns
    assert sorted(table["space"]) == ["w", "w", "z", "z"]
    assert list(table["run_id"]) == [r.run_id for r in runs]
    # K <= w_dim 8 is fine in w
    sweep = prepare(_study(copy.deepcopy(SG2_MODEL), {"models": ["sg2"], "methods": ["random"],
                                                      "grid": {"k": [8], "space": ["w"]}}))
    assert [r.space for r in sweep.runs] == ["w"]
    # the workflow trains the model as a StyleGAN2 with its arch
    job = sweep.job_kwargs("train_gan", ("sg2", "shapes", 0))
    gan = GanConfig(**{**job["options"], "family": job["family"]})
    assert (gan.family, gan.arch, gan.z_dim, gan.image_size) == ("stylegan2", {"w_dim": 8}, 16, 32)


@pytest.mark.parametrize(("sweep", "key", "message"), [
    ({"models": ["dcgan"], "methods": ["sefa"], "params": {"k": 3}, "grid": {"space": ["z", "w"]}},
     "sweeps[0].grid.space", r"model 'dcgan' \(family dcgan\) has no latent space 'w'; its spaces: z"),
    ({"models": ["dcgan"], "methods": ["random"], "params": {"k": 3, "space": "w"}},
     "sweeps[0].params.space", "has no latent space 'w'"),
    ({"models": ["sg2"], "methods": ["random"], "params": {"k": 10}, "grid": {"space": ["z", "w"]}},
     "sweeps[0].params.k", "K=10 exceeds w_dim=8 of model 'sg2'"),
    ({"models": ["sg2"], "methods": ["random"], "params": {"k": 3, "space": "w+"}},
     "sweeps[0].params.space", r"model 'sg2' \(family stylegan2\) has no latent space 'w\+'; its spaces: z, w"),
], ids=["dcgan-grid-w", "dcgan-params-w", "k-above-w_dim", "sg2-w+"])
def test_bad_space_settings_are_config_errors_naming_the_key(sweep, key, message) -> None:
    config = _study(copy.deepcopy(SG2_MODEL), sweep)
    with pytest.raises(ConfigError, match=message) as info:
        prepare(config)
    assert info.value.key == key


def test_k_above_w_dim_is_fine_in_z() -> None:
    config = _study(copy.deepcopy(SG2_MODEL), {"models": ["sg2"], "methods": ["random"], "params": {"k": 10}})
    assert [r.space for r in prepare(config).runs] == ["z"]


def test_a_stylegan2_checkpoint_model_takes_its_family_and_dimensions_from_the_file(sg2, tmp_path) -> None:
    path = save_generator(tmp_path / "sg2.pt", sg2.net, "stylegan2", ARCH, sg2.z_prior.to_config(),
                          {"dataset": "shapes"})
    model = {"checkpoint": str(path)}  # no family key: it is read from the file
    sweep = prepare(_study(model, {"models": ["sg2"], "methods": ["random"], "params": {"k": 10},
                                   "grid": {"space": ["w"]}}))
    assert [r.space for r in sweep.runs] == ["w"]  # 10 <= w_dim 12 of the file
    with pytest.raises(ConfigError, match="K=10 exceeds z_dim=8 of model 'sg2'") as info:
        prepare(_study({"checkpoint": str(path)}, {"models": ["sg2"], "methods": ["random"], "params": {"k": 10}}))
    assert info.value.key == "sweeps[0].params.k"
