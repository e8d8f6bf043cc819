"""F (`dplase.walks.learned.MonotoneCDF`) with its weights frozen: its log-slope and the slope's first two
derivatives in x in closed form, for the learned walk's level projection (Newton steps on F that never train F).

F is separable (one scalar network per latent coordinate) and frozen here, so the gradient of anything built
from log F'(x) reaches x through two per-coordinate numbers, L'(x) and, for the Newton gradient L' itself,
L''(x). Computing them in the forward pass replaces autograd's graph of F and, for the differentiable
projection, its double backward, by one node whose backward is a multiply (about 1.5x faster for the walk;
for a first-order gradient alone, autograd's backward is as cheap, so l_den keeps it). Values come from the
same operations as F's forward pass and are identical; the derivatives are the same functions evaluated in a
different order, equal up to float rounding (in float32 that rounding is large: finite differences at
delta = 1e-3 are ill-conditioned, and autograd's L' and this one both differ from a float64 evaluation by
~1.5e-4 at the median; in float64 they agree to ~1e-10)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as fn
from torch.autograd.function import once_differentiable

#: smallest gap u(x + delta) - u(x) (F is monotone by construction; the clamp only guards a flat region)
MIN_GAP = 1e-20


def units(x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, w: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """F's hidden units for x (N x dim): [first layer, second layer], each N x dim x width, from the effective
    weights ``w`` (`dplase.walks.learned.MonotoneCDF.weights`); F's logit is (second * w["a3"]).sum(-1) + b3."""
    h1 = torch.tanh(((x - loc) / scale)[..., None] * w["a1"] + w["b1"])
    return [h1, torch.tanh(mix(h1, w["a2"]) + w["b2"])]


def mix(h: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    """einsum("ndh,dgh->ndg", h, a2) as the one batched product einsum makes of it (bit-identical), without
    einsum's own reshapes and copies (F runs several times per training step)."""
    return torch.bmm(h.transpose(0, 1), a2.transpose(1, 2)).transpose(0, 1)


def log_gap(u1: torch.Tensor, u2: torch.Tensor, delta: float) -> torch.Tensor:
    """log((sigmoid(u2) - sigmoid(u1)) / delta), stably: sigmoid(u2) sigmoid(-u1) (1 - exp(u1 - u2))."""
    gap = (u2 - u1).clamp_min(MIN_GAP)
    return fn.logsigmoid(u2) + fn.logsigmoid(-u1) + torch.log(-torch.expm1(-gap)) - math.log(delta)


@dataclass(frozen=True)
class FrozenCDF:
    """F's location, scale and effective weights (`dplase.walks.learned.MonotoneCDF.weights`, detached) and the
    finite-difference step ``delta``. Values are computed by the same operations as F's own forward pass
    (`units`), so they equal it exactly; only the derivatives are new."""

    loc: torch.Tensor
    scale: torch.Tensor
    w: dict[str, torch.Tensor]
    delta: float

    def _logits(self, x: torch.Tensor, order: int) -> list[torch.Tensor]:
        """u(x) and its first ``order`` derivatives per coordinate (each N x dim), by the chain rule."""
        w = self.w
        h1, h2 = units(x, self.loc, self.scale, w)
        out = [(h2 * w["a3"]).sum(-1) + w["b3"]]
        if order == 0:
            return out
        c1 = w["a1"] / self.scale[:, None]  # d(first-layer input) / dx
        d1 = (1 - h1 * h1) * c1
        parts = [d1] if order == 1 else [d1, -2 * h1 * d1 * c1]
        pre = mix(torch.cat(parts), w["a2"])  # the derivatives of the second layer's input
        n, t2 = x.shape[0], 1 - h2 * h2
        p1 = pre[:n]
        out.append((t2 * p1 * w["a3"]).sum(-1))
        if order >= 2:
            out.append((t2 * (pre[n:] - 2 * h2 * p1 * p1) * w["a3"]).sum(-1))
        return out

    def derivatives(self, x: torch.Tensor, order: int) -> list[torch.Tensor]:
        """log F'(x) per coordinate (N x dim) and its first ``order`` (0-2) derivatives in x, without autograd."""
        n = x.shape[0]
        u = self._logits(torch.cat([x, x + self.delta]), order)
        u1, u2 = u[0][:n], u[0][n:]
        out = [log_gap(u1, u2, self.delta)]
        if order == 0:
            return out
        diff = u2 - u1
        gap = diff.clamp_min(MIN_GAP)
        # d/dgap log(1 - exp(-gap)) = q = 1 / expm1(gap); dq/dgap = -q (1 + q); zero where the clamp holds
        q = torch.where(diff >= MIN_GAP, torch.exp(-gap) / -torch.expm1(-gap), 0.0)
        s1, s2 = torch.sigmoid(u1), torch.sigmoid(-u2)  # -d/du logsigmoid(-u) and d/du logsigmoid(u)
        d1, d2 = u[1][:n], u[1][n:]
        dd = d2 - d1
        out.append(s2 * d2 - s1 * d1 + q * dd)
        if order >= 2:
            e1, e2 = u[2][:n], u[2][n:]
            out.append(s2 * (e2 - torch.sigmoid(u2) * d2 * d2) - s1 * (e1 + torch.sigmoid(-u1) * d1 * d1)
                       + q * ((e2 - e1) - (1 + q) * dd * dd))
        return out

    def log_slope(self, x: torch.Tensor) -> torch.Tensor:
        """log F'(x) per coordinate, differentiable in x (F's weights are constants)."""
        if not (torch.is_grad_enabled() and x.requires_grad):
            with torch.no_grad():
                return self.derivatives(x, 0)[0]
        return _Slope.apply(x, self, False)[0]

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """Estimated joint log p0(z) per row (sum of the per-coordinate log-slopes)."""
        return self.log_slope(z).sum(dim=-1)

    def log_slope_and_derivative(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log F'(x), d log F'(x) / dx) per coordinate, both differentiable in x (the Newton step's gradient)."""
        if not (torch.is_grad_enabled() and x.requires_grad):
            with torch.no_grad():
                value, first = self.derivatives(x, 1)
            return value, first
        value, first = _Slope.apply(x, self, True)
        return value, first


class _Slope(torch.autograd.Function):
    """x -> log F'(x) (and, with ``with_derivative``, its derivative) with the derivatives computed in the forward
    pass; backward multiplies by them."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cdf: FrozenCDF, with_derivative: bool) -> tuple[torch.Tensor, ...]:
        terms = cdf.derivatives(x, 2 if with_derivative else 1)
        ctx.save_for_backward(*terms[1:])
        ctx.with_derivative = with_derivative
        return (terms[0], terms[1]) if with_derivative else (terms[0],)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_value: torch.Tensor, *grads: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        saved = ctx.saved_tensors
        grad = grad_value * saved[0]
        if ctx.with_derivative and grads[0] is not None:
            grad = grad + grads[0] * saved[1]
        return grad, None, None
