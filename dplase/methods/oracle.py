"""The oracle: the planted directions of a generator that knows them (`dplase.generators.planted`).

Not a discovery method but the upper bound of every table: what a method that found the truth would score.
Its scores are the planted factors' gains (the order a variance-based method should find).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.methods import FitContext, MethodConfig, MethodSpec, make_direction_set


@dataclass
class OracleConfig(MethodConfig):
    """K = the number of planted factors of the default planted generator."""

    k: int = 5


def planted_directions_of(generator: GeneratorAdapter) -> torch.Tensor:
    """The generator's planted directions (F x z_dim), or a clear error for one that has none."""
    if not hasattr(generator, "planted_directions"):
        raise ValueError(f"method 'oracle' needs a generator with planted directions (family 'planted'); "
                         f"'{generator.name}' ({type(generator).__name__}) has none")
    return generator.planted_directions()


def fit(name: str, generator: GeneratorAdapter, config: OracleConfig, context: FitContext) -> DirectionSet:
    """The first K planted directions, scored by their factors' gains."""
    planted = planted_directions_of(generator)
    if config.k > planted.shape[0]:
        raise ValueError(f"k={config.k} exceeds the {planted.shape[0]} planted directions of '{generator.name}'")
    gains = generator.net.gain.detach().cpu()[: config.k]
    return make_direction_set(name, generator, config, context, planted[: config.k], gains)


SPEC = MethodSpec(names=("oracle",), config_cls=OracleConfig, fit=fit)
