"""Direction recovery against planted directions (generators that know their true directions, such as
`dplase.generators.planted`).

- ``recovery``: the K discovered directions and the F planted ones are matched one to one (Hungarian
  assignment, `scipy.optimize.linear_sum_assignment`) on |cos|; the value is the mean matched |cos| over the
  min(K, F) pairs, and ``recovery.<factor>`` the matched |cos| of each planted factor (0 for a factor left
  unmatched when K < F). 1 means every factor's direction was found exactly (up to sign).
- ``latent_dim``: the generator's z_dim (what the random references below depend on).
- ``null_leakage`` per direction: the norm of its projection onto the null subspace (the orthogonal
  complement of the planted span), sqrt(1 - sum_f cos^2); 0 means the direction lies in the planted span.

Reference values for directions drawn uniformly on the sphere in d dimensions (what random directions
score): E[cos^2] = 1/d per pair, so E[null_leakage^2] = (d - F) / d, and E|cos| = Gamma(d/2) /
(sqrt(pi) Gamma((d+1)/2)) per pair (0.203 at d = 16) before matching; matching picks the largest, so the
matched mean of random directions is above that.

For a generator without planted directions the metric has nothing to compare with and writes no rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dplase.metrics.context import EvalContext, Row


def expected_abs_cosine(dim: int) -> float:
    """E|cos| between a uniformly random unit vector and a fixed one in R^dim."""
    return math.exp(math.lgamma(dim / 2) - math.lgamma((dim + 1) / 2)) / math.sqrt(math.pi)


def recovery_scores(directions: torch.Tensor, planted: torch.Tensor) -> dict[str, np.ndarray | float]:
    """Matching of unit ``directions`` (K x d) to orthonormal ``planted`` (F x d).

    Returns ``{"mean": mean matched |cos|, "per_factor": (F,) matched |cos| (0 unmatched),
    "matched_direction": (F,) index of the matched direction (-1 unmatched), "null_leakage": (K,)}``.
    """
    from scipy.optimize import linear_sum_assignment

    d = directions.double() / directions.double().norm(dim=1, keepdim=True)
    cos = (d @ planted.double().T).abs().numpy()  # K x F
    rows, cols = linear_sum_assignment(cos, maximize=True)
    per_factor = np.zeros(planted.shape[0])
    matched = np.full(planted.shape[0], -1)
    per_factor[cols], matched[cols] = cos[rows, cols], rows
    leakage = np.sqrt(np.clip(1.0 - (cos**2).sum(axis=1), 0.0, None))
    return {"mean": float(cos[rows, cols].mean()), "per_factor": per_factor, "matched_direction": matched,
            "null_leakage": leakage}


def recovery_metric(ctx: EvalContext) -> list[Row]:
    """The registered metric "recovery": one row for the mean, one per planted factor, one leakage row per
    direction (no rows for a generator without planted directions)."""
    generator = ctx.generator
    if not hasattr(generator, "planted_directions"):
        return []
    scores = recovery_scores(ctx.directions.directions, generator.planted_directions())
    k = ctx.directions.k
    rows: list[Row] = [{"metric": "recovery", "value": scores["mean"], "n_samples": k}]
    rows += [{"metric": f"recovery.{name}", "value": float(scores["per_factor"][f]), "n_samples": k}
             for f, name in enumerate(generator.factor_names)]
    rows += [{"direction": j, "metric": "null_leakage", "value": float(scores["null_leakage"][j]), "n_samples": 1}
             for j in range(k)]
    # the latent size, so that tables and figures can state what random directions would score
    rows.append({"metric": "latent_dim", "value": float(generator.z_dim), "n_samples": 1})
    return rows
