"""Factor predictor: learns real factors on a short run, round-trips as an artifact, handles orientation."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from dplase.artifacts import ArtifactError, save_artifact
from dplase.data import load_dataset
from dplase.metrics.predictor import FactorPredictor, sample_quality, split_indices, train_predictor


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = load_dataset("shapes", image_size=32, seed=0)
    net = train_predictor(data, steps=150, seed=0, batch_size=32, n_test=300, width=8, feature_dim=64,
                          lr=3e-3, progress=False)
    return data, net


def test_short_training_beats_chance_and_records_heldout(trained) -> None:
    _, net = trained
    held = net.meta["heldout"]
    assert set(held) == {"shape", "scale", "orientation", "pos_x", "pos_y"}
    assert held["pos_x"]["r2"] > 0.8 and held["pos_y"]["r2"] > 0.8
    assert held["shape"]["accuracy"] > 0.4  # chance: 1/3
    assert set(held["orientation"]) == {"r2"}  # folds are per shape now (spec.symmetry_by), not one global 4
    assert net.spec("orientation")["symmetry_by"] == "shape" and net.spec("orientation")["symmetries"] == [4, 2, 1]
    assert net.meta["n_test"] == 300 and net.meta["dataset"]["name"] == "shapes"


def test_save_load_round_trip(trained, tmp_path) -> None:
    data, net = trained
    path = net.save(tmp_path / "pred.pt")
    back = FactorPredictor.load(path)
    images, _ = data.sample(10, 5)
    a, b = net.predict(images), back.predict(images)
    for name in net.factor_names:
        torch.testing.assert_close(a[name], b[name])
    torch.testing.assert_close(net.features(images), back.features(images))
    assert back.meta["heldout"] == net.meta["heldout"]
    frame = a.frame()
    assert list(frame.columns) == net.factor_names and len(frame) == 10
    assert a.probs["shape"].shape == (10, 3) and a.embeddings["orientation"].shape == (10, 2)


def test_foreign_artifact_is_refused(tmp_path) -> None:
    path = save_artifact(tmp_path / "x.pt", "generator", {}, {})
    with pytest.raises(ArtifactError, match="expected a 'predictor' artifact, found 'generator'"):
        FactorPredictor.load(path)


def test_orientation_targets_respect_square_symmetry(trained) -> None:
    _, net = trained
    angles = [0.0, math.pi / 2, math.pi, 0.3, 0.3 + math.pi / 2]
    frame = pd.DataFrame({"shape": [0] * 5, "scale": [0.5] * 5, "orientation": angles, "pos_x": [0.0] * 5,
                          "pos_y": [0.0] * 5})
    emb = net.targets(frame)["orientation"]
    torch.testing.assert_close(emb[0], emb[1])
    torch.testing.assert_close(emb[0], emb[2])
    torch.testing.assert_close(emb[3], emb[4])
    assert not torch.allclose(emb[0], emb[3])


def test_split_is_disjoint_and_deterministic() -> None:
    pool, test = split_indices(100, 50, seed=3)
    assert len(test) == 20 and len(pool) == 80  # at most a fifth held out
    assert set(pool.tolist()).isdisjoint(test.tolist())
    assert torch.equal(test, split_indices(100, 50, seed=3)[1])


def test_sample_quality_on_real_images(trained) -> None:
    data, net = trained
    reals, _ = data.sample(60, 1)
    fakes, _ = data.sample(60, 2)
    q = sample_quality(net, fakes, reals)
    assert q["factor"] == "shape" and q["labels"] == ["square", "ellipse", "heart"]
    assert sum(q["fake_histogram"]) == 60 and 1 / 3 <= q["fake_mean_max_prob"] <= 1
    assert q["domain_fid"] >= 0
    with pytest.raises(ValueError, match="needs a categorical factor, 'pos_x' is continuous"):
        sample_quality(net, fakes, reals, factor="pos_x")
