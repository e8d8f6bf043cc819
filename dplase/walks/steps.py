"""The step range of every walk: one definition that training, scoring, validation, the reconstructor's
shifts and the evaluation grid all call, and one value, T, that they all use.

A walk moves a latent by a signed step eps along a direction. Everything that chooses steps does it here:

- `max_step`: T, the authors' T = 10 at d = 512 scaled to the prior's RMS latent norm (T ~ 1.77 at d = 16);
- `StepRange.sample`: eps ~ U(-T, T), the training draw;
- `StepRange.probe`: 8 non-zero steps in [-T, T] (DP-LaSE's direction scores, density validation);
- `StepRange.grid`: the symmetric evaluation grid with 0 (metrics, traversal grids);
- `StepRange.shifts`: Voynov & Babenko's shift sampler (|eps| >= a minimum shift), for the method and RCA.

The rule: one range [-T, T], T = `max_step(prior)`, for
- DP-LaSE's training draws and direction scores (``max_step: null``),
- the learned walk's training (C's l_den draws, C's input eps / T; `dplase.walks.validation` too),
- Voynov & Babenko's shifts (`shift_range`: scale T, minimum shift T * `MIN_SHIFT_FRACTION` = T / 12, the
  published 0.5 / 6, instead of the published fixed 6 tuned for d = 512),
- RCA's reconstructor shifts (the same `shift_range`),
- the evaluation grid (``EvalConfig.max_eps: null`` = T).
Each keeps an explicit override (DP-LaSE ``max_step``, Voynov ``shift_scale`` / ``min_shift``, the evaluation's
``max_eps``). An evaluation grid wider than the run's trained range is extrapolation on request: its per-step
rows with |step| > the trained range carry ``extrapolated = True`` (`is_extrapolated`), the others False.
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
#: Voynov & Babenko's minimum shift relative to their shift scale (published: 0.5 of 6)
MIN_SHIFT_FRACTION = 0.5 / 6.0
#: steps closer than this (absolute, plus as much relative) to the trained range count as inside it (the grid is
#: rounded to 1e-6; a float32 T carries a relative error of ~6e-8)
EXTRAPOLATION_TOLERANCE = 1e-6


def max_step(prior, n: int = 4096, seed: int = 0) -> float:
    """The authors' T = 10 for a 512-d N(0, I), scaled to this prior's RMS latent norm (T ~ 1.77 at d = 16)."""
    z = prior.sample(n, seed)
    return STEP_PER_NORM * float(z.pow(2).sum(dim=1).mean().sqrt())


def shift_range(prior, scale: float | None = None, min_shift: float | None = None) -> StepRange:
    """Voynov & Babenko's shift range on the one step range: scale T (`max_step` of ``prior``) and minimum
    shift ``MIN_SHIFT_FRACTION`` of the scale, unless given (``prior`` is only sampled when ``scale`` is None)."""
    scale = max_step(prior) if scale is None else float(scale)
    return StepRange(scale, MIN_SHIFT_FRACTION * scale if min_shift is None else float(min_shift))


def trained_range(directions, prior) -> float:
    """The largest |step| a DirectionSet was trained on: its recorded ``extra["max_step"]`` (DP-LaSE's T,
    Voynov's shift scale), else T of ``prior`` (closed-form methods: the one step range)."""
    recorded = (getattr(directions, "extra", None) or {}).get("max_step")
    return float(recorded) if recorded is not None else max_step(prior)


def is_extrapolated(step: float, trained: float) -> bool:
    """Whether a step lies beyond the trained range [-trained, trained] (up to `EXTRAPOLATION_TOLERANCE`)."""
    return abs(float(step)) > float(trained) * (1 + EXTRAPOLATION_TOLERANCE) + EXTRAPOLATION_TOLERANCE


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
