"""The planted generator: a differentiable sprite renderer whose interpretable latent directions are known.

A simulation with known parameters, to check every method and metric against the truth:

- **Planted directions.** A seeded random orthonormal Q (z_dim x z_dim, no entry of a planted row above
  `MAX_AXIS_COSINE` in magnitude, so no planted direction is close to a coordinate axis). Factor i is a smooth
  monotone function of the coordinate u_i = q_i . z / sigma (sigma: the prior's per-coordinate standard
  deviation): t_i = 2 Phi(g_i u_i) - 1 in (-1, 1), with Phi the standard normal CDF and g_i the factor's gain,
  mapped linearly to the factor's range (`FACTOR_RANGES`). The other z_dim - F rows of Q are null directions:
  no factor depends on them.
- **Gains** (`DEFAULT_GAINS`, descending in `FACTORS` order) set how fast each factor changes per unit step
  (the slope of t_i at u_i = 0 is g_i sqrt(2 / pi)), so a variance-based method has an order to find.
- **Levels.** The first latent-projecting layer is h = W z (`latent_projection_weight`, R x z_dim). ``aligned``:
  W = E diag(g) Q_F / sigma, where E repeats factor i's row n_i times (n_i = F for the largest gain down to 1
  for the smallest, R = F (F + 1) / 2), so the principal directions of W are the planted ones, in gain order,
  with distinct eigenvalues even after SeFa scales every row to unit norm (then they are n_i): SeFa is right
  by construction. ``mixed``: W = M E diag(g) Q_F / sigma with a seeded non-orthogonal, well-conditioned
  M (R x R, singular values in [0.5, 2]); the renderer undoes M and averages each factor's rows, so the factors
  are still functions of q_i . z, but W's principal directions are mixtures of the planted ones.
- **Density effect.** The image's contrast is its ``fidelity`` = exp(-delta^2 / 8), delta the prior's
  log-density of z relative to its typical value, in standard deviations of log p0 under the prior (from a
  seeded prior sample): 0.88 at 1 sd, 0.61 at 2 sd, 0.32 at 3 sd, 0 outside a bounded prior's support. Every
  direction, null ones included, lowers fidelity when a walk leaves the typical set; a walk that keeps log p0
  fixed keeps it. This is the paper's premise in a known form.
- **Rendering.** The sprites of `dplase.data.shapes` (same sizes, ellipse axes, heart), with the shape a blend
  of signed distance functions (b = 0 square, 1 ellipse, 2 heart, linear in between) and a soft rasteriser
  (a sigmoid of the signed distance in pixels), so the image is differentiable in z everywhere.

Split points: ``factors`` (the vector [t_1..t_F, fidelity]) and ``render`` (2 maps: the sprite's inside-ness in
pixels and the fidelity). No training: `build_planted` makes the generator from its config.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dplase.data.render import _HEART_SHIFT, ELLIPSE_AXES, HEART_H, SPRITE_HALF_SIZE, position_range
from dplase.generators.base import NetworkAdapter
from dplase.priors import make_prior, prior_from_config

#: the planted factors, in the order of their directions (rows of Q)
FACTORS = ("pos_x", "pos_y", "scale", "orientation", "shape")
#: gains g_i of the factors (slope of t_i = 2 Phi(g_i u_i) - 1), one per factor of FACTORS
DEFAULT_GAINS = (1.6, 1.4, 1.2, 1.0, 0.8)
#: factor -> (value at t = -1, value at t = +1); positions are filled in per image size
FACTOR_RANGES = {"scale": (0.5, 1.0), "orientation": (-math.pi / 4, math.pi / 4), "shape": (0.0, 2.0)}
LEVELS = ("aligned", "mixed")
#: no planted direction has a coordinate larger than this in magnitude (Q is redrawn until none does)
MAX_AXIS_COSINE = 0.8
#: soft-rasteriser edge width in pixels (alpha = sigmoid(inside_px / EDGE_PX))
EDGE_PX = 0.5
#: prior samples for the typical log-density and its spread
TYPICAL_SAMPLES = 8192


def planted_basis(z_dim: int, n_factors: int, seed: int) -> torch.Tensor:
    """A seeded orthonormal z_dim x z_dim matrix whose first ``n_factors`` rows are far from every axis."""
    for attempt in range(1000):
        gen = torch.Generator().manual_seed(int(seed) * 7_919 + attempt)
        q, r = torch.linalg.qr(torch.randn(z_dim, z_dim, generator=gen, dtype=torch.float64))
        q = (q * torch.sign(torch.diagonal(r))[None, :]).T  # rows; sign-fixed, so reproducible
        if n_factors == 0 or q[:n_factors].abs().max() <= MAX_AXIS_COSINE:
            return q.float().contiguous()
    raise RuntimeError(f"no basis with planted rows below {MAX_AXIS_COSINE} in 1000 draws (z_dim={z_dim})")


def mixing_matrix(n: int, seed: int) -> torch.Tensor:
    """A seeded non-orthogonal n x n matrix U diag(s) V^T, singular values spread over [0.5, 2]."""
    gen = torch.Generator().manual_seed(int(seed) * 7_919 + 104_729)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    s = torch.logspace(math.log10(2.0), math.log10(0.5), n, dtype=torch.float64) if n > 1 else torch.ones(1)
    return (u @ torch.diag(s.double()) @ v.T).float()


def row_repeats(gains: Sequence[float]) -> torch.Tensor:
    """E (R x F): factor i's row repeated n_i times, n_i = F for the largest gain down to 1 (ties by order)."""
    order = sorted(range(len(gains)), key=lambda i: -gains[i])
    counts = {i: len(gains) - rank for rank, i in enumerate(order)}
    rows = [i for i in range(len(gains)) for _ in range(counts[i])]
    return torch.nn.functional.one_hot(torch.tensor(rows), len(gains)).float()


class PlantedConfigError(ValueError):
    """A planted generator that cannot exist; ``option`` names the offending option."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def check_planted_config(z_dim: int, factors: Sequence[str], gains: Sequence[float], level: str) -> None:
    """Clear errors (`PlantedConfigError`, naming the option) for a planted generator that cannot exist."""
    unknown = [f for f in factors if f not in FACTORS]
    if unknown:
        raise PlantedConfigError("factors", f"unknown planted factor(s) {', '.join(map(str, unknown))}; "
                                            f"choose from {', '.join(FACTORS)}")
    if len(set(factors)) != len(factors) or not factors:
        raise PlantedConfigError("factors", f"planted factors must be distinct and at least one, got {list(factors)}")
    if z_dim < len(factors):
        raise PlantedConfigError("z_dim", f"z_dim={z_dim} is smaller than the {len(factors)} planted factors")
    if len(gains) != len(factors) or not all(isinstance(g, int | float) and g > 0 and math.isfinite(g)
                                             for g in gains):
        raise PlantedConfigError("gains", f"need one positive gain per planted factor ({len(factors)}), "
                                          f"got {list(gains)}")
    if level not in LEVELS:
        raise PlantedConfigError("level", f"unknown planted level '{level}'; choose one of {', '.join(LEVELS)}")


class PlantedGenerator(nn.Module):
    """z -> [factors] -> [render maps] -> image; every constant is a buffer, so a checkpoint carries it."""

    def __init__(self, z_dim: int = 16, image_size: int = 64, channels: int = 1, seed: int = 0,
                 level: str = "aligned", factors: Sequence[str] = FACTORS, gains: Sequence[float] | None = None,
                 prior: dict[str, Any] | None = None) -> None:
        super().__init__()
        factors = tuple(factors)
        gains = tuple(float(g) for g in (gains if gains is not None else DEFAULT_GAINS[: len(factors)]))
        check_planted_config(z_dim, factors, gains, level)
        if image_size not in (32, 64) or channels not in (1, 3):
            raise ValueError(f"planted images are 32 or 64 px with 1 or 3 channels, got {image_size}, {channels}")
        self.z_dim, self.image_size, self.channels = z_dim, image_size, channels
        self.level, self.factor_names, self.gains = level, factors, gains
        prior_obj = prior_from_config(prior) if prior else make_prior("gaussian", z_dim)
        q = planted_basis(z_dim, len(factors), seed)
        sample = prior_obj.sample(TYPICAL_SAMPLES, int(seed) + 31_337).double()
        sigma = float(sample.std(0).mean())
        expand = row_repeats(gains)
        mixing = mixing_matrix(len(expand), seed) if level == "mixed" else torch.eye(len(expand))
        log_p = prior_obj.log_prob(sample.float()).double()
        self.register_buffer("basis", q)
        self.register_buffer("gain", torch.tensor(gains))
        # M^-1, then each factor's mean row: the map from h back to diag(g) Q_F z / sigma
        unmix = torch.linalg.pinv(expand.double()) @ torch.linalg.inv(mixing.double())
        self.register_buffer("unmix", unmix.float())
        self.project = nn.Linear(z_dim, len(expand), bias=False)
        self.project.weight.requires_grad_(False)
        with torch.no_grad():  # W = M E diag(g) Q_F / sigma
            self.project.weight.copy_(mixing @ expand @ torch.diag(self.gain) @ q[: len(factors)] / sigma)
        self.register_buffer("logp_typical", log_p.mean().float())
        self.register_buffer("logp_spread", log_p.std().clamp_min(1e-6).float())
        self.register_buffer("colour", _object_colour(channels, seed))
        self.prior = prior_obj

    @property
    def layer_names(self) -> list[str]:
        return ["factors", "render"]

    def planted_directions(self) -> torch.Tensor:
        """The planted directions q_i (F x z_dim, orthonormal rows), in `factor_names` order."""
        return self.basis[: len(self.factor_names)]

    def fidelity(self, z: torch.Tensor) -> torch.Tensor:
        """exp(-delta^2 / 8), delta = (log p0(z) - typical) / spread; 0 outside the prior's support."""
        delta = (self.prior.log_prob(z) - self.logp_typical) / self.logp_spread
        return torch.exp(-delta.pow(2) / 8).nan_to_num(0.0)

    def factor_codes(self, z: torch.Tensor) -> torch.Tensor:
        """t_i = 2 Phi(g_i u_i) - 1 per planted factor (N x F), from the first layer's output."""
        h = self.project(z) @ self.unmix.T  # = diag(g) Q_F z / sigma at both levels
        return torch.special.ndtr(h) * 2 - 1

    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        f = torch.cat([self.factor_codes(z), self.fidelity(z)[:, None]], dim=1)
        return f if layer == "factors" else self.render_maps(f)

    def factor_values(self, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Physical factor values from the codes t (N x F); factors that are not planted sit at their middle."""
        ranges = factor_ranges(self.image_size)
        out = {}
        for name in FACTORS:
            lo, hi = ranges[name]
            t = codes[:, self.factor_names.index(name)] if name in self.factor_names else codes.new_zeros(len(codes))
            out[name] = lo + (hi - lo) * (t + 1) / 2
        return out

    def render_maps(self, f: torch.Tensor) -> torch.Tensor:
        """(N x 2 x S x S): the sprite's inside-ness in pixels (minus its signed distance), and the fidelity."""
        v = self.factor_values(f[:, :-1])
        inside = -blended_distance(v, self.image_size)
        fidelity = f[:, -1, None, None].expand(-1, self.image_size, self.image_size)
        return torch.stack([inside, fidelity], dim=1)

    def from_features(self, f: torch.Tensor, layer: str) -> torch.Tensor:
        maps = self.render_maps(f) if layer == "factors" else f
        ink = torch.sigmoid(maps[:, :1] / EDGE_PX) * maps[:, 1:2]  # coverage times contrast
        return ink * self.colour[None, :, None, None] * 2 - 1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features(z, "factors"), "factors")


def factor_ranges(image_size: int) -> dict[str, tuple[float, float]]:
    """Every planted factor's (value at t = -1, value at t = +1) at ``image_size`` (positions in normalised
    image coordinates, symmetric about the centre)."""
    p = position_range(image_size)
    return {**FACTOR_RANGES, "pos_x": (-p, p), "pos_y": (-p, p)}


def _object_colour(channels: int, seed: int) -> torch.Tensor:
    """White for grayscale; a seeded saturated colour (value 1) for RGB."""
    if channels == 1:
        return torch.ones(1)
    from dplase.data.render import hsv_to_rgb

    hue = torch.rand(1, generator=torch.Generator().manual_seed(int(seed) + 271))
    return hsv_to_rgb(hue, 0.8, 1.0)[0]


# ------------------------------------------------------------------------------ differentiable sprites


def _norm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sqrt(a^2 + b^2) with a finite gradient at 0 (torch.hypot's is 0/0 there, which poisons backward)."""
    return torch.sqrt(a * a + b * b + 1e-12)


def _box(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SDF of the square [-1, 1]^2 (out of place, so autograd sees it)."""
    qx, qy = x.abs() - 1, y.abs() - 1
    return _norm(qx.clamp(min=0), qy.clamp(min=0)) + torch.maximum(qx, qy).clamp(max=0)


def _ellipse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """First-order SDF of the ellipse with semi-axes ELLIPSE_AXES (exact on the outline)."""
    a, b = ELLIPSE_AXES
    k0 = _norm(x / a, y / b)
    k1 = _norm(x / a**2, y / b**2).clamp(min=1e-6)
    return k0 * (k0 - 1) / k1


def _heart(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SDF of the heart of `dplase.data.render`: a diamond plus two discs on its upper sides."""
    h, r = HEART_H, HEART_H / math.sqrt(2.0)
    y = y + _HEART_SHIFT
    ax = x.abs()
    diamond = _box((ax + y) / (math.sqrt(2.0) * r), (y - ax) / (math.sqrt(2.0) * r)) * r
    disc = _norm(ax - h / 2, y - h / 2) - r
    return torch.minimum(diamond, disc)


def blended_distance(v: dict[str, torch.Tensor], image_size: int) -> torch.Tensor:
    """Signed distance in pixels (N x S x S) of each sprite: the SDFs of square, ellipse and heart blended
    linearly by the shape value b (0, 1, 2), in the sprite's frame (y up, positive orientation turns it
    counter-clockwise), with the sizes of `dplase.data.render`."""
    grid = (torch.arange(image_size, dtype=v["scale"].dtype, device=v["scale"].device) + 0.5) * (2 / image_size) - 1
    half = (v["scale"] * SPRITE_HALF_SIZE)[:, None, None]
    u = grid[None, None, :] - v["pos_x"][:, None, None]  # x right
    w = v["pos_y"][:, None, None] - grid[None, :, None]  # height above the centre (rows go down)
    cos, sin = torch.cos(v["orientation"])[:, None, None], torch.sin(v["orientation"])[:, None, None]
    x, y = (cos * u + sin * w) / half, (cos * w - sin * u) / half
    b = v["shape"][:, None, None]
    weights = ((1 - b).clamp(min=0), 1 - (b - 1).abs(), (b - 1).clamp(min=0))
    sdf = sum(wt * shape(x, y) for wt, shape in zip(weights, (_box, _ellipse, _heart), strict=True))
    return sdf * half * (image_size / 2)


# ------------------------------------------------------------------------------------------------- adapter


class PlantedAdapter(NetworkAdapter):
    """The planted generator behind the adapter protocol, plus what only it knows: its directions and the exact
    factors of every latent."""

    network = PlantedGenerator
    family = "planted"

    @property
    def factor_names(self) -> tuple[str, ...]:
        return self.net.factor_names

    def planted_directions(self) -> torch.Tensor:
        """The planted directions (F x z_dim, orthonormal rows, `factor_names` order), on CPU."""
        return self.net.planted_directions().detach().cpu()

    @torch.no_grad()
    def exact_factors(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The true factor values of G(z) (every factor of FACTORS, and ``fidelity``), on CPU."""
        f = self.net.features(z.to(self.device), "factors")
        values = self.net.factor_values(f[:, :-1])
        return {**{k: v.cpu() for k, v in values.items()}, "fidelity": f[:, -1].cpu()}

    @torch.no_grad()
    def exact_factors_from_features(self, f: torch.Tensor, layer: str) -> dict[str, torch.Tensor] | None:
        """The true factor values of G2(f) for features ``f`` at ``layer`` (a feature-space edit such as the
        masked walk's), where the features determine them: at ``factors`` they are the codes and fidelity
        themselves; None at ``render`` (sprite maps, no inverse)."""
        if self.check_layer(layer) != "factors":
            return None
        f = f.to(self.device)
        values = self.net.factor_values(f[:, :-1])
        return {**{k: v.cpu() for k, v in values.items()}, "fidelity": f[:, -1].cpu()}


def build_planted(z_dim: int = 16, image_size: int = 64, channels: int = 1, seed: int = 0, level: str = "aligned",
                  factors: Sequence[str] = FACTORS, gains: Sequence[float] | None = None,
                  prior: str = "gaussian", device: str | torch.device = "cpu") -> PlantedAdapter:
    """A planted generator from its config (no training: every constant is a pure function of the seed)."""
    arch = planted_arch(z_dim, image_size, channels, seed, level, factors, gains, prior)
    return PlantedAdapter(PlantedGenerator(**arch), prior_from_config(arch["prior"]), device=device)


def planted_arch(z_dim: int = 16, image_size: int = 64, channels: int = 1, seed: int = 0, level: str = "aligned",
                 factors: Sequence[str] = FACTORS, gains: Sequence[float] | None = None,
                 prior: str = "gaussian") -> dict[str, Any]:
    """The JSON-able architecture of a planted generator (what its checkpoint records as ``arch``)."""
    factors = list(factors)
    gains = list(gains) if gains is not None else list(DEFAULT_GAINS[: len(factors)])
    check_planted_config(z_dim, factors, gains, level)
    return {"z_dim": z_dim, "image_size": image_size, "channels": channels, "seed": seed, "level": level,
            "factors": factors, "gains": [float(g) for g in gains],
            "prior": make_prior(prior, z_dim).to_config()}


def save_planted(path: str | os.PathLike, name: str | None = None, **config: Any) -> Path:
    """Write a planted generator (``config``: `planted_arch` arguments) as a generator checkpoint of family
    "planted", loadable with `dplase.generators.load_generator` like any other."""
    from dplase.generators.registry import save_generator

    arch = planted_arch(**config)
    net = PlantedGenerator(**arch)
    meta = {"name": name or Path(path).stem, "config": arch, "dataset": None, "seed": arch["seed"], "steps": 0,
            "trainer": "none: dplase.generators.planted (a planted generator is built, not trained)"}
    return save_generator(path, net, "planted", arch, arch["prior"], meta)
