"""Attribute change on a synthetic generator whose first direction moves only position x."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dplase.data.render import coverage_from_distance, position_range, sprite_distance
from dplase.data.shapes import sprite_factor_specs
from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.metrics import attribute as attr
from dplase.metrics.evaluate import EvalConfig, evaluate
from dplase.metrics.predictor import Predictions
from dplase.priors import GaussianPrior

SIZE = 32


class SpriteGenerator(GeneratorAdapter):
    """z (3-d) -> a square sprite: z0 sets the x position, z1 the scale, z2 the y position."""

    def __init__(self) -> None:
        self.z_dim, self.image_size, self.channels = 3, SIZE, 1
        self.prior, self.device, self.name = GaussianPrior(dim=3), torch.device("cpu"), "sprites"

    @property
    def layers(self) -> list[str]:
        return ["image"]

    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        return z

    def from_features(self, f: torch.Tensor, layer: str, latent: torch.Tensor | None = None) -> torch.Tensor:
        reach = position_range(SIZE)
        n = f.shape[0]
        scale = 0.75 + 0.25 * torch.tanh(f[:, 1])
        dist = sprite_distance(torch.zeros(n, dtype=torch.long), scale, torch.zeros(n),
                               torch.tanh(f[:, 0]) * reach, torch.tanh(f[:, 2]) * reach, SIZE)
        return (coverage_from_distance(dist) * 2 - 1).unsqueeze(1)


class OraclePredictor(nn.Module):
    """Reads position and scale from pixel moments; shape and orientation are constant (squares at 0°)."""

    def __init__(self) -> None:
        super().__init__()
        self.specs = [s.to_dict() for s in sprite_factor_specs()]

    def predict(self, images: torch.Tensor) -> Predictions:
        mass = (images[:, 0] + 1) / 2
        total = mass.sum(dim=(1, 2)).clamp_min(1e-6)
        grid = torch.arange(SIZE, dtype=torch.float32) / (SIZE - 1)
        n = len(images)
        probs = torch.zeros(n, 3)
        probs[:, 0] = 1.0
        return Predictions(
            values={"shape": probs.argmax(1), "scale": total.sqrt().double() / SIZE,
                    "orientation": torch.zeros(n, dtype=torch.float64),
                    "pos_x": ((mass.sum(1) * grid).sum(1) / total).double(),
                    "pos_y": ((mass.sum(2) * grid).sum(1) / total).double()},
            probs={"shape": probs},
            embeddings={"orientation": torch.tensor([[1.0, 0.0]]).expand(n, 2)},
        )


class RealSprites:
    """The 'real' dataset of the synthetic generator: its own images at prior latents."""

    name, image_size, channels = "sprites", SIZE, 1
    factor_specs = sprite_factor_specs()

    def sample(self, n: int, seed: int):
        z = GaussianPrior(dim=3).sample(n, seed)
        return SpriteGenerator()(z), None


def test_factor_change_kinds() -> None:
    before = Predictions(values={"x": torch.tensor([0.0, 0.5])}, probs={"c": torch.tensor([[1.0, 0.0]] * 2)},
                         embeddings={"o": torch.tensor([[1.0, 0.0]] * 2)})
    after = Predictions(values={"x": torch.tensor([1.0, 0.5])}, probs={"c": torch.tensor([[0.0, 1.0], [1.0, 0.0]])},
                        embeddings={"o": torch.tensor([[0.0, 1.0], [-1.0, 0.0]])})
    assert attr.factor_change({"name": "x", "kind": "continuous", "low": 0, "high": 2}, before, after).tolist() \
        == [0.5, 0.0]
    assert attr.factor_change({"name": "c", "kind": "categorical"}, before, after).tolist() == [1.0, 0.0]
    got = attr.factor_change({"name": "o", "kind": "continuous", "low": 0, "high": 6.2, "period": 2 * math.pi},
                             before, after)
    assert got.tolist() == pytest.approx([0.5, 1.0])


def test_top_share() -> None:
    np.testing.assert_allclose(attr.top_share(np.array([[1.0, 0.0], [1.0, 1.0]])), [1.0, 0.5])


def test_direction_moving_x_concentrates_on_pos_x() -> None:
    gen, oracle = SpriteGenerator(), OraclePredictor()
    directions = DirectionSet(torch.eye(3), torch.ones(3), method="coordinate", config={})
    # the grid up to 3 (extrapolation on request: the default grid is T of the prior, 0.77 at z_dim 3)
    config = EvalConfig(metrics=("attr",), n_samples=32, walks=("linear",), n_real=200, max_eps=3.0,
                        progress=False)
    rows = evaluate(gen, directions, oracle, RealSprites(), config)
    matrix = {(r["direction"], r["metric"].split(".")[1]): r["value"] for r in rows
              if r["metric"].startswith("attr_change.") and r.get("step") is None}
    names = ["shape", "scale", "orientation", "pos_x", "pos_y"]
    m = np.array([[matrix[(j, f)] for f in names] for j in range(3)])
    assert m[0].argmax() == names.index("pos_x") and m[2].argmax() == names.index("pos_y")
    assert m[1].argmax() == names.index("scale")
    shares = {r["direction"]: r["value"] for r in rows if r["metric"] == "attr_top_share" and r.get("direction")
              is not None}
    assert shares[0] > 0.9 and shares[2] > 0.9
    # per-step rows: the change of pos_x grows with |eps| along direction 0
    per_step = {r["step"]: r["value"] for r in rows if r["metric"] == "attr_change.pos_x" and r.get("direction") == 0
                and r.get("step") is not None}
    assert per_step[1.0] < per_step[2.0] < per_step[3.0]
    assert per_step[-1.0] < per_step[-3.0]
