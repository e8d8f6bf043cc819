"""The planted dataset and the "exact" metric: exact attribute change, fidelity under walks, predictor agreement
and the encoder-free disentanglement ceiling, against the truth the planted generator is built from."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import tiny_evaluation_setup

from dplase.data import dataset_from_config, load_dataset
from dplase.data.planted import N_GRID_VALUES, PlantedDataset
from dplase.directions import DirectionSet
from dplase.generators.planted import FACTORS, build_planted
from dplase.methods import fit
from dplase.metrics.context import Row
from dplase.metrics.evaluate import EvalConfig, evaluate
from dplase.metrics.predictor import FactorPredictor, train_predictor

SIZE = 32


@pytest.fixture(scope="module")
def data() -> PlantedDataset:
    return load_dataset("planted", image_size=SIZE, size=4000)


@pytest.fixture(scope="module")
def untrained(data) -> FactorPredictor:
    torch.manual_seed(0)
    return FactorPredictor(1, SIZE, data.factor_specs, width=8, feature_dim=16)


def direction_sets(data) -> dict[str, DirectionSet]:
    """The oracle, the oracle rotated 45° within the pairs (q1, q2) and (q3, q4), and random orthonormal ones."""
    q = data.generator.planted_directions()
    s = 1 / math.sqrt(2)
    rotated = torch.stack([(q[0] + q[1]) * s, (q[0] - q[1]) * s, (q[2] + q[3]) * s, (q[2] - q[3]) * s, q[4]])
    random = torch.linalg.qr(torch.randn(16, 5, generator=torch.Generator().manual_seed(1)))[0].T
    return {"oracle": fit("oracle", data.generator, {"k": 5}),
            "rotated": DirectionSet(rotated, torch.ones(5), method="rotated", config={"k": 5}),
            "random": DirectionSet(random, torch.ones(5), method="random", config={"k": 5})}


def matrix(rows: list[Row], walk: str, k: int = 5) -> np.ndarray:
    """The K x F exact attribute-change matrix (step-null rows) of one walk."""
    return np.array([[next(r["value"] for r in rows if r.get("walk") == walk and r.get("direction") == j
                           and "step" not in r and r["metric"] == f"attr_exact.{f}") for f in FACTORS]
                     for j in range(k)])


def scalar(rows: list[Row], metric: str, walk: str | None = None) -> float:
    return next(r["value"] for r in rows if r["metric"] == metric and r.get("walk") == walk and "direction" not in r)


# ------------------------------------------------------------------------------------------------- dataset


def test_dataset_items_are_the_generators_images_and_exact_factors(data):
    idx = torch.tensor([0, 17, 3999, 17])
    images, factors = data.get(idx)
    twin = build_planted(16, SIZE, 1, 0, "aligned")  # built independently from the same config
    z = data.latents[idx]
    assert images.shape == (4, 1, SIZE, SIZE) and images.min() >= -1 and images.max() <= 1
    assert torch.equal(images, twin.generate(z))
    exact = twin.exact_factors(z)
    assert list(factors.columns) == [*FACTORS, "fidelity"] and data.factor_names == list(FACTORS)
    for column in factors.columns:
        np.testing.assert_array_equal(factors[column].to_numpy(), exact[column].double().numpy())
    for spec in data.factor_specs:  # physical units, consistent between specs and table
        assert spec.kind == "continuous" and spec.n_values == N_GRID_VALUES and spec.period is None
        assert factors[spec.name].between(spec.low, spec.high).all()
    # the pool depends on generator_seed only; seed sets the default seed of `sample`
    other = PlantedDataset(image_size=SIZE, seed=5, size=4000)
    assert torch.equal(other.latents, data.latents) and not torch.equal(other.sample_indices(8),
                                                                        data.sample_indices(8))
    assert not torch.equal(PlantedDataset(image_size=SIZE, generator_seed=1, size=10).latents, data.latents[:10])


def test_to_config_round_trips(data):
    custom = load_dataset("planted", image_size=SIZE, seed=3, z_dim=8, level="mixed", gains=[2, 1.5, 1, 0.7, 0.5],
                          prior="uniform", channels=3, generator_seed=4, size=50)
    for d in (data, custom):
        again = dataset_from_config(d.to_config())
        assert again.to_config() == d.to_config()
        a, b = d.sample(6), again.sample(6)
        assert torch.equal(a[0], b[0]) and a[1].equals(b[1])
    assert custom.channels == 3 and custom.sample(2)[0].shape == (2, 3, SIZE, SIZE)


@pytest.mark.parametrize(("options", "message"), [
    ({"size": 0}, "size must be an int >= 1"),
    ({"size": 2.5}, "size must be an int >= 1"),
    ({"channels": 2}, "channels must be 1 or 3"),
    ({"image_size": 48}, "supports image_size 32 or 64"),
    ({"prior": "cauchy"}, "unknown prior"),
    ({"generator_seed": "a"}, "generator_seed must be an int"),
    ({"z_dim": 4}, "z_dim=4 is smaller than the 5 planted factors"),
    ({"level": "hard"}, "unknown planted level"),
    ({"gains": [1.0]}, "one positive gain per planted factor"),
    ({"factors": ["pos_x"]}, "unknown option"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("planted", **{"image_size": SIZE, **options})


# --------------------------------------------------------------------------------------------- exact metric


@pytest.fixture(scope="module")
def walk_rows(data, untrained) -> dict[str, list[Row]]:
    config = EvalConfig(metrics=("exact",), n_samples=16, n_steps=5, max_eps=3.0, n_real=200, dci_estimators=5,
                        n_mig=200, n_dci_train=133, n_dci_test=67, progress=False)
    sets = direction_sets(data)
    return {name: evaluate(data.generator, sets[name], untrained, data, config) for name in ("oracle", "random")}


def test_oracle_exact_change_matrix_is_diagonal_and_random_directions_are_not(walk_rows):
    linear, norm = matrix(walk_rows["oracle"], "linear"), matrix(walk_rows["oracle"], "norm")
    off = ~np.eye(5, dtype=bool)
    # a planted factor depends on its own coordinate only: a linear walk along q_i moves no other factor
    # (measured off-diagonal <= 9e-8, float32 rounding; diagonal 1.04..1.36 at max_eps 3, n 16)
    assert np.all(linear[off] < 1e-6) and np.all(np.diag(linear) > 0.5)
    assert scalar(walk_rows["oracle"], "attr_exact_top_share", "linear") > 0.999  # measured 1 - 2e-7
    # the norm walk rescales z, which moves every coordinate a little: measured off-diagonal <= 0.094 x its
    # row's diagonal (off-diagonal <= 0.097, diagonal 1.04..1.30), top share 0.80
    assert np.all(norm[off] < 0.15 * np.diag(norm)[:, None])
    assert scalar(walk_rows["oracle"], "attr_exact_top_share", "norm") > 0.75
    # random orthonormal directions spread their change: measured top share 0.45, and every direction's second
    # factor moves >= 0.51 x its top one
    rand = matrix(walk_rows["random"], "linear")
    assert scalar(walk_rows["random"], "attr_exact_top_share", "linear") < 0.6
    assert np.all(np.sort(rand, axis=1)[:, -2] > 0.3 * rand.max(axis=1))


def test_linear_walks_lose_fidelity_and_norm_walks_keep_it(walk_rows):
    for rows in walk_rows.values():
        top = {w: [r["value"] for r in rows if r["metric"] == "attr_exact.fidelity" and r.get("walk") == w
                   and r.get("step") == 3.0] for w in ("linear", "norm")}
        # measured |Δ fidelity| at step 3: linear 0.20..0.40, norm <= 1.5e-7 (float32 rounding): for N(0, I)
        # log p0 depends on ||z|| only, which the norm walk keeps
        assert len(top["linear"]) == 5 and min(top["linear"]) > 0.1 and max(top["norm"]) < 1e-5


def test_no_rows_for_a_generator_without_exact_factors():
    data, gen, predictor, directions = tiny_evaluation_setup()
    config = EvalConfig(metrics=("exact",), n_samples=4, n_steps=3, n_real=20, progress=False)
    assert evaluate(gen, directions, predictor, data, config) == []


def test_row_format_mirrors_the_attr_metric(walk_rows):
    rows = walk_rows["oracle"]
    # extrapolated: every per-step row says whether its step lies past the trained range (max_eps 3 > T here)
    assert all(set(r) <= {"walk", "direction", "step", "metric", "value", "n_samples", "note", "extrapolated"}
               for r in rows)
    names = {r["metric"] for r in rows}
    assert {f"attr_exact.{f}" for f in (*FACTORS, "fidelity")} | {"attr_exact_top_share", "mig_exact",
                                                                   "dci_disentanglement_exact"} <= names
    steps = {r["step"] for r in rows if r["metric"] == "attr_exact.pos_x" and "step" in r}
    assert steps == {-3.0, -1.5, 1.5, 3.0}


# ----------------------------------------------------------------------------------- predictor agreement


def test_predictor_trained_on_planted_reads_the_exact_positions(data):
    # 300 steps take ~8 s on one CPU thread; measured predictor_r2 pos_x 0.960, pos_y 0.948 on the 80 start
    # images (the misses are low-fidelity, faint sprites); scale 0.87, orientation 0.23, shape 0.04 at this budget
    predictor = train_predictor(data, steps=300, seed=0, n_test=200, feature_dim=64, progress=False)
    oracle = direction_sets(data)["oracle"]
    config = EvalConfig(metrics=("attr", "exact"), n_samples=16, n_steps=3, max_eps=2.0, n_real=200,
                        dci_estimators=5, progress=False)
    rows = evaluate(data.generator, oracle, predictor, data, config)
    assert scalar(rows, "predictor_r2.pos_x") > 0.85 and scalar(rows, "predictor_r2.pos_y") > 0.85
    # attr_agreement correlates the matrix that attr writes with the exact one
    for walk in ("linear", "norm"):
        attr = np.array([[next(r["value"] for r in rows if r.get("walk") == walk and r.get("direction") == j
                               and "step" not in r and r["metric"] == f"attr_change.{f}") for f in FACTORS]
                         for j in range(5)])
        expected = np.corrcoef(attr.ravel(), matrix(rows, walk).ravel())[0, 1]
        assert scalar(rows, "attr_agreement", walk) == pytest.approx(expected, abs=1e-9)
        assert expected > 0.4  # measured 0.51 (linear), 0.53 (norm): positions and scale are read right


def test_a_shapes_predictor_is_matched_by_factor_name(data):
    """Shapes' factors: categorical shape (accuracy), cyclic orientation (embedding R²), positions in [0, 1]."""
    from dplase.data.shapes import sprite_factor_specs

    torch.manual_seed(0)
    predictor = FactorPredictor(1, SIZE, sprite_factor_specs(), width=8, feature_dim=16)
    config = EvalConfig(metrics=("exact",), walks=("linear",), n_samples=8, n_steps=3, n_real=100,
                        n_mig=100, n_dci_train=67, n_dci_test=33, dci_estimators=2, progress=False)
    rows = evaluate(data.generator, direction_sets(data)["oracle"], predictor, load_dataset("shapes", SIZE), config)
    names = {r["metric"] for r in rows if r["metric"].startswith("predictor_")}
    assert names == {"predictor_accuracy.shape", *(f"predictor_r2.{f}" for f in FACTORS if f != "shape")}
    assert all(0 <= scalar(rows, m) <= 1 for m in names if m.startswith("predictor_accuracy"))
    assert math.isfinite(scalar(rows, "attr_agreement", "linear"))


# ------------------------------------------------------------------------------------ disentanglement


@pytest.fixture(scope="module")
def encoder_scores(data, untrained):
    """MIG / DCI disentanglement through the code encoder and their exact ceilings, per direction set."""
    config = EvalConfig(metrics=("disent", "exact"), walks=("linear",), n_samples=4, n_steps=3, n_real=500,
                        n_mig=500, n_dci_train=333, n_dci_test=167, encoder_steps=200, dci_estimators=10,
                        progress=False)
    scores = {}
    for name, directions in direction_sets(data).items():
        rows = evaluate(data.generator, directions, untrained, data, config)
        scores[name] = {m: scalar(rows, m) for m in ("mig", "dci_disentanglement", "mig_exact",
                                                      "dci_disentanglement_exact")}
    return scores


def test_encoder_route_separates_the_oracle_and_stays_below_the_exact_ceiling(encoder_scores):
    """Measured at this budget (200 encoder steps, 500 real images without replacement, MIG on all, DCI 333 /
    167, 10 iterations of the default gbt: regression trees, the planted factors being ordinal grid codes),
    encoder route / exact ceiling: MIG oracle 0.302 / 0.608, rotated 0.008 / 0.148, random 0.045 / 0.007; DCI
    disentanglement oracle 0.677 / 1.000, rotated 0.357 / 0.654, random 0.339 / 0.162. (The rotated ceiling's
    truth: four codes split equally between two factors, 1 - ln 2 / ln 5 = 0.569 each, and one pure code: 0.655.)
    Before issue 15 (500 images drawn with replacement, 20-class classification trees as disentanglement_lib):
    MIG 0.283 / 0.608, 0.013 / 0.148, 0.031 / 0.007; DCI 0.230 / 0.959, 0.073 / 0.298, 0.036 / 0.009: the
    classifiers' importances were biased low (0.298 for the 0.655 rotated ceiling).

    The oracle's encoder scores are not near its ceiling at a budget a test affords (nor at the old default one:
    600 steps, 2000 images, 100 classification trees gave MIG 0.41 / 0.69, DCI 0.32 / 1.00; 3000 steps gave
    0.57 / 0.69, 0.68 / 1.00): the encoder barely reads the shape blend (code R² 0.05 after 600 steps, 0.88 after
    3000) and its noisy codes spread the gbt importances. So only the ordering is asserted. The MIG ceiling is
    itself below 1: 20 equal-width bins over a Gaussian code's sample range put most samples in few central bins
    (entropy 2.4-2.5 nats against the factor grid's 2.9-3.0, since 2 Phi(g u) - 1 spreads u evenly over the
    grid), so the matched MI is only ~0.7 of H(factor); and with finitely many samples the runner-up code's MI is
    biased up (0.13 H at 500 samples, 0.03 H at 2000), hence 0.61 here and 0.69 at 2000.
    """
    scores = encoder_scores
    oracle = scores["oracle"]
    for other in ("rotated", "random"):
        assert oracle["mig"] > scores[other]["mig"] + 0.15, scores
        assert oracle["dci_disentanglement"] > scores[other]["dci_disentanglement"] + 0.1, scores
        assert oracle["mig_exact"] > scores[other]["mig_exact"] + 0.3, scores
    assert oracle["mig"] < oracle["mig_exact"] and oracle["dci_disentanglement"] < oracle["dci_disentanglement_exact"]
    assert oracle["mig_exact"] > 0.5 and oracle["dci_disentanglement_exact"] > 0.9


@pytest.mark.xfail(strict=True, reason=(
    "spec: the oracle's encoder-route MIG/DCI near (here: within 20% of) the exact ceiling. Measured: MIG 0.302 vs "
    "0.608, DCI 0.677 vs 1.000 at this budget (regression-tree gbt; classification trees: 0.230 vs 0.959); 0.41 / "
    "0.69 and 0.32 / 1.00 at the old default evaluation budget (600 encoder steps, 2000 images, classification "
    "trees); 0.57 / 0.69 and 0.68 / 1.00 at 3000 steps: the code encoder under-fits the shape blend"))
def test_oracle_encoder_scores_are_near_the_exact_ceiling(encoder_scores):
    oracle = encoder_scores["oracle"]
    assert oracle["mig"] >= 0.8 * oracle["mig_exact"], oracle
    assert oracle["dci_disentanglement"] >= 0.8 * oracle["dci_disentanglement_exact"], oracle


def test_encoder_fit_is_scored_on_held_out_latents():
    """Measured (planted 32 px, oracle directions, seeds 3 / 7): untrained R² -0.02..0.00 per code; after 200
    steps 0.90, 0.94, 0.76, 0.69 for pos_x, pos_y, scale, orientation, and -0.01 for the shape blend (the
    under-fit the encoder-ceiling xfail above is about)."""
    from dplase.generators.planted import build_planted
    from dplase.metrics.disentanglement import encoder_fit, train_code_encoder

    generator = build_planted(z_dim=16, image_size=SIZE, seed=0)
    directions = generator.planted_directions()
    untrained = encoder_fit(train_code_encoder(generator, directions, steps=0, seed=3, progress=False), generator,
                            directions, seed=7)
    trained = encoder_fit(train_code_encoder(generator, directions, steps=200, seed=3, progress=False), generator,
                          directions, seed=7)
    assert np.all(np.abs(untrained) < 0.05), untrained
    assert np.all(trained[:2] > 0.8) and np.all(trained[2:4] > 0.5), trained
