"""Image grids: sample sheets and traversal grids (rows = directions, columns = steps), written as PNG.

`traversal_images` renders a traversal grid (one seeded start latent walked along each direction over the
steps of `traversal_steps`) and `save_traversal_grid` writes it with its labels (``dplase traverse``); for a
generator with planted directions it can show the oracle's traversal of each row's matched factor beside it.

Without labels the PNG holds the pixels exactly (PIL, nearest upscaling only); with row/column labels or a
title, matplotlib draws the same pixel array with text around it. Both are written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dplase.artifacts import atomic_write

if TYPE_CHECKING:
    from dplase.directions import DirectionSet
    from dplase.generators.base import GeneratorAdapter
    from dplase.walks import WalkFn


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float NCHW -> uint8 NHWC (values outside the range are clipped)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be N x C x H x W with C in (1, 3), got shape {tuple(images.shape)}")
    x = images.detach().to("cpu", torch.float32).clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def grid_array(images: torch.Tensor, nrow: int, pad: int = 2, pad_value: int = 64, scale: int = 1) -> np.ndarray:
    """Tile images into one uint8 array (H x W x C); ``nrow`` images per row (torchvision's convention).

    ``scale`` repeats each pixel (nearest) so small images stay visible; empty cells stay ``pad_value``.
    """
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    tiles = _to_uint8(images)
    if scale > 1:
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = tiles.shape
    ncol = min(nrow, max(n, 1))
    nrows = max(math.ceil(n / nrow), 1)
    out = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        out[top : top + h, left : left + w] = tiles[i]
    return out


def save_image_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    nrow: int = 8,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    title: str | None = None,
    scale: int | None = None,
) -> Path:
    """Write images in [-1, 1] (N x C x H x W) as a PNG grid with ``nrow`` images per row.

    For a traversal grid pass the images row by row (direction-major), ``nrow`` = number of steps,
    ``row_labels`` = one per direction and ``col_labels`` = one per step. ``scale`` defaults to enough
    nearest-neighbour upscaling that each cell is at least 64 px wide.
    """
    n = images.shape[0]
    if n == 0:
        raise ValueError("no images to draw")
    nrows = math.ceil(n / nrow)
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"row_labels has {len(row_labels)} entries but the grid has {nrows} rows")
    if col_labels is not None and len(col_labels) != min(nrow, n):
        raise ValueError(f"col_labels has {len(col_labels)} entries but the grid has {min(nrow, n)} columns")
    scale, pad, cell = _geometry(images, scale)
    array = grid_array(images, nrow, pad=pad, scale=scale)
    path = Path(path)
    if row_labels is None and col_labels is None and title is None:
        return _save_plain(array, path)
    return _save_labelled(array, path, cell, pad, row_labels, col_labels, title)


def _geometry(images: torch.Tensor, scale: int | None = None) -> tuple[int, int, tuple[int, int]]:
    """(scale, pad, (cell height, cell width)) of a grid of ``images``: by default enough nearest-neighbour
    upscaling that each cell is at least 64 px wide, and a pad of 2 upscaled pixels."""
    if scale is None:
        scale = max(1, math.ceil(64 / images.shape[-1]))
    pad = 2 * scale
    return scale, pad, (images.shape[-2] * scale + pad, images.shape[-1] * scale + pad)


def _save_plain(array: np.ndarray, path: Path) -> Path:
    from PIL import Image

    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def _save_labelled(
    array: np.ndarray, path: Path, cell: tuple[int, int], pad: int,
    row_labels: list[str] | None, col_labels: list[str] | None, title: str | None,
    col_ticks: list[float] | None = None, right_labels: list[str] | None = None,
) -> Path:
    """Draw ``array`` with labels; ``col_ticks`` overrides the column label positions (pixels) and
    ``right_labels`` adds one label per row on the right (both only for side-by-side grids)."""
    # Figure + Agg canvas directly: no pyplot global state, works headless.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    height, width = array.shape[:2]
    left = 1.6 if row_labels else 0.1
    right = 1.6 if right_labels else 0.1  # 0.1: the plain grid's margin, so its PNG stays byte-identical
    top = (0.3 if col_labels else 0.05) + (0.3 if title else 0.0)
    fig = Figure(figsize=(width / dpi + left + right, height / dpi + top + 0.1), dpi=dpi)
    FigureCanvasAgg(fig)
    fig_w, fig_h = fig.get_size_inches()
    ax = fig.add_axes((left / fig_w, 0.1 / fig_h, (width / dpi) / fig_w, (height / dpi) / fig_h))
    shown = array[..., 0] if array.shape[-1] == 1 else array
    ax.imshow(shown, cmap="gray" if array.shape[-1] == 1 else None, vmin=0, vmax=255, interpolation="nearest")
    if col_ticks is None:
        col_ticks = [pad + cell[1] * i + (cell[1] - pad) / 2 for i in range(len(col_labels or []))]
    ax.set_xticks(col_ticks)
    ax.set_xticklabels(col_labels or [], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([pad + cell[0] * i + (cell[0] - pad) / 2 for i in range(len(row_labels or []))])
    ax.set_yticklabels(row_labels or [], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for i, label in enumerate(right_labels or []):
        ax.text(width - 0.5 + pad, pad + cell[0] * i + (cell[0] - pad) / 2, label, ha="left", va="center",
                fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / fig_h, va="top")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


# ------------------------------------------------------------------------------------------ traversals


def traversal_steps(n_steps: int, max_eps: float) -> torch.Tensor:
    """The columns of a traversal grid: `StepRange(max_eps).grid(n_steps)` (0 included) as a float32 tensor."""
    from dplase.walks.steps import StepRange

    return torch.as_tensor(StepRange(max_eps).grid(n_steps), dtype=torch.float32)


@torch.no_grad()
def traversal_images(
    generator: GeneratorAdapter, directions: DirectionSet, walk_fn: WalkFn, n_steps: int, max_eps: float,
    k: int | None = None, seed: int = 0, group: int | None = None,
) -> torch.Tensor:
    """Images of one seeded start latent walked along the first ``k`` directions (all by default) over
    `traversal_steps`, direction-major (CPU); with ``group``, only that subspace group's channels are edited."""
    from dplase.subspace import masked_edit

    eps = traversal_steps(n_steps, max_eps).to(generator.device)
    z0 = generator.sample_latents(1, seed).expand(eps.numel(), -1)
    images = []
    for j in range(min(k or directions.k, directions.k)):
        gamma = directions.directions[j].to(generator.device)
        if group is None:
            images.append(generator.generate(walk_fn(z0, gamma, eps)))
        else:
            mask = directions.channel_masks[j, group]
            images.append(masked_edit(generator, directions.layer, z0, gamma, eps, mask, walk_fn).cpu())
    return torch.cat(images)


def save_traversal_grid(
    path: str | os.PathLike, generator: GeneratorAdapter, directions: DirectionSet, walk_fn: WalkFn,
    n_steps: int, max_eps: float, k: int | None = None, seed: int = 0, group: int | None = None,
    walk: str | None = None, oracle: bool = False,
) -> tuple[Path, int, int]:
    """Render `traversal_images` and write them with direction/score row labels, step column labels and a
    title naming the method and ``walk`` (default: the DirectionSet's); returns (path, rows, columns).

    With ``oracle`` (a generator with planted directions), each row gets, to its right, the traversal of the
    planted direction it is matched to (`oracle_traversal_images`)."""
    eps = traversal_steps(n_steps, max_eps)
    images = traversal_images(generator, directions, walk_fn, n_steps, max_eps, k, seed, group)
    rows, cols = images.shape[0] // eps.numel(), eps.numel()
    row_labels = [f"{j} ({directions.scores[j]:.3g})" for j in range(rows)]
    col_labels = [f"{e:+.2g}" for e in eps.tolist()]
    title = f"{directions.method}, walk {walk or directions.walk}" + (f", group {group}" if group is not None else "")
    if oracle:
        truth, right_labels = oracle_traversal_images(generator, directions, walk_fn, eps, rows, seed)
        title += " | right: the matched planted direction (oracle), same start and steps"
        out = _save_side_by_side(images, truth, path, cols, row_labels, right_labels, col_labels, title)
        return out, rows, cols
    out = save_image_grid(images, path, nrow=cols, row_labels=row_labels, col_labels=col_labels, title=title)
    return out, rows, cols


# ------------------------------------------------------------------------------- planted ground truth


#: a direction's planted match: (planted direction, sign-aligned; factor name; |cos|)
Match = tuple[torch.Tensor, str, float]


def planted_matches(generator: GeneratorAdapter, directions: DirectionSet) -> list[Match | None]:
    """Per direction: (the planted direction of the factor it is matched to, sign-aligned with it; the factor's
    name; |cos|), or None where it is unmatched (K > F). The matching is the recovery metric's (Hungarian on
    |cos| over all K directions), so the grid shows what the metric scored."""
    from dplase.metrics.recovery import recovery_scores

    planted = generator.planted_directions().to(torch.float32)
    scores = recovery_scores(directions.directions, planted)
    out: list[Match | None] = [None] * directions.k
    for f, j in enumerate(scores["matched_direction"].tolist()):
        if j < 0:
            continue
        cos = float(directions.directions[j].double() @ planted[f].double())
        # flip a planted direction that points against its match, so both rows walk the same way
        out[j] = (planted[f] if cos >= 0 else -planted[f], generator.factor_names[f], abs(cos))
    return out


@torch.no_grad()
def oracle_traversal_images(
    generator: GeneratorAdapter, directions: DirectionSet, walk_fn: WalkFn, eps: torch.Tensor, rows: int,
    seed: int = 0,
) -> tuple[torch.Tensor, list[str]]:
    """The oracle's half of a traversal grid: for each of the first ``rows`` directions, the matched planted
    direction walked from the same seeded start latent over ``eps`` (the whole latent, also when the method's
    rows edit one channel group), or grey cells for an unmatched direction; with one label per row."""
    matches = planted_matches(generator, directions)
    steps = eps.to(generator.device)
    z0 = generator.sample_latents(1, seed).expand(steps.numel(), -1)
    shape = (steps.numel(), generator.channels, generator.image_size, generator.image_size)
    images, labels = [], []
    for match in matches[:rows]:
        if match is None:
            images.append(torch.zeros(shape))  # 0 in [-1, 1]: a mid-grey cell
            labels.append("no match")
            continue
        direction, factor, cos = match
        images.append(generator.generate(walk_fn(z0, direction.to(generator.device), steps)).cpu())
        labels.append(f"{factor} (|cos| {cos:.2f})")
    return torch.cat(images), labels


def _save_side_by_side(
    images: torch.Tensor, right_images: torch.Tensor, path: str | os.PathLike, cols: int, row_labels: list[str],
    right_labels: list[str], col_labels: list[str], title: str,
) -> Path:
    """Two grids of equal shape side by side (a white gap of half a cell between them), labelled like
    `save_image_grid` plus one label per row on the right."""
    scale, pad, (cell_h, cell_w) = _geometry(images)
    left, right = grid_array(images, cols, pad=pad, scale=scale), grid_array(right_images, cols, pad=pad, scale=scale)
    gap = np.full((left.shape[0], cell_w // 2, left.shape[2]), 255, dtype=np.uint8)
    array = np.concatenate([left, gap, right], axis=1)
    ticks = [pad + cell_w * i + (cell_w - pad) / 2 for i in range(cols)]
    ticks += [t + left.shape[1] + gap.shape[1] for t in ticks]
    return _save_labelled(array, Path(path), (cell_h, cell_w), pad, row_labels, col_labels * 2, title,
                          col_ticks=ticks, right_labels=right_labels)
