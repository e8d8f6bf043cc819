"""Disentanglement scores as disentanglement_lib defines them, plus the Khrulkov et al. (2021) protocol.

Public functions take numpy arrays: ``codes`` (N x K, real) and ``factors`` (N x F, integer codes) and return
floats, so they can be checked against any other implementation:
- `mig`: mutual information gap, codes discretised into 20 equal-width bins per code (np.histogram edges),
  MI and factor entropies with sklearn's ``mutual_info_score`` (nats), gap normalised by the factor entropy;
- `dci`: importance matrix (codes x factors) from gradient-boosted trees (``feature_importances_``, default) or
  lasso coefficients; disentanglement = per-code 1 - entropy over factors (base F) weighted by code importance;
  completeness = per-factor 1 - entropy over codes (base K) weighted by factor importance;
- `modularity`: Ridgeway & Zemel's score on the same discretised mutual information.

DCI importances, a deviation from disentanglement_lib made for speed (``importance="gbt"`` with ``ordinal``
flags, what `disent_metric` and the exact ceiling use): an ordinal factor (a continuous factor's grid code:
scale, orientation, positions) is fitted by sklearn's GradientBoostingRegressor (squared error on the code, one
tree per iteration), a categorical one by GradientBoostingClassifier as in disentanglement_lib (one tree per
class and iteration); both with sklearn's defaults (100 iterations, depth 3, learning rate 0.1), importances their
``feature_importances_``. A regressor's informativeness is the accuracy of its prediction rounded to the nearest
code (clipped to the codes seen in training), so the column stays an accuracy; with few iterations (tests use
5-10) the shrunken fit has not converged and this accuracy is low, at 100 it matches the classifiers'.
Measured (one thread on 2 shared cores, 6 codes, shapes' factor grids 3 x 6 x 40 x 32 x 32, codes = factors +
noise and one pure-noise code): classifiers everywhere take 29 s per DCI call at 667 / 333 rows and about 300 s
at 10,000 / 5,000 (113 classes, ~1.1 ms per tree); the default 1 s and 13-24 s. It also scores known cases
closer to their truth: disentanglement 0.98 against the classifiers' 0.50 at 667 rows on the case above (40-
and 32-class classifiers fit the noise code), 0.996 against 0.91 (10 iterations) at 10,000; on the planted
generator's exact codes rotated 45 degrees within two factor pairs (truth 0.655: four codes split evenly between
two of five factors, one pure) 0.654 against the classifiers' 0.298 (500 codes, 10 iterations). Histogram
boosting (HistGradientBoosting*, gain importances summed over its trees) was 2.7 s at 10,000 / 5,000 but has
no public importances and scored the known case lower (0.979). ``importance="gbt_classifier"``, or ``gbt``
without ``ordinal``, is disentanglement_lib's classifier for every factor.

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
import scipy.stats
import torch
from sklearn.metrics import mutual_info_score

from dplase.data.base import sample_without_replacement
from dplase.metrics.context import EvalContext, Row

N_BINS = 20
#: every score `disentanglement_scores` returns, in order
SCORES = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_train",
          "dci_informativeness_test", "modularity")
IMPORTANCES = ("gbt", "gbt_classifier", "lasso")
#: real images per dataset.get / encoder call when encoding the disentanglement draw
ENCODE_BATCH = 1024


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2:
        raise ValueError(f"codes and factors must be 2-D (N x K, N x F), got {codes.shape} and {factors.shape}")
    if len(codes) != len(factors):
        raise ValueError(f"codes and factors need the same number of rows, got {len(codes)} and {len(factors)}")
    if len(codes) < 2:
        raise ValueError("need at least 2 samples")
    if factors.dtype.kind == "f":
        if not np.all(np.isfinite(factors)) or np.any(factors != np.round(factors)):
            raise ValueError("factors must be integer codes; discretise continuous factors first "
                             "(e.g. FactorSpec.codes)")
    return codes, factors.astype(np.int64)


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


def _rounded_accuracy(pred: np.ndarray, y: np.ndarray, lo: int, hi: int) -> float:
    return float(np.mean(np.clip(np.round(pred), lo, hi) == y))


def importance_matrix(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    importance: str = "gbt", seed: int = 0, n_estimators: int = 100, alpha: float = 0.01,
    ordinal: Sequence[bool] | None = None,
) -> tuple[np.ndarray, float, float]:
    """K x F importances and mean train / test informativeness (accuracy for gbt, R² for lasso).

    ``ordinal[j]``: factor j's codes are ordered (a continuous factor's grid), so gbt regresses it (see the
    module); None: every factor categorical. ``gbt_classifier`` ignores it."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.linear_model import Lasso

    if importance not in IMPORTANCES:
        raise ValueError(f"unknown DCI importance '{importance}'; choose {', '.join(IMPORTANCES)}")
    k, f = x_train.shape[1], y_train.shape[1]
    ordinal = [False] * f if ordinal is None or importance == "gbt_classifier" else [bool(o) for o in ordinal]
    if len(ordinal) != f:
        raise ValueError(f"ordinal has {len(ordinal)} flags for {f} factors")
    imp = np.zeros((k, f))
    train_scores, test_scores = [], []
    if importance == "lasso":
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-12
        xs_train, xs_test = (x_train - mean) / std, (x_test - mean) / std
    for j in range(f):
        if importance == "lasso":
            y_mean, y_std = y_train[:, j].mean(), y_train[:, j].std() + 1e-12
            model = Lasso(alpha=alpha, random_state=seed)
            model.fit(xs_train, (y_train[:, j] - y_mean) / y_std)
            imp[:, j] = np.abs(model.coef_)
            train_scores.append(model.score(xs_train, (y_train[:, j] - y_mean) / y_std))
            test_scores.append(model.score(xs_test, (y_test[:, j] - y_mean) / y_std))
        elif ordinal[j]:
            model = GradientBoostingRegressor(n_estimators=n_estimators, random_state=seed)
            model.fit(x_train, y_train[:, j])
            imp[:, j] = np.abs(model.feature_importances_)
            lo, hi = int(y_train[:, j].min()), int(y_train[:, j].max())
            train_scores.append(_rounded_accuracy(model.predict(x_train), y_train[:, j], lo, hi))
            test_scores.append(_rounded_accuracy(model.predict(x_test), y_test[:, j], lo, hi))
        else:
            model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed)
            model.fit(x_train, y_train[:, j])
            imp[:, j] = np.abs(model.feature_importances_)
            train_scores.append(np.mean(model.predict(x_train) == y_train[:, j]))
            test_scores.append(np.mean(model.predict(x_test) == y_test[:, j]))
    return imp, float(np.mean(train_scores)), float(np.mean(test_scores))


def dci_from_importance(imp: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of a K x F importance matrix (disentanglement_lib's formulas)."""
    k, f = imp.shape
    per_code = 1.0 - scipy.stats.entropy(imp.T + 1e-11, base=f) if f > 1 else np.ones(k)
    per_factor = 1.0 - scipy.stats.entropy(imp + 1e-11, base=k) if k > 1 else np.ones(f)
    weights = imp if imp.sum() > 0 else np.ones_like(imp)
    code_importance = weights.sum(axis=1) / weights.sum()
    factor_importance = weights.sum(axis=0) / weights.sum()
    return float(np.sum(per_code * code_importance)), float(np.sum(per_factor * factor_importance))


def dci(codes: np.ndarray, factors: np.ndarray, importance: str = "gbt", train_fraction: float = 2 / 3,
        seed: int = 0, n_estimators: int = 100, ordinal: Sequence[bool] | None = None,
        n_train: int | None = None) -> dict[str, float]:
    """DCI scores: {"disentanglement", "completeness", "informativeness_train", "informativeness_test"}.

    The first ``n_train`` rows (default: ``train_fraction`` of them) train the importance models, the rest test
    them (pass shuffled rows). ``importance`` is "gbt" (classifiers, as disentanglement_lib, but regressors for
    the ``ordinal`` factors: see the module), "gbt_classifier" or "lasso".
    """
    codes, factors = _check(codes, factors)
    n_train = round(len(codes) * train_fraction) if n_train is None else int(n_train)
    if not 0 < n_train < len(codes):
        raise ValueError(f"{n_train} train rows leave no train or no test rows of {len(codes)}")
    imp, train_score, test_score = importance_matrix(
        codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:], importance, seed, n_estimators,
        ordinal=ordinal,
    )
    d, c = dci_from_importance(imp)
    return {"disentanglement": d, "completeness": c, "informativeness_train": train_score,
            "informativeness_test": test_score}


def ordinal_factors(specs: Sequence[Any]) -> list[bool]:
    """Per FactorSpec: whether `factor_codes` gives it ordered codes (every continuous factor)."""
    return [spec.kind != "categorical" for spec in specs]


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
        """The row note: the DCI split, and what a too small dataset cut."""
        parts = [f"importances on {self.n_train} rows, informativeness_test on {self.n_test} others"] if dci else []
        if self.whole:
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
                           sizes: Sizes | None = None) -> dict[str, float]:
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
                     ordinal=ordinal, n_train=sizes.n_train)
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
        note = undefined.get(name) or sizes.note(is_dci)
        rows.append({"metric": f"{name}{suffix}", "value": float(value),
                     "n_samples": sizes.n_train + sizes.n_test if is_dci else sizes.n_mig, "note": note})
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
        rows.append({"metric": "encoder_r2", "value": math.nan, "n_samples": 0,
                     "note": "no code encoder trained: " + rows[0]["note"]})
        return rows
    encoder = train_code_encoder(ctx.generator, ctx.directions.directions, steps=cfg.encoder_steps,
                                 seed=cfg.seed + 3, batch_size=cfg.encoder_batch_size, progress=cfg.progress)
    indices = sample_without_replacement(len(ctx.dataset), sizes.n_draw, cfg.seed + 2)
    codes, frame = encode_dataset(encoder, ctx.dataset, indices)
    factors = factor_codes(frame, specs)
    scores = disentanglement_scores(codes, factors, importance=cfg.dci_importance, seed=cfg.seed,
                                    n_estimators=cfg.dci_estimators, ordinal=ordinal_factors(specs), sizes=sizes)
    rows = score_rows(scores, sizes, codes.shape[1], factors.shape[1])
    fit = encoder_fit(encoder, ctx.generator, ctx.directions.directions, seed=cfg.seed + 7)
    rows += [{"direction": j, "metric": "encoder_r2", "value": float(r2), "n_samples": N_ENCODER_HELDOUT}
             for j, r2 in enumerate(fit)]
    rows.append({"metric": "encoder_r2", "value": float(np.mean(fit)), "n_samples": N_ENCODER_HELDOUT})
    return rows
