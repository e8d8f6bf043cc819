"""DP-LaSE's cross-term forms (``cross``: normalized / raw): reference loops, scaling, config, a short fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dplase.generators.dcgan import DCGANAdapter
from dplase.methods import FitContext, fit, make_config
from dplase.methods.dplase import DPLaSEConfig
from dplase.methods.dplase_losses import CROSS_FORMS, as_matrix, full_terms

QUICK = {"k": 3, "steps": 4, "batch_size": 4, "score_samples": 8}


def _changes(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Seeded feature changes per sample and direction, N x K x (C x H x W or D)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _reference(changes: np.ndarray, cross: str) -> float:
    """Explicit loops over samples n and ordered pairs j != h, D as (positions x channels) per sample."""
    n, k = changes.shape[:2]
    values = []
    for i in range(n):
        for j in range(k):
            for h in range(k):
                if j == h:
                    continue
                # conv M x C x H x W -> (H W) x C; flat D -> D x 1
                a, b = (x.reshape(x.shape[0], -1).T if x.ndim > 1 else x[:, None]
                        for x in (changes[i, j], changes[i, h]))
                value = np.linalg.norm(a.T @ b) ** 2
                if cross == "normalized":
                    value /= np.linalg.norm(a) ** 2 * np.linalg.norm(b) ** 2
                values.append(value)
    return float(np.mean(values))


def _terms(changes: torch.Tensor, cross: str) -> dict[str, torch.Tensor]:
    """full_terms on the changes in the trainer's layout (N x K x channels x positions, via `as_matrix`)."""
    m = as_matrix(changes.flatten(0, 1))
    return full_terms(m.reshape(*changes.shape[:2], *m.shape[1:]), cross)


# conv (N x K x C x H x W: both the position and the channel route of full_terms) and flat (N x K x D)
SHAPES = [(2, 3, 4, 2, 3), (2, 3, 2, 3, 3), (3, 4, 6)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cross", CROSS_FORMS)
def test_cross_forms_match_loops(shape, cross):
    changes = _changes(shape)
    terms = _terms(changes, cross)
    assert float(terms["cross"]) == pytest.approx(_reference(changes.numpy(), cross), rel=1e-10)
    assert float(terms["variation"]) == pytest.approx(float((changes.numpy() ** 2).mean()), rel=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_raw_scales_quartically_normalized_is_invariant(shape):
    changes, s = _changes(shape, seed=1), 3.0
    for cross, power in (("raw", 4), ("normalized", 0)):
        base, scaled = (float(_terms(x, cross)["cross"]) for x in (changes, s * changes))
        assert scaled == pytest.approx(s**power * base, rel=1e-10), cross
    # the variation is quadratic either way: raw / variation grows with s^2
    assert float(_terms(s * changes, "raw")["variation"]) == pytest.approx(
        s**2 * float(_terms(changes, "raw")["variation"]), rel=1e-12)


def test_normalized_is_the_default_and_bounded():
    changes = _changes((2, 3, 4, 2, 3), seed=2)
    assert float(_terms(changes, "normalized")["cross"]) == float(full_terms(changes.reshape(2, 3, 4, 6))["cross"])
    assert 0 <= float(_terms(changes, "normalized")["cross"]) <= 1
    assert DPLaSEConfig().cross == "normalized"
    assert float(full_terms(torch.zeros(1, 2, 1, 2), "raw")["cross"]) == 0.0
    assert float(full_terms(torch.ones(1, 1, 2, 2), "raw")["cross"]) == 0.0  # K = 1: no pairs


def test_cross_switch_validation():
    assert DPLaSEConfig(cross="raw").cross == "raw"
    with pytest.raises(ValueError, match="cross must be one of normalized, raw"):
        DPLaSEConfig(cross="cosine")
    with pytest.raises(ValueError, match="needs estimator='full'"):
        DPLaSEConfig(cross="raw", estimator="stochastic")
    assert DPLaSEConfig(cross="normalized", estimator="stochastic").estimator == "stochastic"
    with pytest.raises(ValueError, match="cross must be one of"):
        full_terms(torch.zeros(1, 2, 1, 2), "cosine")


def test_short_fit_with_raw_cross_records_the_option():
    gen = DCGANAdapter.build({"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}, seed=0)
    config = make_config("dplase", **QUICK, cross="raw")
    context = FitContext(seed=0, progress=False)
    ds = fit("dplase", gen, config, context)
    assert ds.config["cross"] == "raw" and ds.config["estimator"] == "full"
    assert ds.directions.shape == (3, 8) and torch.isfinite(ds.directions).all()
    cross = [value for _, term, value in context.history if term == "cross"]
    assert len(cross) == QUICK["steps"] and np.isfinite(cross).all()
