"""The learned density-preserving walk z0 + eps gamma + C(z0, eps, gamma) and its two networks, F and C.

- F (`MonotoneCDF`) maps each latent coordinate to (0, 1). It is monotone by construction (positive weights,
  increasing activations), so its finite-difference slope F'(x) ~ (F(x + delta) - F(x)) / delta is a density
  estimate of that coordinate; l_mon keeps the slope above a floor v where samples lie (so log F' never
  collapses), l_lik is the negative log-likelihood of prior samples. The joint log-density is the sum over
  coordinates: the density model assumes independent latent dimensions, and `DensityModel` refuses a prior
  whose dimensions are dependent (`Prior.independent`).
- C maps (z0, eps, gamma) to a correction so the walk keeps log p0 fixed (l_den). It has two parts:
  - the correction network (`CorrectionNet`), the write-up's C, trained on l_den: its output is multiplied by
    eps (a zero step never moves the latent) and projected orthogonal to gamma (on its own l_den has a trivial
    minimiser, C = -eps gamma, walk back to z0, which an unconstrained C found: it kept 5-20% of the step);
    a small proximity cost mean ||C||^2 picks the nearest such point on the start point's iso-density surface;
  - a projection (`level_projection`, ``newton_steps`` > 0): Newton steps on F's log-density towards the start
    point's level, from the linear point z0 + eps gamma (the default, ``projection_start: linear``; the network
    is then not in the walk and is not trained) or from the network's proposal (``projection_start: network``),
    either along the level's normal, F's score (``projection: normal``, the default: the nearest level point,
    which on N(0, I) is the norm rescale up to F's error; the step along gamma shortens as the norm rescale's
    does), or within the hyperplane orthogonal to gamma (``projection: orthogonal``: the walk keeps its full
    step along gamma).
    Why a projection: the network alone fits l_den poorly. Measured at d = 16 on N(0, I) with 1500 F + 1500 C
    steps (`dplase validate-density`): mean |Delta log p0| 0.16 by the true density and 0.14 by F itself, while
    F's own error costs only ~0.06 (the exact norm rescale, judged by F); 6000 C steps gave 0.11, width 512 or
    other learning rates and proximity weights 0.14-0.23: the bottleneck is C's fit, not F. Trained jointly with
    Gamma inside DP-LaSE (800 steps on the default GAN) the network learned corrections as long as the step
    itself (mean ||C|| 1.7 at eps = T = 1.77, the norm rescale's 0.45); projected back to the level they still
    kept log p0 (drift 0.08) but moved every walk far sideways and pulled the walked latents together (mean
    pairwise distance 4.5 against 5.4): domain FID at T 92 against 18 for the norm walk on the same directions.
    Why the normal: on the same GAN, orthogonal projection from the linear point gave FID 26.5 at T against 21.2
    for the norm walk (it moves the full step, as the linear walk, 25.6, does); the normal projection 22.6
    against 22.8, and the lower drift on every validation prior (0.058 / 0.27 / 0.37 against 0.077 / 0.46 / 1.15
    for N(0, I) / the uniform cube / the mixture). ``newton_steps: 0`` is the network alone (the write-up's C).
  `LearnedCorrection` is the two together, the C every learned walk uses.

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
from dplase.walks.frozen_cdf import FrozenCDF, log_gap, units

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

    def weights(self, params: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The effective weights (softplus of a1, a2, a3; the biases as they are) of the parameters (or of
        ``params``)."""
        p = params or dict(self.named_parameters())
        return {"a1": fn.softplus(p["a1"]), "b1": p["b1"], "a2": fn.softplus(p["a2"]), "b2": p["b2"],
                "a3": fn.softplus(p["a3"]), "b3": p["b3"]}

    def logits(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """u(x) for x of shape N x dim (F = sigmoid(u)). ``params`` overrides the parameters (detached use)."""
        w = self.weights(params)
        return (units(x, self.loc, self.scale, w)[1] * w["a3"]).sum(-1) + w["b3"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def frozen(self, delta: float) -> FrozenCDF:
        """F as it is now, detached, with its derivatives in x in closed form (`dplase.walks.frozen_cdf`)."""
        with torch.no_grad():
            return FrozenCDF(self.loc, self.scale, self.weights(), float(delta))

    def log_slope(self, x: torch.Tensor, delta: float, detach_params: bool = False) -> torch.Tensor:
        """log F'(x) per coordinate, F' = (F(x + delta) - F(x)) / delta, computed stably in log space.

        sigmoid(u2) - sigmoid(u1) = sigmoid(u2) sigmoid(-u1) (1 - exp(u1 - u2)), which keeps its precision
        in the tails where both values are within float32 epsilon of 0 or 1.
        """
        params = {k: v.detach() for k, v in self.named_parameters()} if detach_params else None
        u = self.logits(torch.cat([x, x + delta]), params)
        return log_gap(u[: x.shape[0]], u[x.shape[0]:], delta)

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

    def forward(self, z0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor, detach: bool = False) -> torch.Tensor:
        """C(z0, eps, gamma); with ``detach`` the weights are used detached (gradient to the inputs only)."""
        eps = eps.reshape(-1, 1).to(z0)
        gamma = gamma.to(z0).expand_as(z0)
        h = torch.cat([z0, gamma, eps / self.step_scale, z0 + eps * gamma], dim=1)
        for layer in self.hidden:
            h = fn.silu(_linear(layer, h, detach))
        out = _linear(self.out, h, detach)
        # keep C orthogonal to gamma: the walk advances exactly eps along gamma, so l_den cannot be met by
        # walking back to z0 (without this the learned walk kept only ~5-20% of the step)
        out = out - (out * gamma).sum(1, keepdim=True) / gamma.pow(2).sum(1, keepdim=True).clamp_min(1e-12) * gamma
        return eps * out


def _linear(layer: nn.Linear, x: torch.Tensor, detach: bool) -> torch.Tensor:
    return fn.linear(x, layer.weight.detach(), layer.bias.detach()) if detach else layer(x)


def level_projection(cdf: MonotoneCDF, delta: float, z0: torch.Tensor, z: torch.Tensor, gamma: torch.Tensor,
                     steps: int, keep_step: bool = True) -> torch.Tensor:
    """``steps`` Newton steps from ``z`` towards F's log-density level of ``z0``: within the hyperplane orthogonal
    to ``gamma`` (``keep_step``: the walk's progress along gamma is kept), else along the level's normal (F's
    score; the nearest level point, which on N(0, I) is the norm rescale), each step at most ||z - z0|| long (a
    Newton step overshoots where F is flat). F's weights are not trained here. Differentiable in z0, z and gamma
    when grad is enabled (the variation term's gradient reaches Gamma through the projection too).

    A `MonotoneCDF` gives its log-density's gradient and that gradient's derivative in closed form
    (`MonotoneCDF.frozen`), so the differentiable projection needs no double backward; any other F needs only
    ``log_density(z, delta, detach_params)`` and is differentiated by autograd."""
    differentiable = torch.is_grad_enabled() and (z.requires_grad or gamma.requires_grad or z0.requires_grad)
    unit = gamma / gamma.norm(dim=1, keepdim=True).clamp_min(1e-12)
    closed = cdf.frozen(delta) if isinstance(cdf, MonotoneCDF) else None
    with torch.enable_grad() if closed is None else torch.set_grad_enabled(differentiable):
        target = cdf.log_density(z0, delta, detach_params=True) if closed is None else closed.log_density(z0)
        cap = (z - z0).norm(dim=1, keepdim=True)
        for _ in range(steps):
            if closed is not None:
                slope, grad = closed.log_slope_and_derivative(z)
                level = slope.sum(-1)
            else:
                if not differentiable:
                    z = z.detach().requires_grad_(True)
                level = cdf.log_density(z, delta, detach_params=True)
                (grad,) = torch.autograd.grad(level.sum(), z, create_graph=differentiable)
            if keep_step:
                grad = grad - (grad * unit).sum(1, keepdim=True) * unit
            step = -(level - target)[:, None] * grad / grad.pow(2).sum(1, keepdim=True).clamp_min(1e-12)
            step = step * (cap / step.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp_max(1.0)
            z = z + step
    return z if differentiable else z.detach()


class LearnedCorrection(nn.Module):
    """The learned walk's C: the correction network's proposal, then ``newton_steps`` of `level_projection` on
    F (``newton_steps: 0``: the network alone). Returns the correction added to z0 + eps gamma. With
    ``detach_net`` the network's weights are used detached (F's always are): gradient reaches the inputs only."""

    def __init__(self, net: CorrectionNet, cdf: MonotoneCDF | None, delta: float, newton_steps: int,
                 detach_net: bool = False, start: str = "network", keep_step: bool = True) -> None:
        super().__init__()
        if newton_steps > 0 and cdf is None:
            raise ValueError("the level projection (newton_steps > 0) needs the density network F")
        if start not in PROJECTION_STARTS:
            raise ValueError(f"projection start must be one of {', '.join(PROJECTION_STARTS)}, got '{start}'")
        self.net, self.cdf, self.delta, self.newton_steps = net, cdf, float(delta), int(newton_steps)
        self.detach_net, self.start, self.keep_step = bool(detach_net), start, bool(keep_step)

    @property
    def uses_network(self) -> bool:
        """Whether the network's output reaches the walk (not with a projection from the linear point)."""
        return self.newton_steps == 0 or self.cdf is None or self.start == "network"

    def forward(self, z0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        eps = eps.reshape(-1).to(z0)
        gamma = gamma.to(z0).expand_as(z0)
        if self.newton_steps == 0 or self.cdf is None:
            return self.net(z0, eps, gamma, detach=self.detach_net)
        linear = z0 + eps[:, None] * gamma
        proposal = linear + self.net(z0, eps, gamma, detach=self.detach_net) if self.start == "network" else linear
        z = level_projection(self.cdf, self.delta, z0, proposal, gamma, self.newton_steps, self.keep_step)
        return z - linear


#: where C's level projection starts: the linear step z0 + eps gamma, or the correction network's proposal
PROJECTION_STARTS = ("linear", "network")
#: how C's Newton steps move: along the level's normal (F's score: the nearest level point; on N(0, I) the norm
#: rescale) or orthogonal to gamma (the walk keeps its full step along gamma)
PROJECTIONS = ("normal", "orthogonal")


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
    newton_steps: int = 5  # level-projection steps on F (0: the network alone); see the module doc
    projection_start: str = "linear"  # where the projection starts: "linear" (z0 + eps gamma) or "network"
    projection: str = "normal"  # Newton steps along the level's normal, or "orthogonal" to gamma (module doc)


class DensityModel(nn.Module):
    """F and C together, with their loss terms. F is a product of per-dimension marginals: a prior whose
    dimensions are dependent is refused."""

    def __init__(self, prior: Prior, cfg: DensityConfig, step_scale: float, seed: int) -> None:
        super().__init__()
        check_independent(prior)
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
        # with a projection from the linear point the network is not in the walk: l_den is the walk's own (it then
        # only trains Gamma, with density_to_directions)
        z, corr = corrected_walk(z0, gamma, eps, self.correction if self.trains_network else self.walk_correction())
        log_p0 = self.cdf.log_density(z0, self.cfg.delta, detach_params=True)
        log_p = self.cdf.log_density(z, self.cfg.delta, detach_params=True)
        return {"den": (log_p0 - log_p).pow(2).mean(), "prox": self.cfg.proximity * corr.pow(2).sum(1).mean()}

    def walk_correction(self, detach: bool = False) -> LearnedCorrection:
        """The C of the learned walk: the network, then the level projection on F (``detach``: the network's
        weights detached, see `LearnedCorrection`)."""
        return LearnedCorrection(self.correction, self.cdf, self.cfg.delta, self.cfg.newton_steps, detach,
                                 self.cfg.projection_start, self.cfg.projection == "orthogonal")

    @property
    def trains_network(self) -> bool:
        """Whether the correction network reaches the walk, so l_den trains it."""
        return self.walk_correction().uses_network


def check_independent(prior: Prior) -> None:
    """Refuse a prior with dependent dimensions: F estimates per-dimension marginals only."""
    if not getattr(prior, "independent", True):
        raise ValueError(
            f"the learned density walk assumes independent latent dimensions, but the '{prior.name}' prior's "
            "dimensions are dependent (its log-density is not a sum of marginals); use the linear or norm walk, "
            "or whiten the latents first"
        )


def correction_state(model: CorrectionNet | LearnedCorrection) -> dict[str, Any]:
    """The plain-tensor form of C stored in ``DirectionSet.extra["correction"]`` (with a `LearnedCorrection`,
    its projection's step count and F, as ``newton_steps`` and ``density``)."""
    net = model.net if isinstance(model, LearnedCorrection) else model
    state: dict[str, Any] = {
        "arch": torch.tensor([net.dim, net.width, net.depth], dtype=torch.int64),
        "weights": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
    }
    if isinstance(model, LearnedCorrection) and model.cdf is not None:
        state["newton_steps"] = torch.tensor(model.newton_steps, dtype=torch.int64)
        state["projection_from_linear"] = torch.tensor(model.start == "linear")
        state["projection_keeps_step"] = torch.tensor(model.keep_step)
        state["density"] = density_state(model.cdf, model.delta)
    return state


def density_state(cdf: MonotoneCDF, delta: float) -> dict[str, Any]:
    """The plain-tensor form of F (architecture, finite-difference step, weights)."""
    return {
        "arch": torch.tensor([cdf.dim, cdf.width], dtype=torch.int64),
        "delta": torch.tensor(float(delta)),
        "weights": {k: v.detach().cpu().clone() for k, v in cdf.state_dict().items()},
    }


def cdf_from_state(state: dict[str, Any]) -> MonotoneCDF:
    """Inverse of `density_state` (F only)."""
    dim, width = (int(v) for v in state["arch"].tolist())
    cdf = MonotoneCDF(dim, width)
    cdf.load_state_dict(state["weights"])
    return cdf


def correction_from_state(extra: dict[str, Any], device: str | torch.device = "cpu") -> CorrectionFn:
    """Rebuild C from a DirectionSet's ``extra`` (nested ``"correction"`` dict) as a callable C(z0, eps, gamma):
    the network, then the level projection on F when the state records one (older sets: the network alone)."""
    if "correction" not in extra:
        raise ValueError("no learned correction network in this DirectionSet (expected extra['correction'])")
    state = extra["correction"]
    dim, width, depth = (int(v) for v in state["arch"].tolist())
    net = CorrectionNet(dim, width, depth)
    net.load_state_dict(state["weights"])
    steps = int(state["newton_steps"]) if "newton_steps" in state else 0
    cdf = cdf_from_state(state["density"]) if steps > 0 else None
    delta = float(state["density"]["delta"]) if steps > 0 else 0.0
    start = "linear" if bool(state.get("projection_from_linear", torch.tensor(False))) else "network"
    keep = bool(state.get("projection_keeps_step", torch.tensor(True)))
    model = LearnedCorrection(net, cdf, delta, steps, start=start, keep_step=keep).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def correction(z0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return model(z0, eps, gamma)

    return correction
