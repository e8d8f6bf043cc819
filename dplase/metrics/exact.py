"""Exact attribute change, predictor agreement and the encoder-free disentanglement ceiling, for generators that
know the true factors of every latent (`PlantedAdapter.exact_factors`, `dplase.generators.planted`).

- ``attr_exact.<factor>``: per (walk, direction, step) the mean over start points of |exact factor(walked) -
  exact factor(start)| divided by the factor's reference scale, the mean |difference| between random pairs of
  prior samples (`attribute.reference_scales` on exact values; 1.0 = as much change as swapping for a random
  latent). Step-null rows hold the directions x factors matrix (mean over steps); ``attr_exact_top_share`` per
  direction and per walk, as `dplase.metrics.attribute` writes ``attr_change.*`` and ``attr_top_share``.
- ``attr_exact.fidelity``: the mean raw |Δ fidelity| (fidelity is in [0, 1]; not normalised, not in the matrix
  nor the top share): a linear walk leaving the typical set lowers it, an iso-density walk keeps it.
- Predictor agreement on the start images, for every predictor factor the generator also plants (by name):
  ``predictor_r2.<factor>`` is the squared Pearson correlation of predicted and exact values for a continuous
  factor (unit-free, so a predictor trained on `shapes`, positions in [0, 1], is scored as fairly as one trained
  on `planted`); for a cyclic one (``period`` set) the pooled R² of its (cos, sin) embedding of fold x angle
  against the exact angle's, as `FactorPredictor.score` measures it (per-row fold from the exact value of the
  spec's ``symmetry_by`` factor when the generator plants it, else from the predicted class);
  ``predictor_accuracy.<factor>`` for a
  categorical one is the accuracy against the rounded exact value (shapes' square / ellipse / heart = blend
  0 / 1 / 2). ``attr_agreement`` per walk: Pearson r between the predictor's directions x factors matrix (the
  one ``attr`` writes: `attribute.changes` normalised by `attribute.reference_scales` of the real set) and the
  exact one, over the shared factors.
- The ceiling of the code-encoder route of ``disent``: ``mig_exact``, ``dci_*_exact`` and ``modularity_exact``
  from `disentanglement_scores` with codes the exact coordinates z @ Γ^T of prior samples (no encoder), at the
  encoder route's sample sizes (`disent_sizes`: comparable MI bias; NaN with the reason in ``note`` for fewer
  than two factors, as there) and factors their exact values on the planted dataset's 20-value grids (ordinal
  codes: gbt regresses them).

A feature-space edit (the masked walk) is scored from the exact factors of its edited features
(`EvalContext.exact_factors`; the planted generator knows them at its ``factors`` layer); where the generator
cannot tell them (the ``render`` layer), the walk gets one NaN ``attr_exact_top_share`` row with the reason.

Seeds: the reference prior sample (reference scales and ceiling) is drawn with seed + 6 (the ceiling takes its
first rows, or a larger sample of the same seed when its sizes ask for more); pairs and scores use seed.
A generator without exact factors gets no rows.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import torch

from dplase.data.planted import planted_factor_specs
from dplase.generators.planted import PlantedAdapter
from dplase.metrics.attribute import change_matrix, changes, reference_scales, subset, top_share
from dplase.metrics.context import EvalContext, ImageMetric, Row
from dplase.metrics.disentanglement import (
    Sizes,
    disent_sizes,
    disentanglement_scores,
    factor_codes,
    ordinal_factors,
    periodic_factors,
    score_rows,
)
from dplase.metrics.predictor import FactorPredictor, Predictions, _r2, periodic_embedding

#: prior samples for the exact reference scales (no rendering, so many are cheap)
N_REFERENCE = 10_000
FIDELITY = "fidelity"


def exact_predictions(exact: dict[str, torch.Tensor], names: list[str]) -> Predictions:
    """Exact factor values as a Predictions object, so that `attribute.changes` reads them like predictions."""
    return Predictions(values={name: exact[name].double() for name in names})


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two equally long arrays (nan when either is constant)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def predictor_agreement(specs: list[dict], preds: Predictions, exact: dict[str, torch.Tensor]) -> dict[str, float]:
    """``predictor_r2.<f>`` / ``predictor_accuracy.<f>`` of predictions against exact values (see the module)."""
    out = {}
    for s in specs:
        name, truth = s["name"], exact[s["name"]].double()
        if s["kind"] == "categorical":
            target = truth.round().clamp(0, int(s["n_values"]) - 1).long()
            out[f"predictor_accuracy.{name}"] = float((preds.values[name].long() == target).double().mean())
        elif s.get("period"):
            by = s.get("symmetry_by")
            if by in exact:
                folds = FactorPredictor.folds(s, exact[by].double(), len(truth))
            else:
                folds = preds.folds.get(name, torch.ones(len(truth), dtype=torch.int64))
            target = periodic_embedding(truth, float(s["period"]), folds)
            out[f"predictor_r2.{name}"] = _r2(preds.embeddings[name].double(), target)
        else:
            out[f"predictor_r2.{name}"] = pearson(preds.values[name].numpy(), truth.numpy()) ** 2
    return out


def exact_ceiling(generator: PlantedAdapter, directions: torch.Tensor, z: torch.Tensor, sizes: Sizes,
                  importance: str = "gbt", seed: int = 0, n_estimators: int = 100) -> list[Row]:
    """MIG / DCI / modularity rows (``<score>_exact``) of the exact codes z @ Γ^T against the exact factors of
    prior samples ``z`` (at least ``sizes.n_draw`` rows), discretised on the planted specs' grids: the best the
    code-encoder route can reach for these directions."""
    specs = planted_factor_specs(generator.image_size, generator.factor_names)
    exact = generator.exact_factors(z)
    frame = pd.DataFrame({s.name: exact[s.name].double().numpy() for s in specs})
    codes = (z.double() @ directions.double().T).numpy()
    factors = factor_codes(frame, specs)
    scores = disentanglement_scores(codes, factors, importance=importance, seed=seed, n_estimators=n_estimators,
                                    ordinal=ordinal_factors(specs), sizes=sizes,
                                    periodic=periodic_factors(specs))
    return score_rows(scores, sizes, codes.shape[1], factors.shape[1], suffix="_exact")


class ExactAttributeChange(ImageMetric):
    """The registered metric "exact": exact attribute change, predictor agreement, disentanglement ceiling."""

    def __init__(self, ctx: EvalContext) -> None:
        super().__init__(ctx)
        gen = ctx.generator
        self.active = hasattr(gen, "exact_factors")
        self.step_rows: list[Row] = []
        self.per_direction: dict[str, list[dict[str, float]]] = defaultdict(list)  # walk -> exact means
        self.fidelity: dict[str, list[float]] = defaultdict(list)  # walk -> mean |Δ fidelity| per direction
        self.pred_direction: dict[str, list[dict[str, float]]] = defaultdict(list)  # walk -> predictor means
        self.agreement: dict[str, float] = {}
        self.unscored: set[str] = set()  # feature-space edits whose images' exact factors are unknown
        self.start_exact: dict[str, torch.Tensor] = {}
        self.start_pred: Predictions | None = None
        self.pred_scales: dict[str, float] = {}
        if not self.active:
            return
        self.names = list(gen.factor_names)
        self.specs = [s.to_dict() for s in planted_factor_specs(gen.image_size, self.names)]
        self.shared = [s for s in ctx.predictor.specs if s["name"] in self.names]
        # one prior sample for the reference scales and the ceiling, apart from z0 (seed) and the real set
        self.reference_z = gen.prior.sample(N_REFERENCE, ctx.config.seed + 6)
        reference = exact_predictions(gen.exact_factors(self.reference_z), self.names)
        self.scales = reference_scales(self.specs, reference, n_pairs=N_REFERENCE, seed=ctx.config.seed)

    def start(self, images: torch.Tensor) -> None:
        """Exact factors of z0; predictor agreement on the start images and the predictor's reference scales."""
        if not self.active:
            return
        ctx = self.ctx
        self.start_exact = ctx.generator.exact_factors(ctx.z0)
        if self.shared:
            self.start_pred = ctx.predict("start", images)
            self.agreement = predictor_agreement(self.shared, self.start_pred, self.start_exact)
            # the same normalisation as the attr metric, so the predictor matrix is the one it writes
            self.pred_scales = reference_scales(self.shared, ctx.real_predictions, seed=ctx.config.seed)

    def walked(self, walk: str, j: int, images: torch.Tensor) -> None:
        """Per-step exact rows; per-direction means of the exact, fidelity and predictor changes."""
        if not self.active or walk in self.unscored:
            return
        ctx = self.ctx
        walked_exact = ctx.exact_factors(walk, j)
        if walked_exact is None:
            self.unscored.add(walk)
            return
        block = ctx.block(j)
        start = exact_predictions({k: v[block] for k, v in self.start_exact.items()}, self.names)
        start_fid = self.start_exact[FIDELITY][block].double()
        walked = exact_predictions(walked_exact, self.names)
        totals: dict[str, list[float]] = defaultdict(list)
        fid_steps = []
        for i, e in enumerate(ctx.steps):
            rows = ctx.step_rows(i)
            for name, values in changes(self.specs, start, subset(walked, rows)).items():
                value = float(values.mean()) / self.scales[name]
                totals[name].append(value)
                self.step_rows.append({"walk": walk, "direction": j, "step": e, "metric": f"attr_exact.{name}",
                                       "value": value, "n_samples": ctx.n})
            fid = float((walked_exact[FIDELITY][rows].double() - start_fid).abs().mean())
            fid_steps.append(fid)
            self.step_rows.append({"walk": walk, "direction": j, "step": e, "metric": f"attr_exact.{FIDELITY}",
                                   "value": fid, "n_samples": ctx.n})
        self.per_direction[walk].append({name: float(np.mean(v)) for name, v in totals.items()})
        self.fidelity[walk].append(float(np.mean(fid_steps)))
        if self.shared:
            preds, start_pred = ctx.predict((walk, j), images), subset(self.start_pred, block)
            pred_totals: dict[str, list[float]] = defaultdict(list)
            for i in range(len(ctx.steps)):
                for name, values in changes(self.shared, start_pred, subset(preds, ctx.step_rows(i))).items():
                    pred_totals[name].append(float(values.mean()) / self.pred_scales[name])
            self.pred_direction[walk].append({name: float(np.mean(v)) for name, v in pred_totals.items()})

    def rows(self) -> list[Row]:
        """Per-step rows, then per walk the exact matrix, fidelity means, top shares and agreement; then the
        predictor agreement on the start images and the disentanglement ceiling."""
        if not self.active:
            return []
        ctx, cfg = self.ctx, self.ctx.config
        n_images = ctx.n * len(ctx.steps)
        rows = list(self.step_rows)
        shared = [s["name"] for s in self.shared]
        for w, summaries in self.per_direction.items():
            if w in self.unscored:
                continue
            matrix = change_matrix(summaries, self.names)
            shares = top_share(matrix)
            for j in range(len(matrix)):
                rows += [{"walk": w, "direction": j, "metric": f"attr_exact.{name}", "value": float(matrix[j, f]),
                          "n_samples": n_images} for f, name in enumerate(self.names)]
                rows.append({"walk": w, "direction": j, "metric": f"attr_exact.{FIDELITY}",
                             "value": self.fidelity[w][j], "n_samples": n_images})
                rows.append({"walk": w, "direction": j, "metric": "attr_exact_top_share", "value": float(shares[j]),
                             "n_samples": n_images})
            rows.append({"walk": w, "metric": "attr_exact_top_share", "value": float(np.nanmean(shares)),
                         "n_samples": n_images * len(matrix)})
            if shared:
                exact = change_matrix(summaries, shared)
                predicted = change_matrix(self.pred_direction[w], shared)
                rows.append({"walk": w, "metric": "attr_agreement", "value": pearson(predicted, exact),
                             "n_samples": n_images * len(matrix)})
        layer = ctx.directions.layer or ctx.generator.default_layer()
        rows += [{"walk": w, "metric": "attr_exact_top_share", "value": math.nan,
                  "note": f"not measured: the generator cannot tell exact factors from features at layer {layer}"}
                 for w in sorted(self.unscored)]
        rows += [{"metric": name, "value": value, "n_samples": len(ctx.z0)} for name, value in self.agreement.items()]
        sizes = disent_sizes(ctx)  # the encoder route's sample sizes: comparable MI bias
        z = (self.reference_z[:sizes.n_draw] if sizes.n_draw <= len(self.reference_z)
             else ctx.generator.prior.sample(sizes.n_draw, cfg.seed + 6))
        rows += exact_ceiling(ctx.generator, ctx.directions.directions, z, sizes,
                              importance=cfg.dci_importance, seed=cfg.seed, n_estimators=cfg.dci_estimators)
        return rows
