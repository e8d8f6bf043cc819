"""Lower-bound baselines: seeded random orthonormal directions and the latent coordinate axes.

Neither looks at the generator, so their scores carry no ranking: every direction scores 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.methods import FitContext, MethodConfig, MethodSpec, make_direction_set
from dplase.priors import seeded_generator


@dataclass
class SimpleConfig(MethodConfig):
    """Only K (and the walk the directions are meant for) matter."""


def random_orthonormal(k: int, dim: int, seed: int) -> torch.Tensor:
    """K x dim orthonormal rows, uniformly (Haar) distributed, a pure function of ``seed``.

    QR of a Gaussian matrix; multiplying each column of Q by the sign of R's diagonal makes the
    factorisation unique, which is what makes the result Haar-distributed and solver-independent.
    """
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and dim={dim}, got {k}")
    gauss = torch.randn(dim, k, generator=seeded_generator(seed), dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return (q * signs).T.float()


def coordinate_axes(k: int, dim: int) -> torch.Tensor:
    """The first K standard basis vectors e_0 .. e_{K-1} of R^dim."""
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and dim={dim}, got {k}")
    return torch.eye(dim)[:k]


def fit(name: str, generator: GeneratorAdapter, config: SimpleConfig, context: FitContext) -> DirectionSet:
    """Random (seeded) or coordinate directions, all scored 1."""
    if name == "random":
        directions = random_orthonormal(config.k, generator.z_dim, context.seed)
    elif name == "coordinate":
        directions = coordinate_axes(config.k, generator.z_dim)
    else:
        raise ValueError(f"simple baselines are 'random' and 'coordinate', got '{name}'")
    return make_direction_set(name, generator, config, context, directions, torch.ones(config.k))


SPEC = MethodSpec(names=("random", "coordinate"), config_cls=SimpleConfig, fit=fit)
