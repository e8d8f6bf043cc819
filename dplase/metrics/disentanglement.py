"""Disentanglement scores as disentanglement_lib defines them, plus the Khrulkov et al. (2021) protocol.

Public functions take numpy arrays: ``codes`` (N x K, real) and ``factors`` (N x F, integer codes) and return
floats, so they can be checked against any other implementation:
- `mig`: mutual information gap, codes discretised into 20 equal-width bins per code (np.histogram edges),
  MI and factor entropies with sklearn's ``mutual_info_score`` (nats), gap normalised by the factor entropy;
- `dci`: importance matrix (codes x factors) from gradient-boosted trees or lasso coefficients, with its
  deviation from disentanglement_lib for speed (regression trees for ordinal factors): `dplase.metrics.dci`;
- `modularity`: Ridgeway & Zemel's score on the same discretised mutual information.

Sample sizes (`plan_sizes`): MIG and modularity on ``n_mig`` codes, DCI importances on ``n_train`` and
informativeness on ``n_test`` further ones, all drawn without replacement; a dataset smaller than the request is
used whole (DCI split in the requested ratio), and every row's ``n_samples`` and ``note`` say what was used.
With fewer than two factors MIG, DCI and modularity are not defined (`undefined_scores`): their rows hold NaN and
the reason in ``note``, never a number; MIG needs two codes as well.

The code-encoder protocol turns directions into codes for real images: an encoder is trained on generated images
to regress their coordinates along the K directions (`train_code_encoder`), then applied to real images in
batches (`encode_dataset`). `disent_metric` is the registered metric "disent": that protocol on real images
drawn without replacement at the sizes above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import mutual_info_score

from dplase.data.base import sample_without_replacement
from dplase.metrics.context import EvalContext, Row
from dplase.metrics.dci import (  # re-exported: DCI is one of this module's scores
    IMPORTANCES,
    dci,
    dci_from_importance,
    importance_matrix,
    ordinal_factors,
    periodic_factors,
)
from dplase.metrics.dci import check_inputs as _check

N_BINS = 20
#: every score `disentanglement_scores` returns, in order
SCORES = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_train",
          "dci_informativeness_test", "modularity")
#: real images per dataset.get / encoder call when encoding the disentanglement draw
ENCODE_BATCH = 1024


def discretize(codes: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Per column: the bin index of each value among ``n_bins`` equal-width bins (disentanglement_lib's
    histogram discretiser: np.digitize against the left bin edges)."""
    codes = np.asarray(codes, dtype=np.float64)
    out = np.zeros(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], n_bins)[1][:-1]
        out[:, i] = np.digitize(codes[:, i], edges)
    return out


def mutual_info_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """MI (nats) between each discrete code and each factor: K x F."""
    k, f = discrete_codes.shape[1], factors.shape[1]
    return np.array([[mutual_info_score(factors[:, j], discrete_codes[:, i]) for j in range(f)]
                     for i in range(k)])


def factor_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each factor column."""
    return np.array([mutual_info_score(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])


def mig(codes: np.ndarray, factors: np.ndarray, n_bins: int = N_BINS) -> float:
    """Mutual information gap: mean over factors of (top MI - second MI) / H(factor).

    Constant factors (zero entropy) carry no information and are left out of the mean.
    """
    codes, factors = _check(codes, factors)
    if codes.shape[1] < 2:
        raise ValueError("MIG needs at least 2 code dimensions")
    m = mutual_info_matrix(discretize(codes, n_bins), factors)
    entropy = factor_entropy(factors)
    keep = entropy > 0
    if not keep.any():
        raise ValueError("every factor is constant: MIG is undefined")
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0, keep] - top[1, keep]) / entropy[keep]))


def modularity(codes: np.ndarray, factors: np.ndarray, n_bins: int = N_BINS) -> float:
    """Modularity (Ridgeway & Zemel 2018): 1 - mean deviation of each code's squared MI from an ideal code
    that informs about one factor only; codes with zero MI score 0."""
    codes, factors = _check(codes, factors)
    if factors.shape[1] < 2:
        raise ValueError("modularity needs at least 2 factors")
    sq = np.square(mutual_info_matrix(discretize(codes, n_bins), factors))
    max_sq = sq.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (sq.sum(axis=1) - max_sq) / (max_sq * (sq.shape[1] - 1.0))
    score = 1.0 - delta
    score[max_sq == 0.0] = 0.0
    return float(np.mean(score))


@dataclass(frozen=True)
class Sizes:
    """How many codes each score uses (`plan_sizes`): rows [0, n_mig) for MIG / modularity, [0, n_train) for
    the DCI importances, [n_train, n_train + n_test) for its test informativeness; ``n_draw`` rows in all."""

    n_draw: int
    n_mig: int
    n_train: int
    n_test: int
    n_available: int
    requested: tuple[int, int, int]

    @property
    def whole(self) -> bool:
        """Whether the dataset was smaller than the request (so used whole)."""
        return self.n_draw < max(self.requested[0], self.requested[1] + self.requested[2])

    def note(self, dci: bool) -> str | None:
        """The row note: the DCI split, and what a too small dataset cut (only on the rows of a score it cut)."""
        parts = [f"importances on {self.n_train} rows, informativeness_test on {self.n_test} others"] if dci else []
        cut = self.n_train + self.n_test < self.requested[1] + self.requested[2] if dci else \
            self.n_mig < self.requested[0]
        if self.whole and cut:
            parts.append(f"the whole dataset ({self.n_available} items; asked {self.requested[0]} for MIG, "
                         f"{self.requested[1]} / {self.requested[2]} for DCI)")
        return "; ".join(parts) or None


def plan_sizes(n_available: int, n_mig: int, n_train: int, n_test: int) -> Sizes:
    """The sizes for a dataset of ``n_available`` items: max(n_mig, n_train + n_test) drawn without replacement,
    or the whole dataset when smaller, then split in the ratio n_train : n_test (at least 1 row each)."""
    if min(n_mig, n_train, n_test) < 1:
        raise ValueError(f"n_mig, n_train and n_test must be >= 1, got {n_mig}, {n_train} and {n_test}")
    if n_available < 2:
        raise ValueError(f"need at least 2 items for disentanglement scores, got {n_available}")
    n_draw = min(int(n_available), max(n_mig, n_train + n_test))
    if n_draw >= n_train + n_test:
        train, test = n_train, n_test
    else:
        train = min(max(round(n_draw * n_train / (n_train + n_test)), 1), n_draw - 1)
        test = n_draw - train
    return Sizes(n_draw, min(n_mig, n_draw), train, test, int(n_available), (n_mig, n_train, n_test))


def undefined_scores(n_codes: int, n_factors: int) -> dict[str, str]:
    """Score name -> why it is not defined for ``n_codes`` codes and ``n_factors`` factors (NaN rows)."""
    if n_factors < 2:
        reason = (f"{n_factors} factor: MIG, DCI and modularity need at least 2 factors (they measure how codes "
                  "separate factors)")
        return dict.fromkeys(SCORES, reason)
    if n_codes < 2:
        return {"mig": f"{n_codes} code: MIG needs at least 2 code dimensions (top minus runner-up code)"}
    return {}


def disentanglement_scores(codes: np.ndarray, factors: np.ndarray, importance: str = "gbt", seed: int = 0,
                           n_estimators: int = 100, ordinal: Sequence[bool] | None = None,
                           sizes: Sizes | None = None,
                           periodic: Sequence[int | None] | None = None) -> dict[str, float]:
    """Every score of `SCORES` (NaN where `undefined_scores` says so), on the rows ``sizes`` assigns (default:
    MIG on all rows, DCI on the first 2/3 and the rest)."""
    codes, factors = _check(codes, factors)
    if sizes is None:
        n_train = round(len(codes) * 2 / 3)
        sizes = Sizes(len(codes), len(codes), n_train, len(codes) - n_train, len(codes),
                      (len(codes), n_train, len(codes) - n_train))
    if len(codes) < sizes.n_draw:
        raise ValueError(f"sizes need {sizes.n_draw} rows, got {len(codes)}")
    out = dict.fromkeys(SCORES, math.nan)
    undefined = undefined_scores(codes.shape[1], factors.shape[1])
    if "mig" not in undefined:
        out["mig"] = mig(codes[:sizes.n_mig], factors[:sizes.n_mig])
    if "dci_disentanglement" not in undefined:
        n = sizes.n_train + sizes.n_test
        scores = dci(codes[:n], factors[:n], importance=importance, seed=seed, n_estimators=n_estimators,
                     ordinal=ordinal, n_train=sizes.n_train, periodic=periodic)
        out.update({f"dci_{k}": v for k, v in scores.items()})
    if "modularity" not in undefined:
        out["modularity"] = modularity(codes[:sizes.n_mig], factors[:sizes.n_mig])
    return out


def score_rows(scores: dict[str, float], sizes: Sizes, n_codes: int, n_factors: int, suffix: str = "") -> list[Row]:
    """Rows of `disentanglement_scores` output: n_samples the rows each score used, note why a value is NaN
    (or the DCI split / the cut a small dataset made)."""
    undefined = undefined_scores(n_codes, n_factors)
    rows: list[Row] = []
    for name, value in scores.items():
        is_dci = name.startswith("dci_")
        if name in undefined:  # nothing was scored: no sample count to report
            rows.append({"metric": f"{name}{suffix}", "value": float(value), "n_samples": None,
                         "note": undefined[name]})
            continue
        used = {"dci_informativeness_train": sizes.n_train, "dci_informativeness_test": sizes.n_test}.get(
            name, sizes.n_train + sizes.n_test if is_dci else sizes.n_mig)
        rows.append({"metric": f"{name}{suffix}", "value": float(value), "n_samples": used,
                     "note": sizes.note(is_dci)})
    return rows


def factor_codes(factors: Any, specs: list[Any]) -> np.ndarray:
    """Integer codes (N x F) from a factors DataFrame, using each FactorSpec's grid (20 bins without one)."""
    cols = []
    for spec in specs:
        values = np.asarray(factors[spec.name], dtype=np.float64)
        if spec.kind == "categorical" or spec.n_values is not None:
            cols.append(spec.codes(values))
        else:
            cols.append(discretize(values[:, None])[:, 0])
    return np.stack(cols, axis=1)


def train_code_encoder(generator, directions: torch.Tensor, steps: int = 600, seed: int = 0,
                       batch_size: int = 64, lr: float = 1e-3, progress: bool = True):
    """An encoder G(z) -> (γ_j · z)_j, trained on generated images (Khrulkov et al. 2021 protocol).

    Reuses the factor-predictor CNN with one continuous head per direction; latents come from the per-step
    generators of the shared loop (deterministic given ``seed``).
    """
    from dplase.metrics.predictor import FactorPredictor
    from dplase.training.loop import LoopState, run_loop, step_generator

    gammas = directions.detach().to(generator.device, torch.float32)
    scale = float(3.0**0.5)  # unit-variance coordinates ~ uniform over [-sqrt 3, sqrt 3] normalisation
    specs = [{"name": f"d{j}", "kind": "continuous", "low": -scale, "high": scale} for j in range(len(gammas))]
    torch.manual_seed(seed)
    encoder = FactorPredictor(generator.channels, generator.image_size, specs).to(generator.device)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        z = generator.prior.sample(batch_size, step_generator(seed, step), device=generator.device)
        with torch.no_grad():
            images = generator(z)
        coords = (z @ gammas.T).cpu()
        terms = encoder.loss(images, {f"d{j}": coords[:, j] for j in range(len(gammas))})
        loss = sum(terms.values()) / len(terms)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"mse": loss}

    encoder.train()
    run_loop(total_steps=steps, step_fn=step_fn, state=LoopState({"encoder": encoder, "optimizer": optimizer}),
             checkpoint_path=None, desc="code encoder", progress=progress)
    return encoder.eval()


def encode(encoder, images: torch.Tensor) -> np.ndarray:
    """Codes (N x K) of images under a trained code encoder."""
    preds = encoder.predict(images)
    return np.stack([preds.values[name].numpy() for name in encoder.factor_names], axis=1)


def encode_dataset(encoder, dataset: Any, indices: torch.Tensor,
                   batch_size: int = ENCODE_BATCH) -> tuple[np.ndarray, pd.DataFrame]:
    """Codes (N x K) and factors of ``dataset``'s items ``indices``, loaded and encoded ``batch_size`` at a
    time (so that 10,000s of real images never sit in memory at once)."""
    codes, frames = [], []
    for chunk in torch.split(indices, batch_size):
        images, factors = dataset.get(chunk)
        codes.append(encode(encoder, images))
        frames.append(factors)
    return np.concatenate(codes), pd.concat(frames, ignore_index=True)


#: generated images on which the code encoder's fit is scored (held out: latents the training never drew)
N_ENCODER_HELDOUT = 512


def encoder_fit(encoder, generator, directions: torch.Tensor, n: int = N_ENCODER_HELDOUT,
                seed: int = 0) -> np.ndarray:
    """Held-out R² per code of a code encoder: on ``n`` generated images from latents of their own seed, how
    well it recovers each coordinate γ_j · z (1 = exactly, 0 = no better than the mean)."""
    from dplase.metrics.predictor import _r2

    z = generator.prior.sample(n, seed)
    with torch.no_grad():
        images = generator.generate(z.to(generator.device))
    coords = (z.double() @ directions.detach().double().cpu().T)
    codes = torch.from_numpy(encode(encoder, images)).double()
    return np.array([_r2(codes[:, j], coords[:, j]) for j in range(coords.shape[1])])


def disent_sizes(ctx: EvalContext) -> Sizes:
    """The disentanglement sample sizes of an evaluation (its config's n_mig / n_dci_* on its real dataset)."""
    cfg = ctx.config
    return plan_sizes(len(ctx.dataset), cfg.n_mig, cfg.n_dci_train, cfg.n_dci_test)


def disent_metric(ctx: EvalContext) -> list[Row]:
    """MIG, DCI and modularity of the codes of real images drawn without replacement (seed + 2; sizes:
    `disent_sizes`; encoder trained with seed + 3, scores with seed), and the encoder's held-out fit
    (``encoder_r2`` per direction and their mean; latents seed + 7): a low fit means the codes, and so every
    score here, are mostly noise. With fewer than two factors every score is NaN with its reason, and no encoder
    is trained (the ``encoder_r2`` row is NaN too)."""
    cfg = ctx.config
    specs = ctx.dataset.factor_specs
    sizes = disent_sizes(ctx)
    if len(undefined_scores(ctx.k, len(specs))) == len(SCORES):
        rows = score_rows(dict.fromkeys(SCORES, math.nan), sizes, ctx.k, len(specs))
        rows.append({"metric": "encoder_r2", "value": math.nan, "n_samples": None,
                     "note": "no code encoder trained: " + rows[0]["note"]})
        return rows
    encoder = train_code_encoder(ctx.generator, ctx.directions.directions, steps=cfg.encoder_steps,
                                 seed=cfg.seed + 3, batch_size=cfg.encoder_batch_size, progress=cfg.progress)
    indices = sample_without_replacement(len(ctx.dataset), sizes.n_draw, cfg.seed + 2)
    codes, frame = encode_dataset(encoder, ctx.dataset, indices)
    factors = factor_codes(frame, specs)
    scores = disentanglement_scores(codes, factors, importance=cfg.dci_importance, seed=cfg.seed,
                                    n_estimators=cfg.dci_estimators, ordinal=ordinal_factors(specs), sizes=sizes,
                                    periodic=periodic_factors(specs))
    rows = score_rows(scores, sizes, codes.shape[1], factors.shape[1])
    fit = encoder_fit(encoder, ctx.generator, ctx.directions.directions, seed=cfg.seed + 7)
    rows += [{"direction": j, "metric": "encoder_r2", "value": float(r2), "n_samples": N_ENCODER_HELDOUT}
             for j, r2 in enumerate(fit)]
    rows.append({"metric": "encoder_r2", "value": float(np.mean(fit)), "n_samples": N_ENCODER_HELDOUT})
    return rows


#: this module's scores, with DCI's (from `dplase.metrics.dci`)
__all__ = [
    "ENCODE_BATCH", "IMPORTANCES", "N_BINS", "N_ENCODER_HELDOUT", "SCORES", "Sizes", "dci", "dci_from_importance",
    "discretize", "disent_metric", "disent_sizes", "disentanglement_scores", "encode", "encode_dataset",
    "encoder_fit", "factor_codes", "factor_entropy", "importance_matrix", "mig", "modularity", "mutual_info_matrix",
    "ordinal_factors", "periodic_factors", "plan_sizes", "score_rows", "train_code_encoder", "undefined_scores",
]
