"""The ``planted`` dataset: images of a planted generator (`dplase.generators.planted`) at a fixed pool of prior
latents, with their exact factors.

Item i is G(z_i) for the i-th latent of a pool of ``size`` latents drawn from the generator's prior with a seed
derived from ``generator_seed`` (not from ``seed``, which only sets the default seed of `sample`, as in every
dataset), so the same config always gives the same items. Its factors table holds the five planted factors in
the generator's own physical units (`PlantedGenerator.factor_values`: positions in normalised image
coordinates, scale, orientation in radians, shape blend 0..2) plus a ``fidelity`` column (the image contrast).
``fidelity`` is a column but not a factor spec: no direction is meant to control it, so predictors and the
disentanglement scores, which read only the specs' columns, leave it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from dplase.data.base import FactorSpec, ImageDataset, check_image_size
from dplase.generators.planted import FACTORS, PlantedAdapter, build_planted, factor_ranges
from dplase.priors import PRIOR_NAMES

PLANTED_IMAGE_SIZES = (32, 64)
#: grid size of every planted factor spec: only used to discretise (MIG / DCI, via FactorSpec.codes)
N_GRID_VALUES = 20
#: offset of the latent pool's seed from generator_seed (apart from the generator's own seeded draws)
POOL_SEED_OFFSET = 1_000_003
#: the table column that is not a factor spec
FIDELITY = "fidelity"
#: images rendered per batch
RENDER_BATCH = 256


def planted_factor_specs(image_size: int, factors: Sequence[str] = FACTORS) -> list[FactorSpec]:
    """FactorSpecs of planted factors in the generator's physical units, each on a 20-value grid.

    Orientation spans (-π/4, π/4), less than one period of every shape but the square, so it is a plain
    continuous factor (no ``period``): the predictor then regresses it in the same radians the table holds.
    """
    ranges = factor_ranges(image_size)
    return [FactorSpec(name, "continuous", float(ranges[name][0]), float(ranges[name][1]), N_GRID_VALUES)
            for name in factors]


class PlantedDataset(ImageDataset):
    """A planted generator's images at a fixed, seeded pool of prior latents, with the exact factors."""

    def __init__(self, image_size: int = 64, seed: int = 0, name: str = "planted", z_dim: int = 16,
                 level: str = "aligned", gains: Sequence[float] | None = None, prior: str = "gaussian",
                 channels: int = 1, generator_seed: int = 0, size: int = 50_000) -> None:
        self.name = name
        self.image_size = check_image_size(name, image_size, PLANTED_IMAGE_SIZES)
        self.seed = int(seed)
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ValueError(f"dataset {name!r}: channels must be 1 or 3, got {channels!r}")
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"dataset {name!r}: size must be an int >= 1, got {size!r}")
        if prior not in PRIOR_NAMES:
            raise ValueError(f"dataset {name!r}: unknown prior {prior!r}; choose one of {', '.join(PRIOR_NAMES)}")
        if isinstance(generator_seed, bool) or not isinstance(generator_seed, int | np.integer):
            raise ValueError(f"dataset {name!r}: generator_seed must be an int, got {generator_seed!r}")
        self.channels, self.z_dim, self.level, self.prior_name = int(channels), int(z_dim), level, prior
        self.gains = [float(g) for g in gains] if gains is not None else None
        self.generator_seed, self.size = int(generator_seed), int(size)
        # building is cheap (no training; 8192 prior samples for the typical log-density) and validates the
        # planted config with check_planted_config's messages
        self.generator: PlantedAdapter = build_planted(self.z_dim, self.image_size, self.channels,
                                                       self.generator_seed, level, gains=self.gains, prior=prior)
        self.factor_specs = planted_factor_specs(self.image_size, self.generator.factor_names)
        self.latents = self.generator.prior.sample(self.size, self.generator_seed + POOL_SEED_OFFSET)

    def _length(self) -> int:
        return self.size

    def _get(self, indices: torch.Tensor) -> tuple[torch.Tensor, pd.DataFrame]:
        z = self.latents.index_select(0, indices)
        images = self.generator.generate(z, RENDER_BATCH)  # no grad, CPU, in [-1, 1]
        return images, self.factors_of(z)

    def factors_of(self, z: torch.Tensor) -> pd.DataFrame:
        """The factors table (planted factors, then fidelity) of latents ``z``."""
        exact = self.generator.exact_factors(z)
        columns = [*self.factor_names, FIDELITY]
        return pd.DataFrame({c: exact[c].double().numpy() for c in columns})

    def to_config(self) -> dict[str, Any]:
        """Every option, so that `dataset_from_config` rebuilds the same items."""
        return {**super().to_config(), "z_dim": self.z_dim, "level": self.level, "gains": self.gains,
                "prior": self.prior_name, "channels": self.channels, "generator_seed": self.generator_seed,
                "size": self.size}
