"""MIG / DCI / modularity: ideal and rotated codes, and agreement with an independent numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import special_ortho_group
from sklearn.ensemble import GradientBoostingClassifier

from dplase.metrics import disentanglement as dis


def _factors(n: int = 1500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 5, n), rng.integers(0, 4, n), rng.integers(0, 6, n)], axis=1)


def _ideal(factors: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return factors + rng.uniform(-0.1, 0.1, factors.shape)


def _rotated(factors: np.ndarray, seed: int = 2) -> np.ndarray:
    codes = _ideal(factors)
    codes = (codes - codes.mean(0)) / codes.std(0)
    return codes @ special_ortho_group.rvs(codes.shape[1], random_state=seed)


# --- independent reference (direct numpy formulas following disentanglement_lib) -----------------------
def _ref_bins(x: np.ndarray, n_bins: int = 20) -> np.ndarray:
    lo, hi = x.min(), x.max()
    return np.minimum(np.floor((x - lo) / (hi - lo) * n_bins), n_bins - 1).astype(int)


def _ref_mi(a: np.ndarray, b: np.ndarray) -> float:
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    joint = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(joint, (ia, ib), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def _ref_mi_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    binned = [_ref_bins(codes[:, i]) for i in range(codes.shape[1])]
    return np.array([[_ref_mi(b, factors[:, j]) for j in range(factors.shape[1])] for b in binned])


def _ref_mig(codes: np.ndarray, factors: np.ndarray) -> float:
    m = _ref_mi_matrix(codes, factors)
    h = np.array([_ref_mi(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])
    gaps = []
    for j in range(factors.shape[1]):
        col = sorted(m[:, j], reverse=True)
        gaps.append((col[0] - col[1]) / h[j])
    return float(np.mean(gaps))


def _ref_modularity(codes: np.ndarray, factors: np.ndarray) -> float:
    m2 = _ref_mi_matrix(codes, factors) ** 2
    scores = []
    for row in m2:
        top = row.max()
        scores.append(0.0 if top == 0 else 1 - (row.sum() - top) / (top * (len(row) - 1)))
    return float(np.mean(scores))


def _ref_entropy(p: np.ndarray, base: int) -> float:
    p = p / p.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(base))


def _ref_dci(imp: np.ndarray) -> tuple[float, float]:
    k, f = imp.shape
    d = sum((1 - _ref_entropy(imp[i] + 1e-11, f)) * imp[i].sum() / imp.sum() for i in range(k))
    c = sum((1 - _ref_entropy(imp[:, j] + 1e-11, k)) * imp[:, j].sum() / imp.sum() for j in range(f))
    return d, c


# --- tests ------------------------------------------------------------------------------------------
def test_ideal_code_scores_one_and_rotation_scores_low() -> None:
    factors = _factors()
    ideal, rotated = _ideal(factors), _rotated(factors)
    assert dis.mig(ideal, factors) > 0.95
    assert dis.mig(rotated, factors) < 0.3
    assert dis.modularity(ideal, factors) > 0.98
    assert dis.modularity(rotated, factors) < 0.8
    d_ideal = dis.dci(ideal, factors, n_estimators=20)
    d_rot = dis.dci(rotated, factors, n_estimators=20)
    assert d_ideal["disentanglement"] > 0.9 and d_ideal["completeness"] > 0.9
    assert d_ideal["informativeness_test"] > 0.99
    assert d_rot["disentanglement"] < 0.6 and d_rot["completeness"] < 0.6


@pytest.mark.parametrize("which", ["ideal", "rotated", "noise"])
def test_mig_and_modularity_equal_independent_reference(which: str) -> None:
    factors = _factors(800, seed=3)
    codes = {"ideal": _ideal(factors), "rotated": _rotated(factors),
             "noise": np.random.default_rng(4).normal(size=(800, 4))}[which]
    assert dis.mig(codes, factors) == pytest.approx(_ref_mig(codes, factors), abs=1e-9)
    assert dis.modularity(codes, factors) == pytest.approx(_ref_modularity(codes, factors), abs=1e-9)


def test_dci_equals_reference_formulas_on_sklearn_importances() -> None:
    factors = _factors(600, seed=5)
    codes = _rotated(factors, seed=6)
    n_train = 400
    imp = np.zeros((codes.shape[1], factors.shape[1]))
    for j in range(factors.shape[1]):
        model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(codes[:n_train], factors[:n_train, j])
        imp[:, j] = model.feature_importances_
    want_d, want_c = _ref_dci(imp)
    got = dis.dci(codes, factors, n_estimators=10, train_fraction=n_train / 600)
    assert got["disentanglement"] == pytest.approx(want_d, abs=1e-9)
    assert got["completeness"] == pytest.approx(want_c, abs=1e-9)


def test_dci_from_importance_known_values() -> None:
    assert dis.dci_from_importance(np.eye(3)) == pytest.approx((1.0, 1.0), abs=1e-6)
    assert dis.dci_from_importance(np.ones((3, 3))) == pytest.approx((0.0, 0.0), abs=1e-6)
    rng = np.random.default_rng(0)
    imp = rng.random((4, 3))
    assert dis.dci_from_importance(imp) == pytest.approx(_ref_dci(imp), abs=1e-9)


def test_lasso_importance_ideal_code() -> None:
    factors = _factors(600)
    scores = dis.dci(_ideal(factors), factors, importance="lasso")
    assert scores["disentanglement"] > 0.9 and scores["informativeness_test"] > 0.9


def test_bad_inputs_raise_clear_errors() -> None:
    factors = _factors(50)
    with pytest.raises(ValueError, match="same number of rows"):
        dis.mig(np.zeros((49, 3)), factors)
    with pytest.raises(ValueError, match="integer codes"):
        dis.mig(np.random.default_rng(0).normal(size=(50, 3)), factors + 0.5)
    with pytest.raises(ValueError, match="at least 2 code dimensions"):
        dis.mig(np.zeros((50, 1)), factors)
    with pytest.raises(ValueError, match="unknown DCI importance"):
        dis.dci(_ideal(factors), factors, importance="forest")


def test_factor_codes_uses_spec_grids() -> None:
    import pandas as pd

    from dplase.data import FactorSpec

    specs = [FactorSpec("shape", "categorical", 0, 2, 3), FactorSpec("x", "continuous", 0.0, 1.0, 5)]
    frame = pd.DataFrame({"shape": [0, 2, 1], "x": [0.0, 0.5, 1.0]})
    assert dis.factor_codes(frame, specs).tolist() == [[0, 0], [2, 2], [1, 4]]
