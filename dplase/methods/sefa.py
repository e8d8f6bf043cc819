"""SeFa (Shen & Zhou, CVPR 2021): closed-form directions from the weight that first projects z.

The generator's first operation maps z linearly, y = A z (A: out_features x z_dim). SeFa looks for unit
directions n maximising ||A n||^2, i.e. the leading eigenvectors of A^T A. Like genforce/sefa's
``factorize_weight`` (which stores the weight transposed, z_dim x out, and normalises its columns), each
output unit's weight vector -- a row of our A -- is first scaled to unit norm, so no single unit dominates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.methods import FitContext, MethodConfig, MethodSpec, make_direction_set


@dataclass
class SefaConfig(MethodConfig):
    """SeFa has no hyperparameters beyond K: the layer is unused (the projection weight is fixed)."""

    normalize: bool = True  # scale each output unit's weight vector to unit norm (as factorize_weight does)


def factorize_weight(weight: torch.Tensor, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of AᵀA for a projection weight A (out x d), in float64.

    Returns (eigenvalues descending (d,), eigenvectors as rows (d x d)). The symmetric solver gives real,
    orthonormal vectors (the published code used a general `eig` and never sorted). Each vector's sign is
    fixed so that its largest-magnitude entry is positive, which makes the output reproducible.
    """
    a = weight.detach().to("cpu", torch.float64)
    if a.ndim != 2:
        raise ValueError(f"projection weight must be a matrix (out x z_dim), got shape {tuple(a.shape)}")
    if normalize:
        norms = a.norm(dim=1, keepdim=True)
        if torch.any(norms == 0):
            raise ValueError("projection weight has an all-zero output row; cannot normalise it")
        a = a / norms
    values, vectors = torch.linalg.eigh(a.T @ a)  # ascending, vectors in columns
    values, vectors = values.flip(0), vectors.flip(1).T
    idx = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors[torch.arange(vectors.shape[0]), idx])
    return values, vectors * signs[:, None]


def fit(name: str, generator: GeneratorAdapter, config: SefaConfig, context: FitContext) -> DirectionSet:
    """Top-K SeFa directions with their eigenvalues as scores."""
    values, vectors = factorize_weight(generator.latent_projection_weight(), config.normalize)
    return make_direction_set(name, generator, config, context, vectors[: config.k].float(), values[: config.k].float())


SPEC = MethodSpec(names=("sefa",), config_cls=SefaConfig, fit=fit)
