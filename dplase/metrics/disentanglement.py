"""Disentanglement scores as disentanglement_lib defines them, plus the Khrulkov et al. (2021) protocol.

Public functions take numpy arrays: ``codes`` (N x K, real) and ``factors`` (N x F, integer codes) and return
floats, so they can be checked against any other implementation:
- `mig`: mutual information gap, codes discretised into 20 equal-width bins per code (np.histogram edges),
  MI and factor entropies with sklearn's ``mutual_info_score`` (nats), gap normalised by the factor entropy;
- `dci`: importance matrix (codes x factors) from gradient-boosted trees (``feature_importances_``, default) or
  lasso coefficients; disentanglement = per-code 1 - entropy over factors (base F) weighted by code importance;
  completeness = per-factor 1 - entropy over codes (base K) weighted by factor importance;
- `modularity`: Ridgeway & Zemel's score on the same discretised mutual information.

`encode_real` is the protocol that turns directions into codes for real images: an encoder is trained on
generated images to regress their coordinates along the K directions, then applied to real images.
`disent_metric` is the registered metric "disent": that protocol on the evaluation's real set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.stats
import torch
from sklearn.metrics import mutual_info_score

from dplase.metrics.context import EvalContext, Row

N_BINS = 20


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


def importance_matrix(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    importance: str = "gbt", seed: int = 0, n_estimators: int = 100, alpha: float = 0.01,
) -> tuple[np.ndarray, float, float]:
    """K x F importances and mean train / test informativeness (accuracy for gbt, R² for lasso)."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import Lasso

    k, f = x_train.shape[1], y_train.shape[1]
    imp = np.zeros((k, f))
    train_scores, test_scores = [], []
    if importance == "lasso":
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-12
        xs_train, xs_test = (x_train - mean) / std, (x_test - mean) / std
    for j in range(f):
        if importance == "gbt":
            model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed)
            model.fit(x_train, y_train[:, j])
            imp[:, j] = np.abs(model.feature_importances_)
            train_scores.append(np.mean(model.predict(x_train) == y_train[:, j]))
            test_scores.append(np.mean(model.predict(x_test) == y_test[:, j]))
        elif importance == "lasso":
            y_mean, y_std = y_train[:, j].mean(), y_train[:, j].std() + 1e-12
            model = Lasso(alpha=alpha, random_state=seed)
            model.fit(xs_train, (y_train[:, j] - y_mean) / y_std)
            imp[:, j] = np.abs(model.coef_)
            train_scores.append(model.score(xs_train, (y_train[:, j] - y_mean) / y_std))
            test_scores.append(model.score(xs_test, (y_test[:, j] - y_mean) / y_std))
        else:
            raise ValueError(f"unknown DCI importance '{importance}'; choose gbt or lasso")
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
        seed: int = 0, n_estimators: int = 100) -> dict[str, float]:
    """DCI scores: {"disentanglement", "completeness", "informativeness_train", "informativeness_test"}.

    The first ``train_fraction`` of the rows train the importance models, the rest test them (pass shuffled
    rows). ``importance`` is "gbt" (sklearn GradientBoostingClassifier, as disentanglement_lib) or "lasso".
    """
    codes, factors = _check(codes, factors)
    n_train = round(len(codes) * train_fraction)
    if not 0 < n_train < len(codes):
        raise ValueError(f"train_fraction {train_fraction} leaves no train or no test rows for {len(codes)}")
    imp, train_score, test_score = importance_matrix(
        codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:], importance, seed, n_estimators
    )
    d, c = dci_from_importance(imp)
    return {"disentanglement": d, "completeness": c, "informativeness_train": train_score,
            "informativeness_test": test_score}


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


def disentanglement_scores(codes: np.ndarray, factors: np.ndarray, importance: str = "gbt",
                           seed: int = 0, n_estimators: int = 100) -> dict[str, float]:
    """All scores at once: mig, dci_* and modularity (MIG / modularity need K >= 2)."""
    out: dict[str, float] = {}
    if codes.shape[1] >= 2:
        out["mig"] = mig(codes, factors)
    scores = dci(codes, factors, importance=importance, seed=seed, n_estimators=n_estimators)
    out.update({f"dci_{k}": v for k, v in scores.items()})
    if factors.shape[1] >= 2:
        out["modularity"] = modularity(codes, factors)
    return out


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


def disent_metric(ctx: EvalContext) -> list[Row]:
    """MIG, DCI and modularity of the real set's codes (encoder trained with seed + 3, scores with seed), and
    the encoder's held-out fit (``encoder_r2`` per direction and their mean; latents seed + 7): a low fit
    means the codes, and so every score here, are mostly noise."""
    cfg = ctx.config
    encoder = train_code_encoder(ctx.generator, ctx.directions.directions, steps=cfg.encoder_steps,
                                 seed=cfg.seed + 3, batch_size=cfg.encoder_batch_size, progress=cfg.progress)
    real_images, real_factors = ctx.real
    codes = encode(encoder, real_images)
    factors = factor_codes(real_factors, ctx.dataset.factor_specs)
    scores = disentanglement_scores(codes, factors, importance=cfg.dci_importance, seed=cfg.seed,
                                    n_estimators=cfg.dci_estimators)
    rows: list[Row] = [{"metric": name, "value": value, "n_samples": len(codes)} for name, value in scores.items()]
    fit = encoder_fit(encoder, ctx.generator, ctx.directions.directions, seed=cfg.seed + 7)
    rows += [{"direction": j, "metric": "encoder_r2", "value": float(r2), "n_samples": N_ENCODER_HELDOUT}
             for j, r2 in enumerate(fit)]
    rows.append({"metric": "encoder_r2", "value": float(np.mean(fit)), "n_samples": N_ENCODER_HELDOUT})
    return rows
