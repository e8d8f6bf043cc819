"""DCI (Eastwood & Williams 2018) as disentanglement_lib defines it: an importance matrix (codes x factors) from
gradient-boosted trees (``feature_importances_``, default) or lasso coefficients; disentanglement = per-code
1 - entropy over factors (base F) weighted by code importance; completeness = per-factor 1 - entropy over codes
(base K) weighted by factor importance; informativeness = the importance models' accuracy (R² for lasso).

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
Periodic factors (``periodic``: orientation over its whole period) are scored on the circle: (cos, sin) of the
angle regressed, so the last code is next to the first (see `importance_matrix`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.stats

IMPORTANCES = ("gbt", "gbt_classifier", "lasso")


def check_inputs(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes as float64 and factors as int64 codes, or a ValueError saying what is wrong."""
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


def _rounded_accuracy(pred: np.ndarray, y: np.ndarray, lo: int, hi: int) -> float:
    return float(np.mean(np.clip(np.round(pred), lo, hi) == y))


def importance_matrix(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    importance: str = "gbt", seed: int = 0, n_estimators: int = 100, alpha: float = 0.01,
    ordinal: Sequence[bool] | None = None, periodic: Sequence[int | None] | None = None,
) -> tuple[np.ndarray, float, float]:
    """K x F importances and mean train / test informativeness (accuracy for gbt, R² for lasso).

    ``ordinal[j]``: factor j's codes are ordered (a continuous factor's grid), so gbt regresses it (see the
    module); None: every factor categorical. ``periodic[j]`` = n: factor j's codes 0..n-1 lie on a circle (code
    n-1 is next to 0), so gbt and lasso regress (cos, sin) of 2π code / n, the importances the mean of the two
    fits', gbt's accuracy that of the decoded angle's nearest code. ``gbt_classifier`` ignores both."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.linear_model import Lasso

    if importance not in IMPORTANCES:
        raise ValueError(f"unknown DCI importance '{importance}'; choose {', '.join(IMPORTANCES)}")
    k, f = x_train.shape[1], y_train.shape[1]
    classify = importance == "gbt_classifier"
    ordinal = [False] * f if ordinal is None or classify else [bool(o) for o in ordinal]
    periodic = [None] * f if periodic is None or classify else list(periodic)
    if len(ordinal) != f or len(periodic) != f:
        raise ValueError(f"ordinal / periodic have {len(ordinal)} / {len(periodic)} flags for {f} factors")
    imp = np.zeros((k, f))
    train_scores, test_scores = [], []
    if importance == "lasso":
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-12
        xs_train, xs_test = (x_train - mean) / std, (x_test - mean) / std
    for j in range(f):
        if periodic[j]:  # lasso fits the standardised codes, as below
            fit_train, fit_test = (xs_train, xs_test) if importance == "lasso" else (x_train, x_test)
            imp[:, j], train_score, test_score = _periodic_fit(
                fit_train, y_train[:, j], fit_test, y_test[:, j], int(periodic[j]), importance, seed, n_estimators,
                alpha)
            train_scores.append(train_score)
            test_scores.append(test_score)
        elif importance == "lasso":
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


def _periodic_fit(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, n_codes: int,
                  importance: str, seed: int, n_estimators: int, alpha: float) -> tuple[np.ndarray, float, float]:
    """Importances (K,) and train / test informativeness of one periodic factor: (cos, sin) of its angle
    2π code / n_codes regressed by gbt or lasso (see `importance_matrix`; lasso gets standardised codes)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import Lasso

    def embed(y: np.ndarray) -> np.ndarray:
        angle = 2 * math.pi * y / n_codes
        return np.stack([np.cos(angle), np.sin(angle)], axis=1)

    targets = embed(y_train)
    models = []
    for c in range(2):
        model = (Lasso(alpha=alpha, random_state=seed) if importance == "lasso"
                 else GradientBoostingRegressor(n_estimators=n_estimators, random_state=seed))
        models.append(model.fit(x_train, targets[:, c]))
    imp = np.mean([np.abs(m.coef_ if importance == "lasso" else m.feature_importances_) for m in models], axis=0)
    if importance == "lasso":  # R² of the embedding, pooled over its two coordinates
        scores = [float(np.mean([m.score(x, embed(y)[:, c]) for c, m in enumerate(models)]))
                  for x, y in ((x_train, y_train), (x_test, y_test))]
    else:  # accuracy of the decoded angle's nearest code, with the wrap (code n - 1 is next to 0)
        scores = []
        for x, y in ((x_train, y_train), (x_test, y_test)):
            angle = np.arctan2(models[1].predict(x), models[0].predict(x))
            scores.append(float(np.mean(np.round(angle * n_codes / (2 * math.pi)) % n_codes == y % n_codes)))
    return imp, scores[0], scores[1]


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
        n_train: int | None = None, periodic: Sequence[int | None] | None = None) -> dict[str, float]:
    """DCI scores: {"disentanglement", "completeness", "informativeness_train", "informativeness_test"}.

    The first ``n_train`` rows (default: ``train_fraction`` of them) train the importance models, the rest test
    them (pass shuffled rows). ``importance`` is "gbt" (classifiers, as disentanglement_lib, but regressors for
    the ``ordinal`` factors and (cos, sin) regressors for the ``periodic`` ones: see `importance_matrix`),
    "gbt_classifier" or "lasso".
    """
    codes, factors = check_inputs(codes, factors)
    n_train = round(len(codes) * train_fraction) if n_train is None else int(n_train)
    if not 0 < n_train < len(codes):
        raise ValueError(f"{n_train} train rows leave no train or no test rows of {len(codes)}")
    imp, train_score, test_score = importance_matrix(
        codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:], importance, seed, n_estimators,
        ordinal=ordinal, periodic=periodic,
    )
    d, c = dci_from_importance(imp)
    return {"disentanglement": d, "completeness": c, "informativeness_train": train_score,
            "informativeness_test": test_score}


def ordinal_factors(specs: Sequence[Any]) -> list[bool]:
    """Per FactorSpec: whether `factor_codes` gives it ordered codes (every continuous factor)."""
    return [spec.kind != "categorical" for spec in specs]


def periodic_factors(specs: Sequence[Any]) -> list[int | None]:
    """Per FactorSpec: the number of codes of a periodic factor whose grid covers its whole period (orientation
    over [0, 2π): its last code is next to its first), else None."""
    out: list[int | None] = []
    for spec in specs:
        period, n = getattr(spec, "period", None), spec.n_values
        step = (spec.high - spec.low) / (n - 1) if n and n > 1 else None
        covers = period and step and math.isclose(spec.high - spec.low + step, period, rel_tol=1e-6)
        out.append(int(n) if spec.kind != "categorical" and covers else None)
    return out
