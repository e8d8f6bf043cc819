"""Latent walks, one function each, shared by training, evaluation and figures.

Shapes: ``z0`` is N x d; ``gamma`` is N x d (or d, broadcast); ``eps`` is N (or a scalar).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dplase.directions import WALK_TYPES, DirectionSet

#: C(z0, eps, gamma) -> correction added to the linear walk (the learned density-preserving walk)
Correction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _expand(z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor | float) -> tuple[torch.Tensor, ...]:
    gamma = gamma.to(z0).expand_as(z0)
    eps_t = torch.as_tensor(eps, dtype=z0.dtype, device=z0.device)
    eps_t = eps_t.expand(z0.shape[0]) if eps_t.ndim == 0 else eps_t.reshape(-1)
    return gamma, eps_t


def linear_walk(z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
    """z0 + eps * gamma."""
    gamma, eps_t = _expand(z0, gamma, eps)
    return z0 + eps_t[:, None] * gamma


def norm_walk(z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
    """Linear walk rescaled to the start point's norm: exact iso-density for an isotropic Gaussian."""
    z = linear_walk(z0, gamma, eps)
    return z * (z0.norm(dim=1, keepdim=True) / z.norm(dim=1, keepdim=True).clamp_min(1e-12))


def learned_walk(
    z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor | float, correction: Correction
) -> torch.Tensor:
    """z0 + eps * gamma + C(z0, eps, gamma), with C the learned correction network."""
    gamma, eps_t = _expand(z0, gamma, eps)
    return z0 + eps_t[:, None] * gamma + correction(z0, eps_t, gamma)


def apply_walk(
    kind: str,
    z0: torch.Tensor,
    gamma: torch.Tensor,
    eps: torch.Tensor | float,
    correction: Correction | None = None,
) -> torch.Tensor:
    """Dispatch by walk name ("linear", "norm", "learned")."""
    if kind == "linear":
        return linear_walk(z0, gamma, eps)
    if kind == "norm":
        return norm_walk(z0, gamma, eps)
    if kind == "learned":
        if correction is None:
            raise ValueError("the learned walk needs a correction network C")
        return learned_walk(z0, gamma, eps, correction)
    raise ValueError(f"unknown walk '{kind}'; choose one of {', '.join(WALK_TYPES)}")


def walk_for(directions: DirectionSet, kind: str | None = None, device: str | torch.device = "cpu"):
    """A function ``(z0, gamma, eps) -> z`` for a DirectionSet's walk (or the walk named by ``kind``).

    For the learned walk, the correction network stored in the DirectionSet is rebuilt on ``device``.
    """
    kind = kind or directions.walk
    correction = None
    if kind == "learned":
        from dplase.density import correction_from_state

        if "correction" not in directions.extra:
            raise ValueError(
                f"walk 'learned' needs a learned correction network, but this '{directions.method}' "
                "DirectionSet has none (fit it with --walk learned)"
            )
        correction = correction_from_state(directions.extra, device=device)

    def walk(z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        return apply_walk(kind, z0, gamma, eps, correction)

    return walk
