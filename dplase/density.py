"""Learned density for the learned density-preserving walk: F (per-dimension CDF network) and C (correction).

- F maps each latent coordinate to (0, 1). It is monotone by construction (positive weights, increasing
  activations), so its finite-difference slope F'(x) ~ (F(x + delta) - F(x)) / delta is a density estimate of
  that coordinate; l_mon keeps the slope above a floor v where samples lie (so log F' never collapses), l_lik
  is the negative log-likelihood of prior samples. The joint log-density is the sum over coordinates (the
  priors factorise).
- C maps (z0, eps, gamma) to a correction so the walk z0 + eps gamma + C(z0, eps, gamma) keeps log p0 fixed
  (l_den). C's output is multiplied by eps (a zero step never moves the latent) and projected orthogonal to
  gamma: on its own l_den has a trivial minimiser, C = -eps gamma (walk back to z0), which an unconstrained C
  found (it kept 5-20% of the step). With C orthogonal to gamma the walk advances exactly eps along gamma and
  C only moves within the hyperplane orthogonal to it; a small proximity cost mean ||C||^2 picks the nearest
  such point on the start point's iso-density surface.

`validate_density` trains both on a known prior and measures how well they do (used by tests and
``scripts/validate_density.py``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as fn
from torch import nn

from dplase.priors import GaussianPrior, Prior, UniformPrior, make_prior
from dplase.training.loop import LoopState, run_loop, step_generator

#: the authors' step range relative to the typical latent norm: T = 10 at d = 512 (||z|| ~ sqrt(512))
STEP_PER_NORM = 10.0 / math.sqrt(512.0)


def default_max_step(prior: Prior, n: int = 4096, seed: int = 0) -> float:
    """The authors' T = 10 for a 512-d N(0, I), scaled to this prior's RMS latent norm."""
    z = prior.sample(n, seed)
    return STEP_PER_NORM * float(z.pow(2).sum(dim=1).mean().sqrt())


def _prior_scale(prior: Prior, n: int = 4096, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the prior (F's input standardisation), from a seeded sample."""
    z = prior.sample(n, seed).double()
    return z.mean(0).float(), z.std(0).clamp_min(1e-6).float()


class MonotoneCDF(nn.Module):
    """F: one small monotone network R -> (0, 1) per latent dimension, evaluated for all at once.

    u(x) = b3 + sum_g a3_g tanh(b2_g + sum_h A2_gh tanh(a1_h x' + b1_h)), F = sigmoid(u), with all a, A > 0
    (softplus of the parameters) and x' the standardised coordinate.
    """

    def __init__(self, dim: int, width: int = 16, generator: torch.Generator | None = None,
                 loc: torch.Tensor | None = None, scale: torch.Tensor | None = None) -> None:
        super().__init__()
        gen = generator or torch.Generator().manual_seed(0)
        self.dim, self.width = dim, width
        self.register_buffer("loc", torch.zeros(dim) if loc is None else loc.float().clone())
        self.register_buffer("scale", torch.ones(dim) if scale is None else scale.float().clone())
        # first-layer units start with unit slope and centres spread over [-3, 3] standard deviations
        centres = torch.linspace(-3, 3, width).expand(dim, width)
        self.a1 = nn.Parameter(torch.full((dim, width), 0.5413) + 0.1 * torch.randn(dim, width, generator=gen))
        self.b1 = nn.Parameter(-centres.clone())
        self.a2 = nn.Parameter(-1.0 + 0.1 * torch.randn(dim, width, width, generator=gen))
        self.b2 = nn.Parameter(0.1 * torch.randn(dim, width, generator=gen))
        self.a3 = nn.Parameter(torch.full((dim, width), 0.5) + 0.1 * torch.randn(dim, width, generator=gen))
        self.b3 = nn.Parameter(torch.zeros(dim))

    def logits(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """u(x) for x of shape N x dim (F = sigmoid(u)). ``params`` overrides the parameters (detached use)."""
        p = params or dict(self.named_parameters())
        xs = (x - self.loc) / self.scale
        h = torch.tanh(xs[..., None] * fn.softplus(p["a1"]) + p["b1"])
        h = torch.tanh(torch.einsum("ndh,dgh->ndg", h, fn.softplus(p["a2"])) + p["b2"])
        return (h * fn.softplus(p["a3"])).sum(-1) + p["b3"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def log_slope(self, x: torch.Tensor, delta: float, detach_params: bool = False) -> torch.Tensor:
        """log F'(x) per coordinate, F' = (F(x + delta) - F(x)) / delta, computed stably in log space.

        sigmoid(u2) - sigmoid(u1) = sigmoid(u2) sigmoid(-u1) (1 - exp(u1 - u2)), which keeps its precision
        in the tails where both values are within float32 epsilon of 0 or 1.
        """
        params = {k: v.detach() for k, v in self.named_parameters()} if detach_params else None
        u = self.logits(torch.cat([x, x + delta]), params)
        u1, u2 = u[: x.shape[0]], u[x.shape[0]:]
        gap = (u2 - u1).clamp_min(1e-20)  # monotone by construction; the clamp only guards a flat region
        return fn.logsigmoid(u2) + fn.logsigmoid(-u1) + torch.log(-torch.expm1(-gap)) - math.log(delta)

    def log_density(self, z: torch.Tensor, delta: float, detach_params: bool = False) -> torch.Tensor:
        """Estimated joint log p0(z) per row (sum of per-coordinate log-slopes)."""
        return self.log_slope(z, delta, detach_params).sum(dim=-1)


class Correction(nn.Module):
    """C(z0, eps, gamma) = eps * MLP([z0, gamma, eps / T, z0 + eps gamma]); the last layer starts at zero,
    so an untrained C is the linear walk."""

    def __init__(self, dim: int, width: int = 256, depth: int = 2, step_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        gen = generator or torch.Generator().manual_seed(0)
        self.dim, self.width, self.depth = dim, width, depth
        self.register_buffer("step_scale", torch.tensor(float(step_scale)))
        sizes = [3 * dim + 1] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.out = nn.Linear(sizes[-1], dim)
        with torch.no_grad():  # seeded init (nn's default init would draw from the global RNG)
            for layer in self.hidden:
                bound = 1 / math.sqrt(layer.in_features)
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=gen) * 2 - 1) * bound)
                layer.bias.zero_()
            self.out.weight.zero_()
            self.out.bias.zero_()

    def forward(self, z0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        eps = eps.reshape(-1, 1).to(z0)
        gamma = gamma.to(z0).expand_as(z0)
        h = torch.cat([z0, gamma, eps / self.step_scale, z0 + eps * gamma], dim=1)
        for layer in self.hidden:
            h = fn.silu(layer(h))
        out = self.out(h)
        # keep C orthogonal to gamma: the walk advances exactly eps along gamma, so l_den cannot be met by
        # walking back to z0 (without this the learned walk kept only ~5-20% of the step)
        out = out - (out * gamma).sum(1, keepdim=True) / gamma.pow(2).sum(1, keepdim=True).clamp_min(1e-12) * gamma
        return eps * out


@dataclass
class DensityConfig:
    """Hyperparameters of the learned density (F and C)."""

    cdf_width: int = 16
    correction_width: int = 256
    correction_depth: int = 2
    min_slope: float = 1e-4  # v in l_mon
    delta: float = 1e-3  # finite-difference step of F'
    proximity: float = 0.1  # weight of mean ||C||^2 (rules out C = -eps gamma)
    cdf_lr: float = 1e-2  # Adam for F (1e-3 leaves its tails unconverged after a few thousand steps)
    correction_lr: float = 3e-3  # Adam for C (1e-2 was unstable on the uniform prior: walks left the cube)
    batch: int = 512  # prior samples per step for l_mon / l_lik / l_den


class DensityModel(nn.Module):
    """F and C together, with their loss terms."""

    def __init__(self, prior: Prior, cfg: DensityConfig, step_scale: float, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed) + 7)
        loc, scale = _prior_scale(prior)
        self.cfg = cfg
        self.cdf = MonotoneCDF(prior.dim, cfg.cdf_width, gen, loc, scale)
        self.correction = Correction(prior.dim, cfg.correction_width, cfg.correction_depth, step_scale, gen)

    def cdf_losses(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """l_mon (slope floor) and l_lik (negative log-likelihood), summed over dimensions, mean over rows."""
        log_slope = self.cdf.log_slope(z, self.cfg.delta)
        mon = fn.relu(self.cfg.min_slope - log_slope.exp()).sum(dim=1).mean()
        lik = (-log_slope).sum(dim=1).mean()
        return {"mon": mon, "lik": lik}

    def den_losses(self, z0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> dict[str, torch.Tensor]:
        """l_den (squared change of the estimated log-density along the walk) and C's proximity cost.

        F's parameters are detached here: F learns only from l_mon + l_lik, otherwise l_den would flatten it.
        """
        corr = self.correction(z0, eps, gamma)
        z = z0 + eps.reshape(-1, 1) * gamma + corr
        log_p0 = self.cdf.log_density(z0, self.cfg.delta, detach_params=True)
        log_p = self.cdf.log_density(z, self.cfg.delta, detach_params=True)
        return {"den": (log_p0 - log_p).pow(2).mean(), "prox": self.cfg.proximity * corr.pow(2).sum(1).mean()}


def correction_state(model: Correction) -> dict[str, Any]:
    """The plain-tensor form of C stored in ``DirectionSet.extra["correction"]``."""
    return {
        "arch": torch.tensor([model.dim, model.width, model.depth], dtype=torch.int64),
        "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def correction_from_state(extra: dict[str, Any], device: str | torch.device = "cpu") -> Callable:
    """Rebuild C from a DirectionSet's ``extra`` (nested ``"correction"`` dict) as a callable C(z0, eps, gamma)."""
    if "correction" not in extra:
        raise ValueError("no learned correction network in this DirectionSet (expected extra['correction'])")
    state = extra["correction"]
    dim, width, depth = (int(v) for v in state["arch"].tolist())
    model = Correction(dim, width, depth)
    model.load_state_dict(state["weights"])
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def correction(z0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return model(z0, eps, gamma)

    return correction


# --------------------------------------------------------------------------------------------- validation


def fit_density_model(
    prior: Prior, cfg: DensityConfig, directions: torch.Tensor, max_step: float, cdf_steps: int,
    correction_steps: int, seed: int = 0, progress: bool = False,
) -> DensityModel:
    """Train F on prior samples, then (F frozen) C on walks along ``directions`` with eps ~ U(-T, T)."""
    model = DensityModel(prior, cfg, max_step, seed)
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
            eps = (torch.rand(cfg.batch, generator=gen) * 2 - 1) * max_step
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


def density_drift(prior: Prior, walk: Callable, z0: torch.Tensor, directions: torch.Tensor,
                  eps_grid: torch.Tensor) -> dict[str, float]:
    """Mean |log p0(walk) - log p0(z0)| over start points x directions x steps, the share of walked points
    outside the support, and the progress along the direction, mean (z - z0).gamma / eps (1 for the linear
    walk; a walk that "preserves density" by not moving would score 0)."""
    drifts, outside, progress = [], [], []
    base = eval_log_prob(prior, z0)
    for gamma in directions:
        for eps in eps_grid.tolist():
            z = walk(z0, gamma, torch.full((z0.shape[0],), float(eps)))
            drifts.append((eval_log_prob(prior, z) - base).abs())
            outside.append(~torch.isfinite(prior.log_prob(z)))
            progress.append((z - z0) @ gamma / eps)
    return {"drift": float(torch.cat(drifts).mean()), "outside": float(torch.cat(outside).float().mean()),
            "progress": float(torch.cat(progress).mean())}


def validate_density(
    prior_name: str, dim: int = 8, seed: int = 0, cdf_steps: int = 1500, correction_steps: int = 1500,
    n_directions: int = 8, n_eval: int = 512, cfg: DensityConfig | None = None, progress: bool = False,
) -> dict[str, Any]:
    """Train F and C on a known prior and report how well they preserve density.

    Returns ``{"prior", "dim", "max_step", "max_abs_log_pdf_error"`` (max |log F' - log p| on [-3, 3] over
    dimensions; Gaussian only, else NaN)``, and for each walk in linear / norm / learned the mean
    |Delta log p0| and the share of walked points outside the support, over held-out start points, the
    directions and a grid of 8 non-zero steps in [-T, T]}``.
    """
    from dplase.walks import learned_walk, linear_walk, norm_walk

    cfg = cfg or DensityConfig()
    prior = make_prior(prior_name, dim)
    max_step = default_max_step(prior)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed + 11)))
    directions = q.T[:n_directions].contiguous()
    model = fit_density_model(prior, cfg, directions, max_step, cdf_steps, correction_steps, seed, progress)
    model.eval()
    result: dict[str, Any] = {"prior": prior_name, "dim": dim, "max_step": max_step}
    with torch.no_grad():
        grid = torch.linspace(-3, 3, 601)
        if isinstance(prior, GaussianPrior):
            est = model.cdf.log_slope(grid[:, None].expand(-1, dim).contiguous(), cfg.delta)
            err = (est - prior.log_prob_1d(grid)[:, None]).abs().max()
            result["max_abs_log_pdf_error"] = float(err)
        else:
            result["max_abs_log_pdf_error"] = float("nan")
        z0 = prior.sample(n_eval, seed + 1_000_003)
        eps_grid = torch.cat([torch.linspace(-max_step, 0, 5)[:-1], torch.linspace(0, max_step, 5)[1:]])

        def learned(z: torch.Tensor, g: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
            return learned_walk(z, g, e, model.correction)

        for name, walk in (("linear", linear_walk), ("norm", norm_walk), ("learned", learned)):
            stats = density_drift(prior, walk, z0, directions, eps_grid)
            result[f"drift_{name}"] = stats["drift"]
            result[f"outside_{name}"] = stats["outside"]
            result[f"progress_{name}"] = stats["progress"]
    return result
