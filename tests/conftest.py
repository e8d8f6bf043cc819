"""Shared test fixtures (keep small: fixtures used by more than one test file)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shapes32():
    """The real 32 px shapes dataset (rendered on demand, so building it is free)."""
    from dplase.data import load_dataset

    return load_dataset("shapes", image_size=32, seed=0)


@pytest.fixture
def tiny_gan_config():
    """Factory of a GAN config small enough for a few CPU steps in well under a second each."""
    from dplase.training.gan import GanConfig

    def make(**overrides):
        base = {"dataset": "shapes", "image_size": 32, "z_dim": 8, "width": 4, "steps": 6, "batch_size": 8,
                "r1_every": 2, "checkpoint_every": 3, "grid_every": 0, "seed": 0}
        return GanConfig(**{**base, **overrides})

    return make


@pytest.fixture(scope="module")
def cluster() -> None:
    """A live SLURM cluster with accounting (tests/test_slurm_*.py); skips, saying why, when none answers."""
    from slurm_helpers import cluster_problem

    problem = cluster_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_suite():
    """Run the in-process tests with one torch and one BLAS thread: their models are tiny, so more threads gain
    nothing, and on a busy 2-core machine spinning OpenMP threads made them 7-20x slower. Subprocess tests
    (Snakemake, SLURM) set their own thread counts."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def tiny_evaluation_setup(direction_config: dict | None = None):
    """A seeded 32 px shapes dataset, an untrained generator (z 8), an untrained factor predictor and 3 random
    orthonormal directions: the smallest complete input of `dplase.metrics.evaluate.evaluate`."""
    import torch

    from dplase.data import load_dataset
    from dplase.directions import DirectionSet
    from dplase.generators.dcgan import DCGANAdapter
    from dplase.metrics.predictor import FactorPredictor

    data = load_dataset("shapes", image_size=32, seed=0)
    gen = DCGANAdapter.build({"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}, seed=0)
    torch.manual_seed(0)
    predictor = FactorPredictor(1, 32, data.factor_specs, width=8, feature_dim=16)
    predictor.meta = {"dataset": data.to_config()}
    gammas = torch.linalg.qr(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)))[0].T
    directions = DirectionSet(gammas, torch.ones(3), method="random", config=direction_config or {"k": 3}, seed=7)
    return data, gen, predictor, directions
