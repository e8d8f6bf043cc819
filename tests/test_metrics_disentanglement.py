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


# --- sample sizes, one-factor NaN rows, the kind-aware gbt estimator (issue 15) -----------------------
def test_ordinal_gbt_equals_sklearn_reference_loops() -> None:
    """The default estimator (regression trees for ordinal factors, classification trees for categorical ones)
    against sklearn called directly, importances and informativeness by explicit loops."""
    from sklearn.ensemble import GradientBoostingRegressor

    factors = _factors(600, seed=7)
    codes = _rotated(factors, seed=8)
    ordinal = [False, True, True]
    n_train = 400
    imp = np.zeros((codes.shape[1], factors.shape[1]))
    test_acc = []
    for j in range(factors.shape[1]):
        y = factors[:n_train, j]
        if ordinal[j]:
            model = GradientBoostingRegressor(n_estimators=10, random_state=0).fit(codes[:n_train], y)
            pred = [min(max(round(p), y.min()), y.max()) for p in model.predict(codes[n_train:])]
        else:
            model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(codes[:n_train], y)
            pred = list(model.predict(codes[n_train:]))
        imp[:, j] = model.feature_importances_
        test_acc.append(sum(int(p == t) for p, t in zip(pred, factors[n_train:, j], strict=True)) / 200)
    want_d, want_c = _ref_dci(imp)
    got = dis.dci(codes, factors, n_estimators=10, n_train=n_train, ordinal=ordinal)
    assert got["disentanglement"] == pytest.approx(want_d, abs=1e-9)
    assert got["completeness"] == pytest.approx(want_c, abs=1e-9)
    assert got["informativeness_test"] == pytest.approx(np.mean(test_acc), abs=1e-12)
    # without ordinal flags, and with gbt_classifier, every factor gets the classifier (disentanglement_lib)
    assert (dis.dci(codes, factors, n_estimators=10, n_train=n_train)
            == dis.dci(codes, factors, importance="gbt_classifier", n_estimators=10, n_train=n_train,
                       ordinal=ordinal))


def test_ordinal_gbt_scores_a_known_many_valued_case_near_its_truth() -> None:
    """Shapes-like grids (3 shapes, 40 orientations, 32 positions), codes = factors + noise plus a pure-noise
    code, 667 train rows, 50 iterations: measured disentanglement 0.990 / completeness 0.988 with the default
    estimator (0.6 s), 0.493 / 0.479 with classifiers everywhere (8.3 s; train accuracy 0.999: their 40- and
    32-class trees fit the noise code); rotated codes 0.44 / 0.37."""
    rng = np.random.default_rng(0)
    sizes = (3, 40, 32)
    factors = np.stack([rng.integers(0, s, 1000) for s in sizes], axis=1)
    z = (factors - (np.array(sizes) - 1) / 2) / np.array(sizes)
    codes = np.concatenate([z + rng.normal(0, 0.05, z.shape), rng.normal(size=(1000, 1))], axis=1)
    got = dis.dci(codes, factors, ordinal=[False, True, True], n_estimators=50)
    assert got["disentanglement"] > 0.9 and got["completeness"] > 0.9, got
    rotated = dis.dci(codes @ special_ortho_group.rvs(4, random_state=1), factors, ordinal=[False, True, True],
                      n_estimators=50)
    assert rotated["disentanglement"] < 0.6 and rotated["completeness"] < 0.6, rotated


def test_sample_without_replacement_and_sizes() -> None:
    from dplase.data.base import sample_without_replacement

    idx = sample_without_replacement(1000, 600, seed=3)
    assert len(idx) == 600 and len(set(idx.tolist())) == 600 and int(idx.max()) < 1000
    assert torch_equal(idx, sample_without_replacement(1000, 600, seed=3))
    whole = sample_without_replacement(50, 600, seed=3)
    assert sorted(whole.tolist()) == list(range(50))
    full = dis.plan_sizes(100_000, 10_000, 10_000, 5_000)
    assert (full.n_draw, full.n_mig, full.n_train, full.n_test, full.whole) == (15_000, 10_000, 10_000, 5_000, False)
    small = dis.plan_sizes(1797, 10_000, 10_000, 5_000)  # digits: used whole, DCI split 2 : 1
    assert (small.n_draw, small.n_mig, small.n_train, small.n_test, small.whole) == (1797, 1797, 1198, 599, True)
    assert "whole dataset (1797 items" in small.note(dci=False)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_one_factor_scores_are_nan_rows_with_the_reason() -> None:
    """Digits has one factor: mig / dci_* / modularity rows are NaN with the reason and no sample count (nothing
    was scored), and no code encoder is trained (nothing reaches the generator)."""
    import math
    from types import SimpleNamespace

    from dplase.data import load_dataset
    from dplase.metrics.context import EvalConfig

    factors = _factors(300)[:, :1]
    scores = dis.disentanglement_scores(_ideal(factors), factors)
    assert list(scores) == list(dis.SCORES) and all(math.isnan(v) for v in scores.values())
    digits = load_dataset("digits")
    ctx = SimpleNamespace(config=EvalConfig(progress=False), dataset=digits, k=4, generator=None, directions=None)
    rows = dis.disent_metric(ctx)
    by_name = {r["metric"]: r for r in rows}
    assert set(by_name) == {*dis.SCORES, "encoder_r2"}
    for name in dis.SCORES:
        assert math.isnan(by_name[name]["value"]) and "need at least 2 factors" in by_name[name]["note"]
        assert by_name[name]["n_samples"] is None
    assert math.isnan(by_name["encoder_r2"]["value"]) and "no code encoder" in by_name["encoder_r2"]["note"]


def test_one_factor_exact_ceiling_is_nan_rows_with_the_reason() -> None:
    import math

    import torch

    from dplase.generators.planted import build_planted
    from dplase.metrics.exact import exact_ceiling

    gen = build_planted(z_dim=8, image_size=32, seed=0, factors=("pos_x",))
    directions = torch.eye(8)[:2]
    sizes = dis.plan_sizes(200, 200, 100, 50)
    rows = exact_ceiling(gen, directions, gen.prior.sample(200, 0), sizes)
    assert [r["metric"] for r in rows] == [f"{name}_exact" for name in dis.SCORES]
    assert all(math.isnan(r["value"]) and "need at least 2 factors" in r["note"] for r in rows)
    assert [r["n_samples"] for r in rows] == [None] * len(dis.SCORES)


def test_scores_use_the_planned_rows() -> None:
    """MIG / modularity on the first n_mig rows, DCI train / test the next split; rows record the sizes. MIG at
    the new size (10,000 codes) still equals the independent reference."""
    factors = _factors(10_000, seed=9)
    codes = _rotated(factors, seed=10)
    sizes = dis.plan_sizes(10_000, 10_000, 300, 150)
    scores = dis.disentanglement_scores(codes, factors, n_estimators=5, ordinal=[False, True, True], sizes=sizes)
    assert scores["mig"] == pytest.approx(_ref_mig(codes, factors), abs=1e-9)
    assert scores["modularity"] == pytest.approx(_ref_modularity(codes, factors), abs=1e-9)
    want = dis.dci(codes[:450], factors[:450], n_estimators=5, ordinal=[False, True, True], n_train=300)
    assert scores["dci_disentanglement"] == want["disentanglement"]
    rows = {r["metric"]: r for r in dis.score_rows(scores, sizes, 4, 3)}
    assert rows["mig"]["n_samples"] == 10_000 and rows["mig"]["note"] is None
    assert rows["dci_completeness"]["n_samples"] == 450
    assert rows["dci_informativeness_train"]["n_samples"] == 300
    assert rows["dci_informativeness_test"]["n_samples"] == 150
    assert rows["dci_completeness"]["note"] == "importances on 300 rows, informativeness_test on 150 others"


def test_periodic_factor_is_scored_on_the_circle() -> None:
    """Orientation-like factor: 40 codes on a circle, encoded exactly by (cos, sin) codes plus a noise code.
    Regressing the code number from them is wrong at the wrap (code 39 is next to 0); regressing (cos, sin) is
    exact. Lasso (linear) shows it plainly: R² ~ 1 on the circle, far lower on the code number."""
    from dplase.data.shapes import ShapesDataset

    rng = np.random.default_rng(3)
    n = 900
    angle_code = rng.integers(0, 40, n)
    other = rng.integers(0, 6, n)
    theta = 2 * np.pi * angle_code / 40
    codes = np.stack([np.cos(theta), np.sin(theta), other + 0.01 * rng.normal(size=n), rng.normal(size=n)], 1)
    factors = np.stack([angle_code, other], 1)
    flat = dis.dci(codes, factors, importance="lasso", n_train=600)
    circle = dis.dci(codes, factors, importance="lasso", n_train=600, periodic=[40, None])
    assert circle["informativeness_test"] > 0.99 and flat["informativeness_test"] < 0.8
    assert circle["disentanglement"] > 0.95
    gbt = dis.dci(codes, factors, n_train=600, n_estimators=50, ordinal=[True, True], periodic=[40, None])
    assert gbt["informativeness_test"] > 0.95 and gbt["disentanglement"] > 0.9
    # the shapes dataset's orientation covers its whole period: 40 codes on the circle; nothing else is periodic
    specs = ShapesDataset(image_size=32).factor_specs
    assert dict(zip([s.name for s in specs], dis.periodic_factors(specs), strict=True)) == {
        "shape": None, "scale": None, "orientation": 40, "pos_x": None, "pos_y": None}
