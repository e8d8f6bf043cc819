"""How far a walk's images are from the linear walk's from the same start points and steps.

``linear_gap`` rows, per walk other than linear, direction and step: the mean absolute pixel difference
mean |G(walk(z0, gamma, eps)) - G(z0 + eps gamma)| over the direction's start points (images in [-1, 1]). It
makes visible what a density-preserving walk changes in the *images*: on a generator that normalises its
latent first (PixelNorm, as StyleGAN2's mapping network does in z), the norm rescale moves z only radially, so
its images equal the linear walk's (gap 0 up to float rounding) while its density drift is 0, and the norm
rescale is a no-op for the generator; on the DCGAN (no PixelNorm) the gap is large. NaN, with a note, when the
evaluation has no linear walk to compare with.
"""

from __future__ import annotations

import torch

from dplase.metrics.context import EvalContext, ImageMetric, Row

REFERENCE = "linear"


class LinearGap(ImageMetric):
    """``linear_gap`` rows (see the module); keeps the linear walk's images of one direction at a time where
    the loop shows linear first (its order), else every pending walk's images until linear's arrive."""

    def __init__(self, ctx: EvalContext) -> None:
        super().__init__(ctx)
        self.reference: dict[int, torch.Tensor] = {}
        self.pending: dict[tuple[str, int], torch.Tensor] = {}
        self.out: list[Row] = []

    def walked(self, walk: str, j: int, images: torch.Tensor) -> None:
        if walk == REFERENCE:
            self.reference[j] = images
            for key in [k for k in self.pending if k[1] == j]:
                self._compare(key[0], j, self.pending.pop(key))
        elif j in self.reference:
            self._compare(walk, j, images)
        elif REFERENCE in self.ctx.walks:
            self.pending[(walk, j)] = images
        else:
            self._compare(walk, j, None)

    def _compare(self, walk: str, j: int, images: torch.Tensor | None) -> None:
        ctx = self.ctx
        for i, step in enumerate(ctx.steps):
            rows = ctx.step_rows(i)
            if images is None:
                value, note = float("nan"), "no linear walk in this evaluation to compare with"
            else:
                value = float((images[rows] - self.reference[j][rows]).abs().mean())
                note = None
            self.out.append({"walk": walk, "direction": j, "step": float(step), "metric": "linear_gap",
                             "value": value, "n_samples": ctx.n, "note": note})

    def rows(self) -> list[Row]:
        return self.out
