"""Periodic factors: per-shape folds, `NAME:periodic` folder columns, the embedding loss by hand, circular
attribute change, legacy predictors and the predictor's held-out rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_evaluation_setup
from PIL import Image

from dplase.artifacts import save_artifact
from dplase.data import load_dataset
from dplase.data.base import FactorSpec
from dplase.data.folder import parse_factor_table
from dplase.data.shapes import N_ORIENTATIONS, SHAPE_SYMMETRY, sprite_factor_specs
from dplase.metrics.attribute import factor_change
from dplase.metrics.evaluate import EvalConfig, evaluate, predictor_heldout_rows, results_frame
from dplase.metrics.exact import predictor_agreement
from dplase.metrics.predictor import FactorPredictor, Predictions, train_predictor

RADICES = (3, 6, N_ORIENTATIONS, 32, 32)  # shape, scale, orientation, pos_x, pos_y


def index(*codes: int) -> int:
    flat = 0
    for code, radix in zip(codes, RADICES, strict=True):
        flat = flat * radix + code
    return flat


def sprite_frame(shapes: list[int], angles: list[float]) -> pd.DataFrame:
    n = len(shapes)
    return pd.DataFrame({"shape": shapes, "scale": [0.5] * n, "orientation": angles, "pos_x": [0.5] * n,
                         "pos_y": [0.5] * n})


# --- the folds of the built-in shapes ------------------------------------------------------------------


def test_shape_folds_match_the_rendered_geometry() -> None:
    data = load_dataset("shapes", image_size=32)
    spec = {s.name: s for s in data.factor_specs}["orientation"]
    assert spec.symmetry_by == "shape" and spec.symmetries == (4, 2, 1) and spec.period == pytest.approx(2 * math.pi)
    for code, name in enumerate(("square", "ellipse", "heart")):
        fold = SHAPE_SYMMETRY[name]
        turn = N_ORIENTATIONS // fold  # grid steps of one symmetry turn, 2π / fold
        for base in (0, 3):
            a, same, half = data.get(torch.tensor([index(code, 5, base, 16, 16),
                                                   index(code, 5, (base + turn) % N_ORIENTATIONS, 16, 16),
                                                   index(code, 5, base + turn // 2, 16, 16)]))[0]
            assert (same - a).abs().max() < 1e-4, name  # turning by 2π / fold leaves the sprite unchanged
            assert (half - a).abs().max() > 0.5, name  # half of it does not: the fold is no larger


def test_targets_follow_each_rows_shape() -> None:
    net = FactorPredictor(1, 8, sprite_factor_specs(), width=2, feature_dim=4)
    t = 0.3
    # heart θ, θ+π/2, θ+π, θ+2π | square θ, θ+π/2 | ellipse θ, θ+π, θ+π/2
    frame = sprite_frame([2, 2, 2, 2, 0, 0, 1, 1, 1],
                         [t, t + math.pi / 2, t + math.pi, t + 2 * math.pi, t, t + math.pi / 2, t, t + math.pi,
                          t + math.pi / 2])
    emb = net.targets(frame)["orientation"].double()
    assert not torch.allclose(emb[0], emb[1], atol=1e-3) and not torch.allclose(emb[0], emb[2], atol=1e-3)
    torch.testing.assert_close(emb[0], emb[3])
    torch.testing.assert_close(emb[4], emb[5])
    torch.testing.assert_close(emb[6], emb[7])
    assert not torch.allclose(emb[6], emb[8], atol=1e-3)
    # by hand: (cos, sin) of fold x θ
    expected = [[math.cos(t), math.sin(t)], [math.cos(4 * t), math.sin(4 * t)], [math.cos(2 * t), math.sin(2 * t)]]
    torch.testing.assert_close(emb[[0, 4, 6]], torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)


def test_spec_round_trip_and_symmetry_validation() -> None:
    spec = sprite_factor_specs()[2]
    assert FactorSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="symmetry_by and symmetries go together"):
        FactorSpec("o", "continuous", 0, 6, period=6.0, symmetry_by="shape")
    with pytest.raises(ValueError, match="symmetry_by needs a cyclic continuous factor"):
        FactorSpec("o", "continuous", 0, 6, symmetry_by="shape", symmetries=(1, 2))
    with pytest.raises(ValueError, match="symmetries must be ints >= 1"):
        FactorSpec("o", "continuous", 0, 6, period=6.0, symmetry_by="shape", symmetries=(0, 2))
    with pytest.raises(ValueError, match="period must be > 0"):
        FactorSpec("o", "continuous", 0, 6, period=-1.0)
    bad = [FactorSpec("shape", "categorical", 0, 1, 2),
           FactorSpec("o", "continuous", 0, 6, period=6.0, symmetry_by="shape", symmetries=(1, 2, 3))]
    with pytest.raises(ValueError, match="3 symmetries for the 2 values of 'shape'"):
        FactorPredictor(1, 8, bad)
    with pytest.raises(ValueError, match="symmetry_by 'shape' is no categorical factor"):
        FactorPredictor(1, 8, bad[1:])


# --- folder tables -------------------------------------------------------------------------------------


def test_folder_periodic_columns(tmp_path) -> None:
    table = pd.DataFrame({"a:periodic": [0.1, 3.0, 6.0], "deg:periodic=360": [350.0, 10.0, 90.0],
                          "turns:Periodic=1.5": [0.0, 0.5, 1.0], "plain": [1.0, 2.0, 3.0]})
    specs, frame = parse_factor_table(table)
    by = {s.name: s for s in specs}
    assert list(by) == ["a", "deg", "turns", "plain"] and list(frame.columns) == list(by)
    assert by["a"].period == pytest.approx(2 * math.pi) and by["a"].kind == "continuous"
    assert by["deg"].period == 360.0 and (by["deg"].low, by["deg"].high) == (10.0, 350.0)
    assert by["turns"].period == 1.5 and by["plain"].period is None
    assert frame["deg"].tolist() == [350.0, 10.0, 90.0]
    # through a folder dataset, as the predictor sees it
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    table.to_csv(tmp_path / "f.csv", index=False)
    data = load_dataset("folder", image_size=8, path=tmp_path, factors=tmp_path / "f.csv")
    assert [s.period for s in data.factor_specs][:2] == [pytest.approx(2 * math.pi), 360.0]
    net = FactorPredictor(1, 8, data.factor_specs, width=2, feature_dim=4)
    emb = net.targets(data.get(torch.arange(3))[1])["deg"].double()
    torch.testing.assert_close(emb[0], torch.tensor([math.cos(-math.pi / 18), math.sin(-math.pi / 18)],
                                                    dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("column", ["x:periodic=abc", "x:periodic=0", "x:periodic=-360", "x:periodic=",
                                    "x:periodic=inf", "x:periodical"])
def test_folder_bad_periodic_suffix_names_the_column(column) -> None:
    with pytest.raises(ValueError, match=f"factors column '{column}'"):
        parse_factor_table(pd.DataFrame({column: [1.0, 2.0]}))


# --- the loss, predictions and agreement by hand ---------------------------------------------------------


def fixed_output_predictor() -> FactorPredictor:
    """A predictor over (shape, orientation) whose forward pass returns fixed, hand-picked outputs."""
    net = FactorPredictor(1, 8, [sprite_factor_specs()[0], sprite_factor_specs()[2]], width=2, feature_dim=4)
    out = {"shape": torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]]),
           "orientation": torch.tensor([[0.5, 0.5], [-1.0, 0.5], [0.0, -1.0]])}
    net.forward = lambda images: {k: v[: len(images)] for k, v in out.items()}  # type: ignore[method-assign]
    return net


def test_periodic_loss_against_hand_computation() -> None:
    net = fixed_output_predictor()
    # square at π/8 -> 4 x π/8 = π/2 -> (0, 1); ellipse at π/2 -> 2 x π/2 = π -> (-1, 0);
    # heart at π/3 -> (1/2, √3/2)
    frame = pd.DataFrame({"shape": [0, 1, 2], "orientation": [math.pi / 8, math.pi / 2, math.pi / 3]})
    terms = net.loss(torch.zeros(3, 1, 8, 8), net.targets(frame))
    # squared errors: row 0 (0.5-0)² + (0.5-1)² = 0.5; row 1 (-1+1)² + (0.5-0)² = 0.25;
    # row 2 (0-0.5)² + (-1-√3/2)² = 0.25 + (1 + √3/2)²; MSE = sum / 6 elements
    hand = (0.5 + 0.25 + 0.25 + (1 + math.sqrt(3) / 2) ** 2) / 6
    assert float(terms["orientation"]) == pytest.approx(hand, rel=1e-6)
    # cross-entropy of logits (3, 0, 0) on the right class: log(1 + 2 e^-3)
    assert float(terms["shape"]) == pytest.approx(math.log(1 + 2 * math.exp(-3)), rel=1e-6)


def test_predicted_fold_comes_from_the_predicted_shape() -> None:
    preds = fixed_output_predictor().predict(torch.zeros(3, 1, 8, 8))
    assert preds.folds["orientation"].tolist() == [4, 2, 1]
    # angle of the embedding / fold: (0.5, 0.5) -> π/4 / 4; (-1, 0.5) -> (π - atan(1/2)) / 2; (0, -1) -> 3π/2
    hand = [math.pi / 16, (math.pi - math.atan(0.5)) / 2, 3 * math.pi / 2]
    assert preds["orientation"].tolist() == pytest.approx(hand, rel=1e-6)


def test_exact_agreement_uses_the_exact_shapes_folds() -> None:
    specs = [s.to_dict() for s in sprite_factor_specs()]
    theta = torch.tensor([0.2, 1.0, 2.5, 4.0], dtype=torch.float64)
    shape = torch.tensor([0.0, 1.0, 2.0, 2.0], dtype=torch.float64)
    fold = torch.tensor([4.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    emb = torch.stack([(fold * theta).cos(), (fold * theta).sin()], dim=1)
    preds = Predictions(values={"orientation": theta}, embeddings={"orientation": emb},
                        folds={"orientation": torch.ones(4, dtype=torch.int64)})  # wrong folds: not used
    out = predictor_agreement([specs[2]], preds, {"orientation": theta, "shape": shape})
    assert out["predictor_r2.orientation"] == pytest.approx(1.0)


# --- attribute change on the circle ---------------------------------------------------------------------


def test_circular_attribute_change() -> None:
    spec = {"name": "deg", "kind": "continuous", "low": 0.0, "high": 359.0, "period": 360.0}
    before = Predictions(values={"deg": torch.tensor([350.0, 80.0, 80.0, 0.0])},
                         folds={"deg": torch.tensor([1, 4, 4, 2])})
    after = Predictions(values={"deg": torch.tensor([10.0, 10.0, 10.0, 170.0])},
                        folds={"deg": torch.tensor([1, 4, 1, 2])})
    got = factor_change(spec, before, after)
    # 350° -> 10°: 20° of the 180° largest change; square 80° -> 10°: 20° modulo 90° (of 45°);
    # square vs heart: lcm fold 4, the same; ellipse 0° -> 170°: 10° modulo 180° (of 90°)
    assert got.tolist() == pytest.approx([20 / 180, 20 / 45, 20 / 45, 10 / 90])
    # no folds: fold 1
    plain = factor_change(spec, Predictions(values={"deg": torch.tensor([350.0])}),
                          Predictions(values={"deg": torch.tensor([10.0])}))
    assert plain.tolist() == pytest.approx([20 / 180])


# --- legacy predictors and held-out rows -----------------------------------------------------------------


def test_legacy_global_symmetry_predictor_loads(tmp_path) -> None:
    net = FactorPredictor(1, 8, sprite_factor_specs(), width=2, feature_dim=4)
    old_specs = [{k: v for k, v in s.items() if k not in ("symmetry_by", "symmetries")} for s in net.specs]
    path = save_artifact(tmp_path / "old.pt", "predictor", {"state": net.state_dict()},
                         {"arch": {**net.arch(), "symmetry": 4}, "factor_specs": old_specs})
    back = FactorPredictor.load(path)
    spec = back.spec("orientation")
    assert spec["period"] == pytest.approx(math.pi / 2) and spec.get("symmetry_by") is None
    values = back.predict(torch.zeros(2, 1, 8, 8))["orientation"]
    assert ((values >= 0) & (values < math.pi / 2)).all()


def test_heldout_rows_in_every_evaluation() -> None:
    data, gen, _, directions = tiny_evaluation_setup({"k": 3})
    net = train_predictor(data, steps=3, seed=0, batch_size=8, n_test=20, width=2, feature_dim=8, progress=False)
    held = net.meta["heldout"]
    rows = predictor_heldout_rows(net)
    expected = {f"predictor_heldout_accuracy.{f}" if "accuracy" in held[f] else f"predictor_heldout_r2.{f}":
                held[f].get("accuracy", held[f].get("r2")) for f in held}
    assert {r["metric"]: r["value"] for r in rows} == expected
    assert set(expected) == {"predictor_heldout_accuracy.shape", "predictor_heldout_r2.scale",
                             "predictor_heldout_r2.orientation", "predictor_heldout_r2.pos_x",
                             "predictor_heldout_r2.pos_y"}
    assert all(r["n_samples"] == 20 == net.meta["n_test"] for r in rows)
    config = EvalConfig(metrics=("density",), n_samples=2, n_steps=3, n_real=10, walks=("linear",), progress=False)
    out = evaluate(gen, directions, net, data, config)
    frame = results_frame(out, gen, directions, "shapes", "run-h", config=config)
    got = frame[frame["metric"].str.startswith("predictor_heldout_")]
    assert dict(zip(got["metric"], got["value"], strict=True)) == pytest.approx(expected, nan_ok=True)
    assert got["direction"].isna().all() and got["step"].isna().all()
    assert got.loc[got["metric"] == "predictor_heldout_r2.orientation", "note"].notna().all()
