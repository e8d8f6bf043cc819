"""Density along walks: how far a walk moves away from the prior's typical set.

Per walked latent z_w with start z0: the log-density drift log p0(z_w) - log p0(z0), the norm ratio
||z_w|| / ||z0||, and whether ||z_w|| falls outside the central 98% of the prior's norm distribution
(`Prior.norm_quantiles`, the chi distribution for a Gaussian).

`density_metric` is the registered metric "density": those means per (walk, direction, step), from the walked
latents alone (no images). A feature-space edit (the masked walk) has the latents of its underlying walk, so its
rows repeat that walk's values, with a note saying so.
"""

from __future__ import annotations

import torch

from dplase.metrics.context import EvalContext, Row
from dplase.priors import Prior
from dplase.walks import is_feature_edit

#: the central mass of ||z|| under the prior counted as "inside"
CENTRAL_MASS = 0.98


def norm_bounds(prior: Prior, central_mass: float = CENTRAL_MASS) -> tuple[float, float]:
    """Lower and upper quantiles of ||z|| enclosing ``central_mass`` of the prior."""
    tail = (1 - central_mass) / 2
    q = prior.norm_quantiles(torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(q[0]), float(q[1])


def density_terms(prior: Prior, z0: torch.Tensor, zw: torch.Tensor,
                  bounds: tuple[float, float] | None = None) -> dict[str, torch.Tensor]:
    """Per-sample ``logp_drift``, ``norm_ratio`` and ``outside`` (0/1) for start points z0 and walked zw."""
    lo, hi = bounds if bounds is not None else norm_bounds(prior)
    z0, zw = z0.detach().double().cpu(), zw.detach().double().cpu()
    norm_w = zw.norm(dim=1)
    return {
        "logp_drift": prior.log_prob(zw) - prior.log_prob(z0),
        "norm_ratio": norm_w / z0.norm(dim=1).clamp_min(1e-12),
        "outside": ((norm_w < lo) | (norm_w > hi)).double(),
    }


def density_summary(prior: Prior, z0: torch.Tensor, zw: torch.Tensor,
                    bounds: tuple[float, float] | None = None) -> dict[str, float]:
    """Means over samples: ``logp_drift``, ``abs_logp_drift``, ``norm_ratio``, ``outside_share``.

    A -inf log-density (a uniform prior left behind) stays -inf in the drift: it is the honest answer.
    """
    terms = density_terms(prior, z0, zw, bounds)
    return {
        "logp_drift": float(terms["logp_drift"].mean()),
        "abs_logp_drift": float(terms["logp_drift"].abs().mean()),
        "norm_ratio": float(terms["norm_ratio"].mean()),
        "outside_share": float(terms["outside"].mean()),
    }


def density_metric(ctx: EvalContext) -> list[Row]:
    """`density_summary` rows per (walk, direction, step) over the direction's n start points."""
    prior = ctx.generator.prior
    bounds = norm_bounds(prior)
    rows: list[Row] = []
    for (walk, j), zw in ctx.walked.items():
        z0 = ctx.z0[ctx.block(j)]
        note = (f"feature-space edit: the latent of its underlying {ctx.directions.walk} walk"
                if is_feature_edit(walk) else None)
        for i, e in enumerate(ctx.steps):
            summary = density_summary(prior, z0, zw[ctx.step_rows(i)], bounds)
            rows += [{"walk": walk, "direction": j, "step": e, "metric": name, "value": value, "n_samples": ctx.n,
                      **({"note": note} if note else {})} for name, value in summary.items()]
    return rows
