"""The learned density-preserving walk z0 + eps gamma + C(z0, eps, gamma) and its two networks, F and C.

- F (`MonotoneCDF`) maps each latent coordinate to (0, 1). It is monotone by construction (positive weights,
  increasing activations), so its finite-difference slope F'(x) ~ (F(x + delta) - F(x)) / delta is a density
  estimate of that coordinate; l_mon keeps the slope above a floor v where samples lie (so log F' never
  collapses), l_lik is the negative log-likelihood of prior samples. The joint log-density is the sum over
  coordinates (the priors factorise).
- C (`CorrectionNet`) maps (z0, eps, gamma) to a correction so the walk keeps log p0 fixed (l_den). C's output
  is multiplied by eps (a zero step never moves the latent) and projected orthogonal to gamma: on its own l_den
  has a trivial minimiser, C = -eps gamma (walk back to z0), which an unconstrained C found (it kept 5-20% of
  the step). With C orthogonal to gamma the walk advances exactly eps along gamma and C only moves within the
  hyperplane orthogonal to it; a small proximity cost mean ||C||^2 picks the nearest such point on the start
  point's iso-density surface.

C trains on steps eps ~ U(-T, T) of the one step range (`dplase.walks.steps`; DP-LaSE's T, the prior's by
default) and sees eps / T; the evaluation grid defaults to the same T, so the walk is scored where it was
trained (larger steps only on request, their rows marked ``extrapolated``).

`dplase.walks.validation` trains both on a known prior and measures how well they do.
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

from dplase.priors import Prior
from dplase.walks.basic import _expand

#: C(z0, eps, gamma) -> correction added to the linear walk (a `CorrectionNet` or any function like it)
CorrectionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def corrected_walk(
    z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor | float, correction: CorrectionFn
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z0 + eps * gamma + C, C): the learned walk and the correction it added (C's proximity cost needs it)."""
    gamma, eps_t = _expand(z0, gamma, eps)
    corr = correction(z0, eps_t, gamma)
    return z0 + eps_t[:, None] * gamma + corr, corr


def learned_walk(
    z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor | float, correction: CorrectionFn
) -> torch.Tensor:
    """z0 + eps * gamma + C(z0, eps, gamma), with C the learned correction network."""
    return corrected_walk(z0, gamma, eps, correction)[0]


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


class CorrectionNet(nn.Module):
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
        self.correction = CorrectionNet(prior.dim, cfg.correction_width, cfg.correction_depth, step_scale, gen)

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
        z, corr = corrected_walk(z0, gamma, eps, self.correction)
        log_p0 = self.cdf.log_density(z0, self.cfg.delta, detach_params=True)
        log_p = self.cdf.log_density(z, self.cfg.delta, detach_params=True)
        return {"den": (log_p0 - log_p).pow(2).mean(), "prox": self.cfg.proximity * corr.pow(2).sum(1).mean()}


def correction_state(model: CorrectionNet) -> dict[str, Any]:
    """The plain-tensor form of C stored in ``DirectionSet.extra["correction"]``."""
    return {
        "arch": torch.tensor([model.dim, model.width, model.depth], dtype=torch.int64),
        "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def correction_from_state(extra: dict[str, Any], device: str | torch.device = "cpu") -> CorrectionFn:
    """Rebuild C from a DirectionSet's ``extra`` (nested ``"correction"`` dict) as a callable C(z0, eps, gamma)."""
    if "correction" not in extra:
        raise ValueError("no learned correction network in this DirectionSet (expected extra['correction'])")
    state = extra["correction"]
    dim, width, depth = (int(v) for v in state["arch"].tolist())
    model = CorrectionNet(dim, width, depth)
    model.load_state_dict(state["weights"])
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def correction(z0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return model(z0, eps, gamma)

    return correction
