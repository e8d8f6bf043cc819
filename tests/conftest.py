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


@pytest.fixture
def single_thread():
    """Run a test with one torch thread: tiny ops gain nothing from more, and on a busy shared machine
    two spinning OpenMP threads make them ~20x slower. The previous setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
