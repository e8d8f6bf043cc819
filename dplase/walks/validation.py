"""The learned walk on known priors: train F and C, then measure how well each walk preserves density.

Used by ``dplase validate-density`` (`dplase.cli.validate`) and the tests. Every number is over held-out start
points, the directions and the evaluation's own step grid (the non-zero steps of ``EvalConfig.n_steps`` in
[-T, T], T = `max_step` of the prior), the range C trains on.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dplase.priors import GaussianPrior, Prior, UniformPrior, make_prior
from dplase.training.loop import LoopState, run_loop, step_generator
from dplase.walks import WALKS, WalkFn, make_walk
from dplase.walks.learned import DensityConfig, DensityModel
from dplase.walks.steps import StepRange, max_step


def fit_density_model(
    prior: Prior, cfg: DensityConfig, directions: torch.Tensor, max_step: float, cdf_steps: int,
    correction_steps: int, seed: int = 0, progress: bool = False,
) -> DensityModel:
    """Train F on prior samples, then (F frozen) C's network on walks along ``directions`` with eps ~ U(-T, T)
    (no C steps when the network is not in the walk: a projection from the linear point)."""
    model = DensityModel(prior, cfg, max_step, seed)
    correction_steps = correction_steps if model.trains_network else 0
    steps = StepRange(max_step)
    opt_f = torch.optim.Adam(model.cdf.parameters(), lr=cfg.cdf_lr)
    opt_c = torch.optim.Adam(model.correction.parameters(), lr=cfg.correction_lr)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        gen = step_generator(seed, step)
        z = prior.sample(cfg.batch, gen)
        if step < cdf_steps:
            terms = model.cdf_losses(z)
            opt, loss = opt_f, terms["mon"] + terms["lik"]
        else:
            idx = torch.randint(0, directions.shape[0], (cfg.batch,), generator=gen)
            eps = steps.sample(cfg.batch, gen)
            terms = model.den_losses(z, eps, directions[idx])
            opt, loss = opt_c, terms["den"] + terms["prox"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return terms

    state = LoopState({"model": model, "opt_f": opt_f, "opt_c": opt_c})
    run_loop(total_steps=cdf_steps + correction_steps, step_fn=step_fn, state=state, checkpoint_path=None,
             desc="density", progress=progress)
    return model


def eval_log_prob(prior: Prior, z: torch.Tensor, smooth: float = 0.05) -> torch.Tensor:
    """True log p0(z); for the uniform prior (log p0 = -inf outside the cube) the log-density of the cube
    convolved with N(0, smooth^2), so a point just outside costs a finite, growing penalty."""
    if not isinstance(prior, UniformPrior):
        return prior.log_prob(z)
    a = prior.half_width
    upper = torch.special.log_ndtr((a - z.double()) / smooth)
    lower = torch.special.log_ndtr((-a - z.double()) / smooth)
    mass = upper + torch.log(-torch.expm1((lower - upper).clamp_max(-1e-12)))
    return (mass - math.log(2 * a)).sum(dim=-1).float()


def density_drift(prior: Prior, walk: WalkFn, z0: torch.Tensor, directions: torch.Tensor,
                  eps_grid: torch.Tensor) -> dict[str, float]:
    """Over start points x directions x steps: the mean |log p0(walk) - log p0(z0)| (``drift``), the share of
    walked points outside the support (``outside``) and outside the central 98% of the prior's norm
    distribution (``outside_norm``, `dplase.metrics.density.norm_bounds`), and the progress along the
    direction, mean (z - z0).gamma / eps (1 for the linear walk; a walk that "preserves density" by not moving
    would score 0)."""
    from dplase.metrics.density import norm_bounds

    lo, hi = norm_bounds(prior)
    drifts, outside, outside_norm, progress = [], [], [], []
    base = eval_log_prob(prior, z0)
    for gamma in directions:
        for eps in eps_grid.tolist():
            z = walk(z0, gamma, torch.full((z0.shape[0],), float(eps)))
            drifts.append((eval_log_prob(prior, z) - base).abs())
            outside.append(~torch.isfinite(prior.log_prob(z)))
            norms = z.norm(dim=1)
            outside_norm.append((norms < lo) | (norms > hi))
            progress.append((z - z0) @ gamma / eps)
    return {"drift": float(torch.cat(drifts).mean()), "outside": float(torch.cat(outside).float().mean()),
            "outside_norm": float(torch.cat(outside_norm).float().mean()),
            "progress": float(torch.cat(progress).mean())}


@torch.no_grad()
def _pdf_error(model: DensityModel, prior: Prior) -> float:
    """max |log F' - log p| on [-3, 3] over dimensions (Gaussian prior only, else NaN)."""
    if not isinstance(prior, GaussianPrior):
        return float("nan")
    grid = torch.linspace(-3, 3, 601)
    est = model.cdf.log_slope(grid[:, None].expand(-1, prior.dim).contiguous(), model.cfg.delta)
    return float((est - prior.log_prob_1d(grid)[:, None]).abs().max())


def evaluation_steps(prior: Prior, n_steps: int | None = None) -> torch.Tensor:
    """The evaluation's non-zero steps in [-T, T] (``n_steps`` None: ``EvalConfig.n_steps``)."""
    from dplase.metrics.context import EvalConfig  # lazy: the metrics package pulls in the generator code

    n_steps = EvalConfig.n_steps if n_steps is None else n_steps
    return torch.tensor(StepRange(max_step(prior)).nonzero(n_steps))


def validate_density(
    prior_name: str, dim: int = 16, seed: int = 0, cdf_steps: int = 1500, correction_steps: int = 1500,
    n_directions: int = 8, n_eval: int = 512, cfg: DensityConfig | None = None, progress: bool = False,
    n_steps: int | None = None,
) -> dict[str, Any]:
    """Train F and C on a known prior and report how well they preserve density.

    Returns ``{"prior", "dim", "max_step", "steps", "newton_steps", "max_abs_log_pdf_error"`` (max |log F' - log
    p| on [-3, 3] over dimensions; Gaussian only, else NaN)``, and for each registered walk (linear / norm /
    learned) ``drift_<walk>``, ``outside_<walk>``, ``outside_norm_<walk>`` and ``progress_<walk>`` of
    `density_drift`, over held-out start points, the directions and the evaluation's steps (`evaluation_steps`)}``.
    """
    cfg = cfg or DensityConfig()
    prior = make_prior(prior_name, dim)
    steps = StepRange(max_step(prior))
    grid = evaluation_steps(prior, n_steps)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed + 11)))
    directions = q.T[:n_directions].contiguous()
    model = fit_density_model(prior, cfg, directions, steps.max_step, cdf_steps, correction_steps, seed, progress)
    model.eval()
    result: dict[str, Any] = {"prior": prior_name, "dim": dim, "max_step": steps.max_step,
                              "steps": [round(float(e), 6) for e in grid], "newton_steps": cfg.newton_steps,
                              "projection_start": cfg.projection_start, "projection": cfg.projection}
    result["max_abs_log_pdf_error"] = _pdf_error(model, prior)
    z0 = prior.sample(n_eval, seed + 1_000_003)
    with torch.no_grad():
        for name, entry in WALKS.items():
            if entry.get("needs_masks"):  # feature-space edits have no latent walk of their own
                continue
            walk = make_walk(name, model.walk_correction() if entry["needs_correction"] else None)
            stats = density_drift(prior, walk, z0, directions, grid)
            for key, value in stats.items():
                result[f"{key}_{name}"] = value
    return result


def walk_records(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per walk of a `validate_density` result (what ``dplase validate-density`` prints)."""
    shared = {k: v for k, v in result.items() if not any(k.startswith(f"{m}_") for m in _MEASURES)}
    walks = sorted({k.split("_", 1)[1] for k in result if k.startswith("drift_")}, key=list(WALKS).index)
    return [{**shared, "walk": w, **{m: result[f"{m}_{w}"] for m in _MEASURES}} for w in walks]


_MEASURES = ("drift", "outside", "outside_norm", "progress")
