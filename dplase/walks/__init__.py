"""Latent walks z -> walk(z0, gamma, eps), one registry shared by training, evaluation and figures.

Shapes: ``z0`` is N x d; ``gamma`` is N x d (or d, broadcast); ``eps`` is N (or a scalar).

- `WALKS`: walk name -> implementation, with ``needs_correction`` (whether the walk needs a learned
  correction network C); DirectionSet, the method configs, the CLI choices and Voynov's supported walks read it;
- `apply_walk` / `make_walk` / `walk_for`: dispatch by name (for a DirectionSet, C is rebuilt from it);
- `dplase.walks.basic`: the linear and norm-rescaled walks; `dplase.walks.learned`: the learned walk with its
  networks F and C; `dplase.walks.steps`: the step ranges; `dplase.walks.validation`: F and C on known priors.

Nothing here imports dplase.directions or dplase.methods at module level (directions imports this module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from dplase.registry import Registry
from dplase.walks.basic import linear_walk, norm_walk

if TYPE_CHECKING:
    from dplase.directions import DirectionSet
    from dplase.walks.learned import CorrectionFn

__all__ = ["WALKS", "WalkFn", "apply_walk", "default_walks", "linear_walk", "make_walk", "norm_walk", "walk_for"]

#: (z0, gamma, eps) -> walked latents
WalkFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

WALKS = Registry("walk", {
    "linear": ("dplase.walks.basic:linear_walk", {"needs_correction": False}),
    "norm": ("dplase.walks.basic:norm_walk", {"needs_correction": False}),
    "learned": ("dplase.walks.learned:learned_walk", {"needs_correction": True}),
})


def apply_walk(
    kind: str,
    z0: torch.Tensor,
    gamma: torch.Tensor,
    eps: torch.Tensor | float,
    correction: CorrectionFn | None = None,
) -> torch.Tensor:
    """Dispatch by walk name (see `WALKS`); ``correction`` is C for the walks that need one."""
    walk = WALKS.load(kind)
    if not WALKS[kind]["needs_correction"]:
        return walk(z0, gamma, eps)
    if correction is None:
        raise ValueError(f"the {kind} walk needs a correction network C")
    return walk(z0, gamma, eps, correction)


def make_walk(kind: str, correction: CorrectionFn | None = None) -> WalkFn:
    """The walk named ``kind`` as a function ``(z0, gamma, eps) -> z`` (with C bound for the learned walk)."""
    WALKS.check(kind)

    def walk(z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        return apply_walk(kind, z0, gamma, eps, correction)

    return walk


def walk_for(directions: DirectionSet, kind: str | None = None, device: str | torch.device = "cpu") -> WalkFn:
    """A function ``(z0, gamma, eps) -> z`` for a DirectionSet's walk (or the walk named by ``kind``).

    For the learned walk, the correction network stored in the DirectionSet is rebuilt on ``device``.
    """
    kind = WALKS.check(kind or directions.walk)
    correction = None
    if WALKS[kind]["needs_correction"]:
        from dplase.walks.learned import correction_from_state

        if "correction" not in directions.extra:
            raise ValueError(
                f"walk '{kind}' needs a learned correction network, but this '{directions.method}' "
                "DirectionSet has none (fit it with --walk learned)"
            )
        correction = correction_from_state(directions.extra, device=device)
    return make_walk(kind, correction)


def default_walks(directions: DirectionSet) -> list[str]:
    """The walks without a correction network (linear, norm) always; learned when the DirectionSet carries one."""
    extra = getattr(directions, "extra", {}) or {}
    has_correction = "correction" in extra or any(str(k).startswith("correction.") for k in extra)
    return [name for name, entry in WALKS.items() if has_correction or not entry["needs_correction"]]
