"""GANSpace (Härkönen et al., NeurIPS 2020): PCA of sampled activations, mapped back to latent directions.

``decompose="activations"``: PCA of the flattened G1 activations at a layer over N sampled latents, fitted with
sklearn's IncrementalPCA one batch at a time (only one batch of activations is ever in memory, so N = 10^5
fits on a CPU). Each principal component becomes a latent direction by least squares, as GANSpace does:
regress the (centred) latents on the PCA coordinates, z - mean ≈ c U, and take the rows of U. For a linear
G1(z) = W z with z ~ N(0, I) this returns exactly the top right singular vectors of W.

``decompose="latent"``: PCA of the latents themselves (meant for generators whose latent passes a learned
mapping; for our isotropic prior it only finds sampling noise -- a sanity baseline).

Scores are the explained-variance ratios.

Sample size (`ganspace_samples`, for ``n_samples: null``): N = 1000 z_dim PCA samples (16 000 at d = 16;
512 000 at d = 512, half of the published 10^6), at least 1000 K (K <= z_dim, so the rule already gives it):
the activations are a function of the d-dimensional latent, so the sample the PCA needs grows with d, not
with the (much larger) activation size. The regression uses ``n_regression`` of them (at most N). An explicit
``n_samples`` overrides the rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import IncrementalPCA

from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.methods import FitContext, MethodConfig, MethodSpec, make_direction_set
from dplase.training.loop import step_generator

DECOMPOSE = ("activations", "latent")


#: the sample-size rule: PCA samples per latent dimension
SAMPLES_PER_DIM = 1000


def ganspace_samples(z_dim: int, k: int = 1) -> int:
    """GANSpace's default PCA sample size: ``1000 * max(z_dim, k)`` (16 000 at d = 16)."""
    if z_dim < 1:
        raise ValueError(f"need z_dim >= 1, got {z_dim}")
    return SAMPLES_PER_DIM * max(int(z_dim), int(k))


@dataclass
class GanspaceConfig(MethodConfig):
    """Options: which space to decompose, how many samples (None: `ganspace_samples`), batch size, samples
    used for the regression."""

    #: what the PCA decomposes: "activations" (G1 at the layer) or "latent" (the latents themselves); named
    #: apart from MethodConfig.space, the latent space the method runs in
    decompose: str = "activations"
    n_samples: int | None = None  # None: 1000 * z_dim (`ganspace_samples`)
    batch_size: int = 500  # smaller batches are cheaper per sample: each partial fit is an SVD of (batch + k) rows
    n_regression: int = 10_000  # latents regressed on PCA coordinates (the first ones of the same stream)


def _batch_sizes(n: int, batch_size: int, k: int) -> list[int]:
    """Split n into batches of ``batch_size``; a last batch smaller than k joins the one before it
    (IncrementalPCA needs at least k rows per partial fit)."""
    sizes = [batch_size] * (n // batch_size)
    rest = n % batch_size
    if rest:
        if rest < k and sizes:
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return sizes


def _latent_batches(generator: GeneratorAdapter, n: int, batch_size: int, k: int,
                    seed: int) -> Iterator[torch.Tensor]:
    """Latents in batches; batch i is drawn from step_generator(seed, i), so two passes see the same ones."""
    for i, size in enumerate(_batch_sizes(n, batch_size, k)):
        yield generator.prior.sample(size, step_generator(seed, i), device=generator.device)


@torch.no_grad()
def _flat_features(generator: GeneratorAdapter, z: torch.Tensor, layer: str | None) -> np.ndarray:
    x = z if layer is None else generator.features(z, layer)
    return x.reshape(x.shape[0], -1).to("cpu", torch.float32).numpy()


def fit_pca(generator: GeneratorAdapter, layer: str | None, k: int, n_samples: int, batch_size: int,
            seed: int) -> IncrementalPCA:
    """Incremental PCA (k components) of flattened G1 activations at ``layer`` (the latents if None)."""
    if n_samples < k or batch_size < k:
        raise ValueError(f"n_samples ({n_samples}) and batch_size ({batch_size}) must be at least k={k}")
    pca = IncrementalPCA(n_components=k)
    for z in _latent_batches(generator, n_samples, batch_size, k, seed):
        pca.partial_fit(_flat_features(generator, z, layer))
    return pca


def regress_latent_directions(generator: GeneratorAdapter, layer: str, pca: IncrementalPCA,
                              n_samples: int, batch_size: int, seed: int) -> torch.Tensor:
    """Least-squares latent basis U (k x d) with z - mean ≈ c U, c the PCA coordinates of G1(z).

    The normal equations are accumulated batch by batch in float64 (an intercept column absorbs the
    latent mean), so memory does not grow with ``n_samples``.
    """
    k = pca.n_components_
    gram = np.zeros((k + 1, k + 1))
    cross = np.zeros((k + 1, generator.z_dim))
    for z in _latent_batches(generator, n_samples, batch_size, k, seed):
        coords = pca.transform(_flat_features(generator, z, layer)).astype(np.float64)
        design = np.hstack([coords, np.ones((coords.shape[0], 1))])
        gram += design.T @ design
        cross += design.T @ z.to("cpu", torch.float64).numpy()
    solution = np.linalg.lstsq(gram, cross, rcond=None)[0]
    return torch.from_numpy(solution[:k])


def fit(name: str, generator: GeneratorAdapter, config: GanspaceConfig, context: FitContext) -> DirectionSet:
    """GANSpace directions (unit rows) with explained-variance ratios as scores."""
    if config.decompose not in DECOMPOSE:
        raise ValueError(f"unknown decompose '{config.decompose}'; choose one of {', '.join(DECOMPOSE)}")
    if config.n_samples is None:
        config = dataclasses.replace(config, n_samples=ganspace_samples(generator.z_dim, config.k))
    layer = config.layer or generator.default_layer()
    pca_layer = layer if config.decompose == "activations" else None
    pca = fit_pca(generator, pca_layer, config.k, config.n_samples, config.batch_size, context.seed)
    if config.decompose == "activations":
        n_reg = max(config.k + 1, min(config.n_regression, config.n_samples))
        directions = regress_latent_directions(generator, layer, pca, n_reg, config.batch_size, context.seed)
    else:
        directions = torch.from_numpy(np.asarray(pca.components_, dtype=np.float64))
    directions = directions / directions.norm(dim=1, keepdim=True)
    ratios = torch.from_numpy(np.asarray(pca.explained_variance_ratio_, dtype=np.float64)).float()
    return make_direction_set(name, generator, config, context, directions.float(), ratios, layer=layer)


SPEC = MethodSpec(names=("ganspace",), config_cls=GanspaceConfig, fit=fit)
