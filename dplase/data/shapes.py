"""Procedural dSprites-style datasets: `shapes` (grayscale) and `color_shapes` (RGB with two hue factors).

Every item is one combination of the factor values; index -> combination by mixed radix (the last factor
varies fastest), so `get` needs no stored images and `len` is the product of the factor sizes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from dplase.data.base import FactorSpec, ImageDataset, check_image_size, mixed_radix_digits
from dplase.data.render import SHAPES, coverage_from_distance, hsv_to_rgb, position_range, sprite_distance

SHAPES_IMAGE_SIZES = (32, 64)
N_SCALES = 6
N_ORIENTATIONS = 40
N_POSITIONS = 32
#: colour variant: object hues evenly spaced on the hue circle, background hues offset between them
N_OBJECT_HUES = 8
N_BACKGROUND_HUES = 4
#: bright saturated objects on dark muted backgrounds: the value gap keeps contrast even for equal hues
OBJECT_SV = (0.75, 1.0)
BACKGROUND_SV = (0.5, 0.3)
#: rotational symmetry (fold) of each sprite in `render`'s geometry: the square's SDF is symmetric under
#: x <-> y and sign flips (90°), the ellipse (unequal axes) under (x, y) -> (-x, -y) (180°); the heart is only
#: mirror-symmetric, which is no rotation (360°). Its orientation is identifiable modulo 2π / fold.
SHAPE_SYMMETRY = {"square": 4, "ellipse": 2, "heart": 1}


def sprite_factor_specs() -> list[FactorSpec]:
    """The five dSprites factors. Positions are in [0, 1] across the allowed range of centres (left/top to
    right/bottom); orientation in radians over [0, 2π), identifiable modulo 2π / SHAPE_SYMMETRY[shape]."""
    last_angle = 2 * math.pi * (N_ORIENTATIONS - 1) / N_ORIENTATIONS
    return [
        FactorSpec("shape", "categorical", 0, len(SHAPES) - 1, len(SHAPES), SHAPES),
        FactorSpec("scale", "continuous", 0.5, 1.0, N_SCALES),
        FactorSpec("orientation", "continuous", 0.0, last_angle, N_ORIENTATIONS, period=2 * math.pi,
                   symmetry_by="shape", symmetries=tuple(SHAPE_SYMMETRY[name] for name in SHAPES)),
        FactorSpec("pos_x", "continuous", 0.0, 1.0, N_POSITIONS),
        FactorSpec("pos_y", "continuous", 0.0, 1.0, N_POSITIONS),
    ]


def hue_labels(n: int, offset: float = 0.0) -> tuple[str, ...]:
    """Labels such as 'hue 45°' for ``n`` evenly spaced hues starting at ``offset`` (a fraction of the circle)."""
    return tuple(f"hue {round(360 * (offset + k / n)) % 360}°" for k in range(n))


class ShapesDataset(ImageDataset):
    """dSprites-style grayscale sprites (white on black): shape x scale x orientation x pos_x x pos_y.

    Items are rendered on demand, vectorised over the batch. ``seed`` only sets the default seed of `sample`
    (rendering involves no randomness).
    """

    def __init__(self, image_size: int = 64, seed: int = 0, name: str = "shapes") -> None:
        self.name = name
        self.image_size = check_image_size(name, image_size, SHAPES_IMAGE_SIZES)
        self.seed = int(seed)
        self.channels = 1
        self.factor_specs = sprite_factor_specs()

    def _radices(self) -> list[int]:
        return [int(spec.n_values) for spec in self.factor_specs]

    def _length(self) -> int:
        return int(np.prod(self._radices()))

    def _codes(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        digits = mixed_radix_digits(indices, self._radices())
        return {spec.name: d for spec, d in zip(self.factor_specs, digits, strict=True)}

    def _values(self, codes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Factor values (float64) from codes; categorical factors keep their codes."""
        values = {}
        for spec in self.factor_specs:
            code = codes[spec.name]
            if spec.kind == "categorical":
                values[spec.name] = code
            else:
                values[spec.name] = spec.low + code.to(torch.float64) * (spec.high - spec.low) / (spec.n_values - 1)
        return values

    def _distance(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        reach = position_range(self.image_size)
        centre_x = (values["pos_x"] * 2 - 1) * reach
        centre_y = (values["pos_y"] * 2 - 1) * reach  # pos_y grows downwards like image rows
        return sprite_distance(
            values["shape"], values["scale"], values["orientation"], centre_x, centre_y, self.image_size
        )

    def _frame(self, values: dict[str, torch.Tensor]) -> pd.DataFrame:
        columns = {}
        for spec in self.factor_specs:
            col = values[spec.name].numpy()
            columns[spec.name] = col.astype(np.int64) if spec.kind == "categorical" else col.astype(np.float64)
        return pd.DataFrame(columns)

    def _get(self, indices: torch.Tensor) -> tuple[torch.Tensor, pd.DataFrame]:
        values = self._values(self._codes(indices))
        dist = self._distance(values)
        # 2 * clamp(0.5 - d, 0, 1) - 1 = clamp(-2 d, -1, 1): white object (+1) on black (-1)
        images = dist.mul_(-2.0).clamp_(-1.0, 1.0).unsqueeze(1)
        return images, self._frame(values)


class ColorShapesDataset(ShapesDataset):
    """The sprites in RGB with two more categorical factors: object hue and background hue."""

    def __init__(self, image_size: int = 64, seed: int = 0, name: str = "color_shapes") -> None:
        super().__init__(image_size=image_size, seed=seed, name=name)
        self.channels = 3
        self.factor_specs = [
            *sprite_factor_specs(),
            FactorSpec("object_hue", "categorical", 0, N_OBJECT_HUES - 1, N_OBJECT_HUES, hue_labels(N_OBJECT_HUES)),
            FactorSpec(
                "background_hue",
                "categorical",
                0,
                N_BACKGROUND_HUES - 1,
                N_BACKGROUND_HUES,
                hue_labels(N_BACKGROUND_HUES, offset=1 / (2 * N_OBJECT_HUES)),
            ),
        ]

    @staticmethod
    def palettes() -> tuple[torch.Tensor, torch.Tensor]:
        """Object colours (N_OBJECT_HUES, 3) and background colours (N_BACKGROUND_HUES, 3), RGB in [0, 1]."""
        obj_hue = torch.arange(N_OBJECT_HUES, dtype=torch.float64) / N_OBJECT_HUES
        bg_hue = torch.arange(N_BACKGROUND_HUES, dtype=torch.float64) / N_BACKGROUND_HUES + 1 / (2 * N_OBJECT_HUES)
        return hsv_to_rgb(obj_hue, *OBJECT_SV), hsv_to_rgb(bg_hue, *BACKGROUND_SV)

    def _get(self, indices: torch.Tensor) -> tuple[torch.Tensor, pd.DataFrame]:
        values = self._values(self._codes(indices))
        cover = coverage_from_distance(self._distance(values)).unsqueeze(1)  # (N, 1, H, W)
        obj_palette, bg_palette = self.palettes()
        obj = obj_palette[values["object_hue"]] * 2 - 1  # (N, 3) in [-1, 1]
        bg = bg_palette[values["background_hue"]] * 2 - 1
        images = torch.addcmul(bg[:, :, None, None], (obj - bg)[:, :, None, None], cover)
        return images, self._frame(values)
