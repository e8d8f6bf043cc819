"""Common pieces of every dataset: factor specifications, the ImageDataset protocol, index and seed helpers.

A dataset is a finite, indexable set of images with a table of generating factors. `get(indices)` is a pure
function of the indices, and `sample(n, seed)` draws indices uniformly (with replacement) from an explicit
seed, so the same seed always gives the same bytes on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

FactorKind = Literal["categorical", "continuous"]


@dataclass(frozen=True)
class FactorSpec:
    """One generating factor: its column name, kind and value range.

    Categorical factors hold integer codes 0..n_values-1 (``labels`` names each code); continuous ones hold
    floats in [low, high]. A continuous factor that takes a finite grid of values (dSprites-style) sets
    ``n_values`` to the grid size, else ``n_values`` is None. ``period`` marks a cyclic factor (orientation,
    2π; predictors should regress it through sin/cos, not as a plain number).

    A cyclic factor whose symmetry depends on another factor names that categorical factor in
    ``symmetry_by`` and gives one fold per code in ``symmetries``: a sprite with an s-fold rotational symmetry
    looks the same after period / s, so only the value modulo period / s is identifiable (the built-in shapes:
    square 4, ellipse 2, heart 1). Without ``symmetry_by`` the fold is 1; a factor that is k-fold symmetric
    whatever the other factors declares period / k as its ``period``.
    """

    name: str
    kind: FactorKind
    low: float
    high: float
    n_values: int | None = None
    labels: tuple[str, ...] | None = None
    period: float | None = None
    symmetry_by: str | None = None
    symmetries: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("categorical", "continuous"):
            raise ValueError(f"factor {self.name!r}: kind must be 'categorical' or 'continuous', got {self.kind!r}")
        if self.kind == "categorical":
            if not self.n_values or self.n_values < 1:
                raise ValueError(f"categorical factor {self.name!r} needs n_values >= 1")
            if self.labels is not None and len(self.labels) != self.n_values:
                raise ValueError(f"factor {self.name!r}: {len(self.labels)} labels for {self.n_values} values")
        if self.high < self.low:
            raise ValueError(f"factor {self.name!r}: high {self.high} < low {self.low}")
        if self.period is not None and not self.period > 0:
            raise ValueError(f"factor {self.name!r}: period must be > 0, got {self.period}")
        if (self.symmetry_by is None) != (self.symmetries is None):
            raise ValueError(f"factor {self.name!r}: symmetry_by and symmetries go together")
        if self.symmetry_by is not None:
            if self.period is None or self.kind != "continuous":
                raise ValueError(f"factor {self.name!r}: symmetry_by needs a cyclic continuous factor (a period)")
            if self.symmetry_by == self.name:
                raise ValueError(f"factor {self.name!r}: symmetry_by must name another factor")
            if not self.symmetries or any(isinstance(k, bool) or int(k) != k or k < 1 for k in self.symmetries):
                raise ValueError(f"factor {self.name!r}: symmetries must be ints >= 1, got {self.symmetries!r}")

    def grid(self) -> np.ndarray:
        """The discrete values the factor takes (codes for categorical ones); needs ``n_values``."""
        if self.n_values is None:
            raise ValueError(f"factor {self.name!r} is continuous without a value grid")
        if self.kind == "categorical":
            return np.arange(self.n_values)
        return np.linspace(self.low, self.high, self.n_values)

    def codes(self, values: np.ndarray | pd.Series) -> np.ndarray:
        """Index (0..n_values-1) of each value on the factor's grid (nearest grid point)."""
        values = np.asarray(values, dtype=np.float64)
        if self.kind == "categorical":
            return values.round().astype(np.int64)
        grid = self.grid()
        return np.abs(values[:, None] - grid[None, :]).argmin(axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for artifact metadata)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "low": float(self.low),
            "high": float(self.high),
            "n_values": self.n_values,
            "labels": list(self.labels) if self.labels is not None else None,
            "period": self.period,
            "symmetry_by": self.symmetry_by,
            "symmetries": list(self.symmetries) if self.symmetries is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FactorSpec:
        """Inverse of `to_dict`."""
        labels, symmetries = data.get("labels"), data.get("symmetries")
        return cls(
            name=data["name"],
            kind=data["kind"],
            low=float(data["low"]),
            high=float(data["high"]),
            n_values=data.get("n_values"),
            labels=tuple(labels) if labels is not None else None,
            period=data.get("period"),
            symmetry_by=data.get("symmetry_by"),
            symmetries=tuple(int(k) for k in symmetries) if symmetries is not None else None,
        )


def make_generator(seed: int | torch.Generator) -> torch.Generator:
    """A CPU torch.Generator from an int seed (or the given generator, unchanged)."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def check_image_size(name: str, image_size: int, supported: Sequence[int]) -> int:
    """Return ``image_size`` as an int, or raise a ValueError naming the dataset and the sizes it supports."""
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer):
        raise ValueError(f"dataset {name!r}: image_size must be an int, got {image_size!r}")
    if int(image_size) not in supported:
        if isinstance(supported, range):
            sizes = f"{supported.start}..{supported.stop - 1}"
        else:
            sizes = " or ".join(str(s) for s in supported)
        raise ValueError(f"dataset {name!r} supports image_size {sizes}, got {image_size}")
    return int(image_size)


class ImageDataset:
    """Base class: a finite set of images (float32 NCHW in [-1, 1]) with a factors table.

    Subclasses set ``name``, ``image_size``, ``channels``, ``factor_specs`` and ``seed`` and implement
    `_length` and `_get` (indices already validated, a 1-D int64 CPU tensor).
    """

    name: str
    image_size: int
    channels: int
    factor_specs: list[FactorSpec]
    seed: int

    def __len__(self) -> int:
        return self._length()

    def _length(self) -> int:
        raise NotImplementedError

    def _get(self, indices: torch.Tensor) -> tuple[torch.Tensor, pd.DataFrame]:
        raise NotImplementedError

    @property
    def factor_names(self) -> list[str]:
        """Column names of the factors table, in order."""
        return [spec.name for spec in self.factor_specs]

    def get(self, indices: torch.Tensor | Sequence[int] | np.ndarray) -> tuple[torch.Tensor, pd.DataFrame]:
        """Images (N, C, H, W) float32 in [-1, 1] and their factors (one row per image) for ``indices``."""
        idx = self._check_indices(indices)
        return self._get(idx)

    def sample(self, n: int, seed: int | torch.Generator | None = None) -> tuple[torch.Tensor, pd.DataFrame]:
        """``n`` items drawn uniformly with replacement; deterministic given ``seed``.

        This is the dataset's "real" evaluation set (for FID and predictor training). ``seed=None`` uses the
        dataset's own seed (the one given to `load_dataset`).
        """
        return self.get(self.sample_indices(n, seed))

    def sample_indices(self, n: int, seed: int | torch.Generator | None = None) -> torch.Tensor:
        """The indices `sample` would draw."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        gen = make_generator(self.seed if seed is None else seed)
        return torch.randint(len(self), (int(n),), generator=gen, dtype=torch.int64)

    def to_config(self) -> dict[str, Any]:
        """JSON-able arguments that rebuild this dataset through `load_dataset`."""
        return {"name": self.name, "image_size": self.image_size, "seed": self.seed}

    def _check_indices(self, indices: torch.Tensor | Sequence[int] | np.ndarray) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(idx.shape)}")
        if idx.numel() and (idx.dtype.is_floating_point or idx.dtype == torch.bool):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        idx = idx.to(device="cpu", dtype=torch.int64)
        if idx.numel():
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= len(self):
                bad = lo if lo < 0 else hi
                raise IndexError(f"dataset {self.name!r}: index {bad} out of range [0, {len(self)})")
        return idx

    def __repr__(self) -> str:
        factors = ", ".join(self.factor_names)
        return (
            f"{type(self).__name__}(name={self.name!r}, n={len(self)}, image_size={self.image_size}, "
            f"channels={self.channels}, factors=[{factors}])"
        )


def mixed_radix_digits(indices: torch.Tensor, radices: Sequence[int]) -> list[torch.Tensor]:
    """Split flat indices into one digit per radix (the last radix varies fastest)."""
    digits = []
    rest = indices.clone()
    for radix in reversed(radices):
        digits.append(rest % radix)
        rest = torch.div(rest, radix, rounding_mode="floor")
    return digits[::-1]


def sample_without_replacement(n_items: int, n: int, seed: int | torch.Generator) -> torch.Tensor:
    """``min(n, n_items)`` distinct indices into ``n_items`` items, in a random order (the first entries of a
    seeded permutation: deterministic given ``seed``; a request larger than the set takes all of it)."""
    if n < 0 or n_items < 0:
        raise ValueError(f"need n >= 0 and n_items >= 0, got {n} and {n_items}")
    return torch.randperm(int(n_items), generator=make_generator(seed), dtype=torch.int64)[: min(int(n), int(n_items))]
