"""One direction's traversal unmasked and masked side by side (the evaluation walk ``masked``).

Rows come in pairs, one pair per seeded start latent: the direction's own walk G(z_walk), then the masked edit
G2(M_k * G1(z_walk) + (1 - M_k) * G1(z0)) from the same start over the same steps; columns are the steps of
`dplase.plots.grids.traversal_steps` (0 included, where both rows show the start image). The group k is chosen by
the evaluation's rule (`dplase.subspace.choose_group`) over this figure's start latents and non-zero steps,
unless one is given. ``dplase traverse --masked J`` draws it; the workflow's traversal job writes it beside the
traversal grid (``traversal.masked.png``) for runs whose directions carry channel masks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dplase.plots.grids import save_image_grid, traversal_steps

if TYPE_CHECKING:
    from dplase.directions import DirectionSet
    from dplase.generators.base import GeneratorAdapter
    from dplase.walks import WalkFn


def _check(directions: DirectionSet, direction: int, group: int | None) -> None:
    if directions.channel_masks is None:
        raise ValueError("the masked traversal needs channel masks; discover with DP-LaSE subspace: true first")
    if not 0 <= direction < directions.k:
        raise ValueError(f"direction must be in 0..{directions.k - 1}, got {direction}")
    groups = directions.channel_masks.shape[1]
    if group is not None and not 0 <= group < groups:
        raise ValueError(f"group must be < {groups} (number of subspace groups), got {group}")


@torch.no_grad()
def masked_traversal_images(
    generator: GeneratorAdapter, directions: DirectionSet, walk_fn: WalkFn, direction: int, n_steps: int,
    max_eps: float, n_starts: int = 3, seed: int = 0, group: int | None = None,
) -> tuple[torch.Tensor, int, float]:
    """Images (CPU) of ``n_starts`` seeded start latents walked along one direction, per start the unmasked row
    then the masked row, each over `traversal_steps`; with the group used and its share of the G1 change."""
    from dplase.subspace import channel_change, choose_group, group_shares, masked_images

    _check(directions, direction, group)
    eps = traversal_steps(n_steps, max_eps).to(generator.device)
    z0 = generator.sample_latents(n_starts, seed)
    gamma = directions.directions[direction].to(generator.device)
    layer = directions.layer or generator.default_layer()
    masks = directions.channel_masks[direction]
    change = channel_change(generator, layer, z0, gamma, [e for e in eps.tolist() if e != 0], walk_fn)
    if group is None:
        group, share = choose_group(masks, change)
    else:
        share = float(group_shares(masks, change)[group])
    rows = []
    for s in range(n_starts):
        zw = walk_fn(z0[s : s + 1].expand(eps.numel(), -1), gamma, eps)
        rows.append(generator.generate(zw))
        rows.append(masked_images(generator, layer, z0[s : s + 1], zw, masks[group])[0])
    return torch.cat(rows), group, share


def save_masked_traversal(
    path: str | os.PathLike, generator: GeneratorAdapter, directions: DirectionSet, walk_fn: WalkFn,
    direction: int, n_steps: int, max_eps: float, n_starts: int = 3, seed: int = 0, group: int | None = None,
    walk: str | None = None,
) -> tuple[Path, int, float]:
    """Write `masked_traversal_images` with row labels (start, unmasked / masked), step column labels and a
    title naming the method, direction, walk, group and its share; returns (path, group, share)."""
    eps = traversal_steps(n_steps, max_eps)
    images, group, share = masked_traversal_images(generator, directions, walk_fn, direction, n_steps, max_eps,
                                                   n_starts, seed, group)
    groups = directions.channel_masks.shape[1]
    row_labels = [f"z{s} {kind}" for s in range(n_starts) for kind in ("unmasked", f"masked g{group}")]
    col_labels = [f"{e:+.2g}" for e in eps.tolist()]
    title = (f"{directions.method} dir {direction}, {walk or directions.walk} walk: masked = group {group}/{groups} "
             f"({share:.0%} of ΔG1)")
    out = save_image_grid(images, path, nrow=eps.numel(), row_labels=row_labels, col_labels=col_labels, title=title)
    return out, group, share
