"""The step range of every walk: one definition that training, scoring, validation, the reconstructor's
shifts and the evaluation grid all call.

A walk moves a latent by a signed step eps along a direction. Everything that chooses steps does it here:

- `max_step`: DP-LaSE's T (training draws eps ~ U(-T, T); the learned walk's C sees eps / T), the authors'
  T = 10 at d = 512 scaled to the prior's RMS latent norm;
- `StepRange.sample`: eps ~ U(-T, T), the training draw;
- `StepRange.probe`: 8 non-zero steps in [-T, T] (DP-LaSE's direction scores, density validation);
- `StepRange.grid`: the symmetric evaluation grid with 0 (metrics, traversal grids);
- `StepRange.shifts`: Voynov & Babenko's shift sampler (|eps| >= a minimum shift), for the method and RCA.

Each caller keeps the range it had (training in [-T, T], evaluation in [-max_eps, max_eps], Voynov's published
scale 6): this module only makes them one mechanism, so that unifying the values is a one-line change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from dplase.reconstructor import ShiftSampler

#: the authors' step range relative to the typical latent norm: T = 10 at d = 512 (||z|| ~ sqrt(512))
STEP_PER_NORM = 10.0 / math.sqrt(512.0)


def max_step(prior, n: int = 4096, seed: int = 0) -> float:
    """The authors' T = 10 for a 512-d N(0, I), scaled to this prior's RMS latent norm (T ~ 1.77 at d = 16)."""
    z = prior.sample(n, seed)
    return STEP_PER_NORM * float(z.pow(2).sum(dim=1).mean().sqrt())


@dataclass(frozen=True)
class StepRange:
    """Steps in [-max_step, max_step]; ``min_step`` is the smallest |eps| the shift sampler draws."""

    max_step: float
    min_step: float = 0.0

    def __post_init__(self) -> None:
        if not (self.max_step > 0 and math.isfinite(self.max_step)) or self.min_step < 0:
            raise ValueError(f"need max_step > 0 (finite) and min_step >= 0, got {self.max_step}, {self.min_step}")

    @classmethod
    def for_prior(cls, prior) -> StepRange:
        """[-T, T] with T = `max_step` of the prior."""
        return cls(max_step(prior))

    def grid(self, n_steps: int) -> np.ndarray:
        """``n_steps`` evenly spaced steps in [-max, max], 0 added when ``n_steps`` is even, rounded to 1e-6 so
        that steps compare exactly across runs."""
        if n_steps < 2:
            raise ValueError(f"need n_steps >= 2, got {n_steps}")
        grid = np.linspace(-self.max_step, self.max_step, n_steps)
        if n_steps % 2 == 0:
            grid = np.sort(np.append(grid, 0.0))
        return np.round(grid, 6)

    def nonzero(self, n_steps: int) -> list[float]:
        """The grid without 0 (the walked steps; step 0 is the start point itself)."""
        return [float(s) for s in self.grid(n_steps) if s != 0]

    def probe(self, per_side: int = 4) -> torch.Tensor:
        """``per_side`` evenly spaced non-zero steps on each side: (-T .. -T/per_side, T/per_side .. T)."""
        unit = torch.cat([torch.linspace(-1, 0, per_side + 1)[:-1], torch.linspace(0, 1, per_side + 1)[1:]])
        return unit * self.max_step

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` steps eps ~ U(-T, T), drawn on CPU from ``generator``."""
        return (torch.rand(n, generator=generator) * 2 - 1) * self.max_step

    def shifts(self, distribution: str = "uniform") -> ShiftSampler:
        """Voynov & Babenko's shift sampler: eps uniform in [-max, max] (or normal with std max), |eps| raised to
        at least ``min_step``."""
        from dplase.reconstructor import ShiftSampler  # lazy: the reconstructor pulls in the generator code

        return ShiftSampler(self.max_step, self.min_step, distribution)
