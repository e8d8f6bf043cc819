"""Latent walks z -> walk(z0, gamma, eps), one registry shared by training, evaluation and figures.

Shapes: ``z0`` is N x d; ``gamma`` is N x d (or d, broadcast); ``eps`` is N (or a scalar).

- `WALKS`: the latent walks (linear, norm, learned), walk name -> implementation, with ``needs_correction``
  (whether the walk needs a learned correction network C); what a method trains with and a DirectionSet's
  ``walk`` names: DirectionSet, the method configs, the CLI choices and Voynov's supported walks read it;
- `EVAL_WALKS`: every walk an evaluation can score: the latent walks plus the feature-space edit ``masked``
  (``feature_edit``, ``needs_masks``): for direction j and its channel subspace k (chosen by
  `dplase.subspace.choose_group`), images G2(M_k * G1(z_walk) + (1 - M_k) * G1(z0)) at the DirectionSet's layer,
  with z_walk the DirectionSet's own latent walk. Its *latent* is that walk's (`walk_for`), so latent-only
  metrics (density) give a masked edit the rows of its underlying walk; its images come from
  `dplase.subspace.masked_images`. It needs the DirectionSet's ``channel_masks`` (DP-LaSE ``subspace: true``);
- `apply_walk` / `make_walk` / `walk_for`: dispatch by name (for a DirectionSet, C is rebuilt from it);
- `dplase.walks.basic`: the linear and norm-rescaled walks; `dplase.walks.learned`: the learned walk with its
  networks F and C; `dplase.walks.steps`: the step ranges; `dplase.walks.validation`: F and C on known priors.

Nothing here imports dplase.directions, dplase.methods or dplase.subspace at module level (directions imports
this module).
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

__all__ = ["EVAL_WALKS", "WALKS", "WalkFn", "apply_walk", "default_walks", "is_feature_edit", "linear_walk",
           "make_walk", "norm_walk", "walk_for"]

#: (z0, gamma, eps) -> walked latents
WalkFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_LATENT = {"needs_masks": False, "feature_edit": False}
WALKS = Registry("walk", {
    "linear": ("dplase.walks.basic:linear_walk", {"needs_correction": False, **_LATENT}),
    "norm": ("dplase.walks.basic:norm_walk", {"needs_correction": False, **_LATENT}),
    "learned": ("dplase.walks.learned:learned_walk", {"needs_correction": True, **_LATENT}),
})
#: the latent walks, then the feature-space edits (the evaluation's ``walks``, `dplase evaluate --walks`)
EVAL_WALKS = Registry("evaluation walk", {
    **{name: (entry.target, entry.info) for name, entry in WALKS.items()},
    # needs_correction: False: the edit itself needs none (its underlying walk may; `walk_for` rebuilds it)
    "masked": ("dplase.subspace:masked_edit", {"needs_correction": False, "needs_masks": True, "feature_edit": True}),
})


def is_feature_edit(kind: str) -> bool:
    """Whether the evaluation walk ``kind`` edits G1 features (images not G(z) of its latent), e.g. masked."""
    return bool(EVAL_WALKS[EVAL_WALKS.check(kind)]["feature_edit"])


def _latent_only(kind: str) -> None:
    """A clear error for a feature-space edit asked for as a latent walk."""
    if kind in EVAL_WALKS and is_feature_edit(kind):
        raise ValueError(
            f"'{kind}' is a feature-space edit, not a latent walk: it needs a DirectionSet with channel_masks "
            f"(DP-LaSE subspace: true); use walk_for(directions, '{kind}') for its latent (the DirectionSet's own "
            "walk) and dplase.subspace.masked_images for its images"
        )


def apply_walk(
    kind: str,
    z0: torch.Tensor,
    gamma: torch.Tensor,
    eps: torch.Tensor | float,
    correction: CorrectionFn | None = None,
) -> torch.Tensor:
    """Dispatch by latent walk name (see `WALKS`); ``correction`` is C for the walks that need one."""
    _latent_only(kind)
    walk = WALKS.load(kind)
    if not WALKS[kind]["needs_correction"]:
        return walk(z0, gamma, eps)
    if correction is None:
        raise ValueError(f"the {kind} walk needs a correction network C")
    return walk(z0, gamma, eps, correction)


def make_walk(kind: str, correction: CorrectionFn | None = None) -> WalkFn:
    """The latent walk named ``kind`` as a function ``(z0, gamma, eps) -> z`` (with C bound for the learned
    walk); a feature-space edit (masked) has no such function without a DirectionSet: ValueError."""
    _latent_only(kind)
    WALKS.check(kind)

    def walk(z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        return apply_walk(kind, z0, gamma, eps, correction)

    return walk


def walk_for(directions: DirectionSet, kind: str | None = None, device: str | torch.device = "cpu") -> WalkFn:
    """A function ``(z0, gamma, eps) -> z`` for a DirectionSet's walk (or the walk named by ``kind``).

    For the learned walk, the correction network stored in the DirectionSet is rebuilt on ``device``. For a
    feature-space edit (masked) it is the latent of the edit: the DirectionSet's own walk (ValueError when the
    set has no channel masks).
    """
    kind = EVAL_WALKS.check(kind or directions.walk)
    if EVAL_WALKS[kind]["needs_masks"] and getattr(directions, "channel_masks", None) is None:
        raise ValueError(
            f"walk '{kind}' needs channel masks, but this '{directions.method}' DirectionSet has none "
            "(fit DP-LaSE with subspace: true, or --param subspace=true)"
        )
    if is_feature_edit(kind):
        kind = directions.walk
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
    """The walks without a correction network (linear, norm) always; learned when the DirectionSet carries one;
    masked when it carries channel masks."""
    extra = getattr(directions, "extra", {}) or {}
    has_correction = "correction" in extra or any(str(k).startswith("correction.") for k in extra)
    has_masks = getattr(directions, "channel_masks", None) is not None
    return [name for name, entry in EVAL_WALKS.items()
            if (has_correction or not entry["needs_correction"]) and (has_masks or not entry["needs_masks"])]
