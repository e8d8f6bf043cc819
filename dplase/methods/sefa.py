"""SeFa (Shen & Zhou, CVPR 2021): closed-form directions from the weight that first projects z.

The generator's first operation maps z linearly, y = A z (A: out_features x z_dim). SeFa looks for unit
directions n maximising ||A n||^2, i.e. the leading eigenvectors of A^T A. Like genforce/sefa's
``factorize_weight`` (which stores the weight transposed, z_dim x out, and normalises its columns), each
output unit's weight vector -- a row of our A -- is first scaled to unit norm, so no single unit dominates.

In a style-based generator's w space, A is the stack of the style-modulation weights of the chosen synthesis
layers (``layers``; what genforce's SeFa factorises), in raw w. Where the adapter's coordinates are an affine
image of raw w (whitened w: w = mu + B u, `GeneratorAdapter.latent_basis`), each eigenvector n is stored as the
same line in the adapter's coordinates, B^-1 n normalised, so walking it moves w along n.
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
    #: which latent-projecting layers to stack: "all", or synthesis layer indices such as "0-3" or "0,2,4"
    #: (style-based generators in w; genforce's layer_idx)
    layers: str = "all"


def parse_layers(spec: str) -> list[int] | None:
    """"all" -> None; "0-3" -> [0, 1, 2, 3]; "0,2,5" -> [0, 2, 5] (a clear error otherwise)."""
    spec = str(spec).strip()
    if spec == "all":
        return None
    out: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"SeFa layers must be 'all' or indices such as '0-3' or '0,2,4', got '{spec}'") from None
    if not out:
        raise ValueError(f"SeFa layers '{spec}' name no layer")
    return out


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
    values, vectors = factorize_weight(generator.latent_projection_weight(parse_layers(config.layers)),
                                       config.normalize)
    basis = generator.latent_basis
    if basis is not None:  # the same lines in the adapter's coordinates: u-direction B^-1 n
        vectors = torch.linalg.solve(basis.to(torch.float64), vectors.T).T
        vectors = vectors / vectors.norm(dim=1, keepdim=True)
    return make_direction_set(name, generator, config, context, vectors[: config.k].float(), values[: config.k].float())


SPEC = MethodSpec(names=("sefa",), config_cls=SefaConfig, fit=fit)
