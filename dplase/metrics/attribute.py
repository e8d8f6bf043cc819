"""Attribute change (re-scoring): what a direction changes, read by the factor predictor.

For a start image G(z0) and its walked image, the per-factor change is
- categorical: total-variation distance between the predicted class distributions (0..1);
- continuous: |Δ value| / (high - low);
- cyclic (period P): the circular difference of the two values modulo the identifiable period P / s, divided
  by its largest possible value P / (2 s) (0..1). s is the lcm of the two rows' folds (`Predictions.folds`:
  a square turns onto itself every 90°, a heart every 360°; square vs heart: the difference is only known
  modulo 90°), 1 without folds. Predictions with embeddings but no values (e.g. hand-made ones): the angle
  between the (cos, sin) embeddings / π, the same number for equal folds.
Each factor's change is then normalised by its *reference scale*: the mean change between two unrelated real
images (random pairs). 1.0 thus means "as much change as swapping for a random image", which makes factors
of different kinds comparable within the directions x factors matrix.

`AttributeChange` is the registered metric "attr": per (walk, direction, step) rows ``attr_change.<factor>``,
the directions x factors matrix (step null) and the top-factor shares.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from dplase.metrics.context import EvalContext, ImageMetric, Row
from dplase.metrics.predictor import Predictions, circular_difference


def factor_change(spec: dict, before: Predictions, after: Predictions) -> torch.Tensor:
    """Per-sample change of one factor between two prediction sets (same N, paired)."""
    name = spec["name"]
    if spec["kind"] == "categorical":
        return 0.5 * (after.probs[name] - before.probs[name]).abs().sum(dim=1).double()
    if spec.get("period") and name in before.values and name in after.values:
        n = len(before.values[name])
        ones = torch.ones(n, dtype=torch.int64)
        fold = torch.lcm(before.folds.get(name, ones).long(), after.folds.get(name, ones).long())
        identifiable = float(spec["period"]) / fold.double()
        return circular_difference(after.values[name], before.values[name], identifiable) / (identifiable / 2)
    if name in before.embeddings:
        a, b = F.normalize(after.embeddings[name], dim=1), F.normalize(before.embeddings[name], dim=1)
        cos = (a * b).sum(dim=1).clamp(-1, 1)
        return torch.arccos(cos).double() / math.pi
    width = max(float(spec["high"]) - float(spec["low"]), 1e-12)
    return (after.values[name].double() - before.values[name].double()).abs() / width


def changes(specs: list[dict], before: Predictions, after: Predictions) -> dict[str, torch.Tensor]:
    """Per-sample change of every factor."""
    return {s["name"]: factor_change(s, before, after) for s in specs}


def subset(preds: Predictions, index: torch.Tensor | slice) -> Predictions:
    """Rows ``index`` of a Predictions object."""
    return Predictions(
        values={k: v[index] for k, v in preds.values.items()},
        probs={k: v[index] for k, v in preds.probs.items()},
        embeddings={k: v[index] for k, v in preds.embeddings.items()},
        folds={k: v[index] for k, v in preds.folds.items()},
    )


def reference_scales(specs: list[dict], real: Predictions, n_pairs: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean change between random pairs of real images, per factor (the normalisation of the matrix)."""
    n = len(next(iter(real.values.values())))
    if n < 2:
        raise ValueError("reference scales need at least 2 real images")
    gen = torch.Generator().manual_seed(int(seed))
    a = torch.randint(n, (n_pairs,), generator=gen)
    b = (a + torch.randint(1, n, (n_pairs,), generator=gen)) % n  # never the same image twice
    per = changes(specs, subset(real, a), subset(real, b))
    return {name: max(float(v.mean()), 1e-12) for name, v in per.items()}


def change_matrix(per_direction: list[dict[str, float]], factor_names: list[str]) -> np.ndarray:
    """K x F matrix from per-direction mean (normalised) changes."""
    return np.array([[row[name] for name in factor_names] for row in per_direction], dtype=np.float64)


def top_share(matrix: np.ndarray) -> np.ndarray:
    """Per direction: share of its (normalised) change that falls on its top factor (1/F .. 1)."""
    totals = matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(totals > 0, matrix.max(axis=1) / totals, np.nan)


class AttributeChange(ImageMetric):
    """Attribute change along walks, read by the factor predictor from each walked image as it is made."""

    def __init__(self, ctx: EvalContext) -> None:
        super().__init__(ctx)
        self.specs = ctx.predictor.specs
        self.start_pred: Predictions | None = None
        self.scales: dict[str, float] = {}
        self.step_rows: list[Row] = []
        self.per_direction: dict[str, list[dict[str, float]]] = defaultdict(list)  # walk -> per direction

    def start(self, images: torch.Tensor) -> None:
        """Start predictions and the reference scales (random pairs of real images, drawn with seed)."""
        self.start_pred = self.ctx.predict("start", images)
        self.scales = reference_scales(self.specs, self.ctx.real_predictions, seed=self.ctx.config.seed)

    def walked(self, walk: str, j: int, images: torch.Tensor) -> None:
        """Per-step rows and the direction's mean change per factor over all steps."""
        ctx = self.ctx
        walked, start = ctx.predict((walk, j), images), subset(self.start_pred, ctx.block(j))
        totals: dict[str, list[float]] = defaultdict(list)
        for i, e in enumerate(ctx.steps):
            for name, values in changes(self.specs, start, subset(walked, ctx.step_rows(i))).items():
                value = float(values.mean()) / self.scales[name]
                totals[name].append(value)
                self.step_rows.append({"walk": walk, "direction": j, "step": e, "metric": f"attr_change.{name}",
                                       "value": value, "n_samples": ctx.n})
        self.per_direction[walk].append({name: float(np.mean(v)) for name, v in totals.items()})

    def rows(self) -> list[Row]:
        """The per-step rows, then per walk the directions x factors matrix (step null) and top-factor shares."""
        names, n_images = [s["name"] for s in self.specs], self.ctx.n * len(self.ctx.steps)
        rows = list(self.step_rows)
        for w, summaries in self.per_direction.items():
            matrix = change_matrix(summaries, names)
            shares = top_share(matrix)
            for j in range(len(matrix)):
                rows += [{"walk": w, "direction": j, "metric": f"attr_change.{name}", "value": float(matrix[j, f]),
                          "n_samples": n_images} for f, name in enumerate(names)]
                rows.append({"walk": w, "direction": j, "metric": "attr_top_share", "value": float(shares[j]),
                             "n_samples": n_images})
            rows.append({"walk": w, "metric": "attr_top_share", "value": float(np.nanmean(shares)),
                         "n_samples": n_images * len(matrix)})
        return rows
