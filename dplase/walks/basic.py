"""The closed-form walks: linear (z0 + eps gamma) and norm-rescaled.

Shapes: ``z0`` is N x d; ``gamma`` is N x d (or d, broadcast); ``eps`` is N (or a scalar).
"""

from __future__ import annotations

import torch


def _expand(z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """``gamma`` as N x d and ``eps`` as N, on ``z0``'s dtype and device."""
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
