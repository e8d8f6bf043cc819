"""Vectorised, anti-aliased sprite rendering (dSprites-style square, ellipse and heart) in torch.

Every shape is a signed distance function (SDF) in the sprite's own frame: negative inside, in units of the
sprite's half-size. A pixel's coverage is the share of it inside the shape, approximated from the distance
at its centre as clamp(0.5 - d_px, 0, 1), which anti-aliases edges without supersampling.

Image coordinates are normalised to [-1, 1] across the frame (x right, y down like rows); the sprite's own
frame has y up, so a positive orientation turns the sprite counter-clockwise on screen.
"""

from __future__ import annotations

import math

import torch

SHAPES = ("square", "ellipse", "heart")

#: half-size of a scale-1 sprite, as a fraction of half the image width (a scale-1 square is ~30% of the
#: frame wide, as in dSprites)
SPRITE_HALF_SIZE = 0.3
#: ellipse semi-axes in sprite units (2:1-ish oval, so orientation is visible)
ELLIPSE_AXES = (1.4, 0.75)
#: heart = a diamond (square turned 45°) of half-diagonal HEART_H plus two discs on its upper sides
HEART_H = 1.0
#: the largest distance from the sprite centre to its outline over all shapes (the square's corner, √2),
#: so a sprite never leaves the frame at any position or orientation
SPRITE_RADIUS = math.sqrt(2.0)
#: images are rendered in chunks so intermediates stay in cache-sized blocks (~256 x 64 x 64 floats)
CHUNK_PIXELS = 256 * 64 * 64


def position_range(image_size: int) -> float:
    """Largest |centre| (normalised) that keeps a scale-1 sprite, plus one pixel of edge, inside the frame."""
    return 1.0 - SPRITE_HALF_SIZE * SPRITE_RADIUS - 2.0 / image_size


def _pixel_centres(image_size: int) -> torch.Tensor:
    return (torch.arange(image_size, dtype=torch.float64) + 0.5) * (2.0 / image_size) - 1.0


def _sdf_square(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact SDF of the square [-1, 1]^2 (symmetric in x <-> y, hence the 90° symmetry of the render)."""
    qx = x.abs_().sub_(1.0)
    qy = y.abs_().sub_(1.0)
    inside = torch.maximum(qx, qy).clamp_(max=0.0)
    outside = torch.hypot(qx.clamp_(min=0.0), qy.clamp_(min=0.0))
    return outside.add_(inside)


def _sdf_ellipse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """First-order SDF of the ellipse with semi-axes ELLIPSE_AXES; ``x, y`` arrive pre-divided by the axes.

    With g = |p / r| - 1, the distance is g / |grad g| = k0 (k0 - 1) / k1, k0 = |p / r|, k1 = |p / r^2|:
    exact on the outline, which is where coverage needs it.
    """
    a, b = ELLIPSE_AXES
    k0 = torch.hypot(x, y)
    k1 = torch.hypot(x.mul_(1.0 / a), y.mul_(1.0 / b)).clamp_(min=1e-6)
    return k0.sub(1.0).mul_(k0).div_(k1)


def _sdf_heart(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SDF of a heart: union (min) of a diamond and two discs centred on the diamond's upper sides.

    The heart is mirror-symmetric, so one disc on |x| suffices. ``y`` arrives shifted so the heart's bounding
    box is centred on the origin.
    """
    h = HEART_H
    r = h / math.sqrt(2.0)  # disc radius = half the diamond's side
    ax = x.abs_()
    # diamond: the square of half-side r in coordinates turned by 45°
    u = (ax + y).mul_(1.0 / math.sqrt(2.0))
    w = (y - ax).mul_(1.0 / math.sqrt(2.0))
    diamond = _sdf_square(u.mul_(1.0 / r), w.mul_(1.0 / r)).mul_(r)
    disc = torch.hypot(ax.sub_(h / 2), y.sub_(h / 2)).sub_(r)
    return torch.minimum(diamond, disc)


#: vertical shift that centres the heart's bounding box (from -h to h/2 + r) on the origin
_HEART_SHIFT = (HEART_H / 2 + HEART_H / math.sqrt(2.0) - HEART_H) / 2


def sprite_distance(
    shape: torch.Tensor,
    scale: torch.Tensor,
    orientation: torch.Tensor,
    centre_x: torch.Tensor,
    centre_y: torch.Tensor,
    image_size: int,
) -> torch.Tensor:
    """Signed distance in pixels (negative inside) of each sprite at each pixel centre: (B, H, W) float32.

    ``shape`` holds codes into SHAPES; ``scale`` multiplies SPRITE_HALF_SIZE; ``orientation`` is in radians;
    ``centre_x``/``centre_y`` are normalised image coordinates in [-1, 1] (x right, y down like rows); the
    sprite's own frame has y up.
    """
    n = shape.shape[0]
    out = torch.empty(n, image_size, image_size, dtype=torch.float32)
    grid = _pixel_centres(image_size)
    half = scale.to(torch.float64) * SPRITE_HALF_SIZE  # sprite unit in normalised image coordinates
    cos = torch.cos(orientation.to(torch.float64))
    sin = torch.sin(orientation.to(torch.float64))
    u = grid[None, :] - centre_x.to(torch.float64)[:, None]  # (B, W): x of each column
    v = centre_y.to(torch.float64)[:, None] - grid[None, :]  # (B, H): height of each row above the centre
    # the rotation is separable: x_local = (cos*u + sin*v)/half, y_local = (-sin*u + cos*v)/half
    xu = (cos / half)[:, None] * u
    xv = (sin / half)[:, None] * v
    yu = (-sin / half)[:, None] * u
    yv = (cos / half)[:, None] * v
    px_per_unit = half * (image_size / 2.0)  # sprite units -> pixels
    axis_scale = {0: (1.0, 1.0, 0.0), 1: (1.0 / ELLIPSE_AXES[0], 1.0 / ELLIPSE_AXES[1], 0.0), 2: (1.0, 1.0, 1.0)}
    for code, sdf in enumerate((_sdf_square, _sdf_ellipse, _sdf_heart)):
        members = (shape == code).nonzero().flatten()
        if members.numel() == 0:
            continue
        sx, sy, heart = axis_scale[code]
        step = max(1, CHUNK_PIXELS // (image_size * image_size))
        for start in range(0, members.numel(), step):
            sel = members[start : start + step]
            x = (xu[sel] * sx).float()[:, None, :] + (xv[sel] * sx).float()[:, :, None]
            yv_sel = yv[sel] + heart * _HEART_SHIFT  # centres the heart's bounding box on the sprite centre
            y = (yu[sel] * sy).float()[:, None, :] + (yv_sel * sy).float()[:, :, None]
            dist = sdf(x, y)
            out[sel] = dist.mul_(px_per_unit[sel].float()[:, None, None])
    return out


def coverage_from_distance(dist_px: torch.Tensor) -> torch.Tensor:
    """Pixel coverage in [0, 1] from the signed distance in pixels (box-filter approximation)."""
    return dist_px.neg().add_(0.5).clamp_(0.0, 1.0)


def hsv_to_rgb(hue: torch.Tensor, saturation: float, value: float) -> torch.Tensor:
    """RGB in [0, 1] (N, 3) of hues in [0, 1) at a fixed saturation and value."""
    h6 = hue.to(torch.float64)[:, None] * 6.0
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64)[None, :] + h6) % 6.0
    # standard piecewise-linear HSV ramp: each channel falls off on one sextant of the hue circle
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return (value - value * saturation * ramp).float()
