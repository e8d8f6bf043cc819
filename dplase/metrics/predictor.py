"""Factor predictor: a small CNN trained on a dataset's real images to read its generating factors back.

One head per factor: categorical factors are classified (cross-entropy), continuous ones regressed on targets
normalised to zero mean / unit variance over their range. Cyclic factors (``FactorSpec.period`` P set, e.g.
orientation) are regressed through the embedding (cos, sin) of s·2π·θ/P, with s the fold of the row's
symmetry: a square looks the same every 90° (s = 4), an ellipse every 180° (s = 2), a heart only every 360°
(s = 1), so only θ modulo P / s is identifiable. The fold comes from the factor named by the spec's
``symmetry_by`` (its code indexes ``symmetries``; the built-in shapes: `dplase.data.shapes.SHAPE_SYMMETRY`),
else it is 1. Training targets use each row's true fold; at prediction time the fold is that of the predicted
``symmetry_by`` class, and the reported value is θ modulo P / s. The loss of a cyclic factor is the MSE of the
embedding (mean over rows and both components); its held-out R² is the pooled R² of that embedding against
the targets (true folds).

The trained predictor is an artifact of kind "predictor" whose metadata carries the factor specs, the dataset
config and the held-out accuracy / R² per factor. Its penultimate layer (`features`) is the "domain" feature
extractor for FID.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from dplase.artifacts import load_artifact, save_artifact


def _spec_dict(spec: Any) -> dict[str, Any]:
    """A FactorSpec (or dict) as a plain dict."""
    if isinstance(spec, dict):
        return dict(spec)
    return spec.to_dict() if hasattr(spec, "to_dict") else dict(vars(spec))


@dataclass
class Predictions:
    """Per-factor predictions for N images.

    ``values``: categorical -> class index (N,), continuous -> value in the factor's units (N,), cyclic ->
    angle modulo period / fold (N,). ``probs``: categorical factors -> class probabilities (N, C).
    ``embeddings``: cyclic factors -> the regressed (cos, sin) of fold x 2π x angle / period (N, 2), not
    normalised (its length shrinks where the predictor is unsure; normalise it for an angle). ``folds``: cyclic
    factors -> the fold s used for each row (N,) int64 (from the predicted ``symmetry_by`` class, else 1).
    """

    values: dict[str, torch.Tensor]
    probs: dict[str, torch.Tensor] = field(default_factory=dict)
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)
    folds: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.values[name]

    def frame(self) -> pd.DataFrame:
        """Predicted values as a DataFrame, one column per factor."""
        return pd.DataFrame({k: v.numpy() for k, v in self.values.items()})


class FactorPredictor(nn.Module):
    """CNN backbone -> ``feature_dim`` penultimate features -> one head per factor."""

    def __init__(self, channels: int, image_size: int, factor_specs: list[Any], width: int = 8,
                 feature_dim: int = 256) -> None:
        super().__init__()
        if image_size not in (8, 16, 32, 64, 128):
            raise ValueError(f"FactorPredictor supports image sizes 8..128 (powers of two), got {image_size}")
        self.channels, self.image_size, self.width, self.feature_dim = channels, image_size, width, feature_dim
        self.specs = [_spec_dict(s) for s in factor_specs]
        if not self.specs:
            raise ValueError("FactorPredictor needs at least one factor")
        self._check_symmetries()
        # 3x3 conv + max-pool stages down to 4x4: max-pooling makes small-sprite shape cues learnable in
        # ~1000 steps, where strided 4x4 convolutions stayed near chance for 2000 steps
        layers: list[nn.Module] = []
        c_in, size = channels, image_size
        for i in range(int(math.log2(image_size)) - 2):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, size = c_out, size // 2
        self.backbone = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * size * size, feature_dim), nn.ReLU())
        self.heads = nn.ModuleDict({s["name"]: nn.Linear(feature_dim, self._out_dim(s)) for s in self.specs})
        self.meta: dict[str, Any] = {}

    # --- factor bookkeeping -------------------------------------------------------------------------
    def _out_dim(self, spec: dict[str, Any]) -> int:
        if spec["kind"] == "categorical":
            return int(spec["n_values"])
        return 2 if spec.get("period") else 1

    @property
    def factor_names(self) -> list[str]:
        return [s["name"] for s in self.specs]

    def spec(self, name: str) -> dict[str, Any]:
        for s in self.specs:
            if s["name"] == name:
                return s
        raise KeyError(f"predictor has no factor '{name}'; it knows {', '.join(self.factor_names)}")

    def _check_symmetries(self) -> None:
        """Every ``symmetry_by`` names a categorical factor of this predictor with one fold per code."""
        for s in self.specs:
            by = s.get("symmetry_by")
            if not s.get("period") or by is None:
                continue
            other = next((o for o in self.specs if o["name"] == by), None)
            if other is None or other["kind"] != "categorical":
                raise ValueError(f"factor {s['name']!r}: symmetry_by {by!r} is no categorical factor of the predictor")
            if len(s["symmetries"]) != int(other["n_values"]):
                raise ValueError(f"factor {s['name']!r}: {len(s['symmetries'])} symmetries for the "
                                 f"{other['n_values']} values of {by!r}")

    @staticmethod
    def folds(spec: dict[str, Any], codes: torch.Tensor | np.ndarray | None, n: int) -> torch.Tensor:
        """Fold per row (N,) int64 of a cyclic factor from the codes of its ``symmetry_by`` factor (1 without)."""
        table = spec.get("symmetries")
        if spec.get("symmetry_by") is None or table is None or codes is None:
            return torch.ones(n, dtype=torch.int64)
        codes = torch.as_tensor(np.asarray(codes, dtype=np.float64)).round().long().clamp(0, len(table) - 1)
        return torch.tensor([int(k) for k in table], dtype=torch.int64)[codes]

    @staticmethod
    def _center_scale(spec: dict[str, Any]) -> tuple[float, float]:
        """Normalisation of a continuous factor: a uniform distribution over [low, high]."""
        low, high = float(spec["low"]), float(spec["high"])
        return (low + high) / 2, max((high - low) / math.sqrt(12.0), 1e-8)

    def targets(self, factors: pd.DataFrame) -> dict[str, torch.Tensor]:
        """Training targets from a factors table: class codes, normalised values, or (cos, sin) embeddings."""
        out = {}
        for s in self.specs:
            col = torch.tensor(np.asarray(factors[s["name"]], dtype=np.float64))
            if s["kind"] == "categorical":
                out[s["name"]] = col.round().long()
            elif s.get("period"):
                by = s.get("symmetry_by")
                folds = self.folds(s, factors[by] if by is not None else None, len(col))
                out[s["name"]] = periodic_embedding(col, float(s["period"]), folds).float()
            else:
                center, scale = self._center_scale(s)
                out[s["name"]] = ((col - center) / scale).float()
        return out

    # --- forward passes -----------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs (logits / normalised values / unnormalised embeddings)."""
        h = self.backbone(images)
        return {name: head(h) for name, head in self.heads.items()}

    def loss(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One loss term per factor."""
        out = self.forward(images)
        terms = {}
        for s in self.specs:
            name, pred, target = s["name"], out[s["name"]], targets[s["name"]].to(images.device)
            if s["kind"] == "categorical":
                terms[name] = F.cross_entropy(pred, target)
            elif s.get("period"):
                terms[name] = F.mse_loss(pred, target)
            else:
                terms[name] = F.mse_loss(pred.squeeze(1), target)
        return terms

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 512) -> Predictions:
        """Per-factor predictions for images in [-1, 1] (any device; results on CPU)."""
        was_training = self.training
        self.eval()
        chunks: dict[str, list[torch.Tensor]] = {s["name"]: [] for s in self.specs}
        for batch in torch.split(images, batch_size):
            for name, value in self.forward(batch.to(self._device(), torch.float32)).items():
                chunks[name].append(value.cpu())
        self.train(was_training)
        preds = Predictions(values={})
        for s in self.specs:
            name = s["name"]
            raw = torch.cat(chunks[name]) if chunks[name] else torch.empty(0, self._out_dim(s))
            if s["kind"] == "categorical":
                probs = raw.softmax(dim=1)
                preds.probs[name], preds.values[name] = probs, probs.argmax(dim=1)
            elif s.get("period"):
                by = s.get("symmetry_by")
                codes = torch.cat(chunks[by]).argmax(dim=1) if by is not None and chunks[by] else None
                folds = self.folds(s, codes, len(raw))
                angle = torch.atan2(raw[:, 1], raw[:, 0]).double().remainder(2 * math.pi)
                preds.embeddings[name], preds.folds[name] = raw, folds
                preds.values[name] = angle * float(s["period"]) / (2 * math.pi * folds)
            else:
                center, scale = self._center_scale(s)
                preds.values[name] = raw.squeeze(1).double() * scale + center
        return preds

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Penultimate features (N x feature_dim) on CPU: the "domain" FID extractor."""
        was_training = self.training
        self.eval()
        out = [self.backbone(b.to(self._device(), torch.float32)).cpu() for b in torch.split(images, batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.feature_dim)

    # --- held-out scores ----------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, images: torch.Tensor, factors: pd.DataFrame) -> dict[str, dict[str, float]]:
        """Held-out accuracy (categorical) or R² (continuous; cyclic: R² of the (cos, sin) embedding, per-row
        folds from the true ``symmetry_by`` codes)."""
        preds = self.predict(images)
        targets = self.targets(factors)
        scores: dict[str, dict[str, float]] = {}
        for s in self.specs:
            name = s["name"]
            if s["kind"] == "categorical":
                scores[name] = {"accuracy": float((preds.values[name] == targets[name]).double().mean())}
            elif s.get("period"):
                scores[name] = {"r2": _r2(preds.embeddings[name].double(), targets[name].double())}
            else:
                truth = torch.tensor(np.asarray(factors[name], dtype=np.float64))
                scores[name] = {"r2": _r2(preds.values[name].double(), truth)}
        return scores

    # --- persistence --------------------------------------------------------------------------------
    def arch(self) -> dict[str, Any]:
        return {"channels": self.channels, "image_size": self.image_size, "width": self.width,
                "feature_dim": self.feature_dim}

    def save(self, path: str | os.PathLike) -> Path:
        """Write as a "predictor" artifact (weights + arch + factor specs + held-out metrics in meta)."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        meta = {**self.meta, "arch": self.arch(), "factor_specs": self.specs}
        return save_artifact(path, "predictor", {"state": state}, meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> FactorPredictor:
        """Load a predictor artifact (weights_only; clear error for a foreign file)."""
        tensors, meta = load_artifact(path, kind="predictor")
        arch, specs = dict(meta["arch"]), [dict(s) for s in meta["factor_specs"]]
        legacy = int(arch.pop("symmetry", 1))  # older predictors: one global fold for every cyclic factor
        for s in specs:
            if s.get("period") and legacy != 1:  # the same embedding, as a plain period
                s["period"], s["symmetry_by"], s["symmetries"] = float(s["period"]) / legacy, None, None
        net = cls(factor_specs=specs, **arch)
        net.load_state_dict(tensors["state"])
        net.meta = {k: v for k, v in meta.items() if k not in ("arch", "factor_specs")}
        return net.to(device).eval()


def periodic_embedding(values: torch.Tensor, period: float, folds: torch.Tensor | int = 1) -> torch.Tensor:
    """(cos, sin) of folds x 2π x values / period, (N, 2) float64: the target of a cyclic factor."""
    angle = torch.as_tensor(values).double() * (2 * math.pi / float(period))
    angle = angle * torch.as_tensor(folds).double()
    return torch.stack([angle.cos(), angle.sin()], dim=1)


def circular_difference(a: torch.Tensor, b: torch.Tensor, period: torch.Tensor | float) -> torch.Tensor:
    """|a - b| on a circle of circumference ``period`` (elementwise), in [0, period / 2]."""
    d = (torch.as_tensor(a).double() - torch.as_tensor(b).double()).remainder(torch.as_tensor(period).double())
    return torch.minimum(d, torch.as_tensor(period).double() - d)


def _r2(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Coefficient of determination, pooled over columns for 2-D targets."""
    pred, truth = pred.reshape(len(pred), -1), truth.reshape(len(truth), -1)
    sse = (pred - truth).pow(2).sum()
    sst = (truth - truth.mean(dim=0)).pow(2).sum()
    return float(1 - sse / sst) if sst > 0 else float("nan")


def split_indices(n_items: int, n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (train pool, held-out) item indices, so held-out scores are honest even for small datasets."""
    n_test = min(n_test, max(1, n_items // 5))
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n_items, generator=gen)
    return perm[n_test:], perm[:n_test]


def train_predictor(
    dataset: Any, steps: int = 3000, seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 64,
    lr: float = 1e-3, n_test: int = 2000, width: int = 8, feature_dim: int = 256,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 500, progress: bool = True,
) -> FactorPredictor:
    """Train a FactorPredictor on ``dataset`` (a dplase.data ImageDataset) and score it on held-out items.

    Batches come from a disjoint train pool with the per-step generator of the shared training loop, so a
    resumed run equals an uninterrupted one. The held-out scores land in ``predictor.meta["heldout"]``.
    """
    from dplase.training.loop import LoopState, run_loop, step_generator

    torch.manual_seed(seed)  # weight init; the loop's per-step generators handle everything after
    net = FactorPredictor(dataset.channels, dataset.image_size, dataset.factor_specs, width=width,
                          feature_dim=feature_dim).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    pool, test_idx = split_indices(len(dataset), n_test, seed)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        gen = step_generator(seed, step)
        idx = pool[torch.randint(len(pool), (batch_size,), generator=gen)]
        images, factors = dataset.get(idx)
        terms = net.loss(images.to(device), net.targets(factors))
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()
        return terms

    config = {"dataset": dataset.to_config(), "steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr,
              "arch": net.arch(), "n_test": len(test_idx)}
    net.train()
    run_loop(total_steps=steps, step_fn=step_fn, state=LoopState({"net": net, "optimizer": optimizer}),
             checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every, kind="predictor-checkpoint",
             meta=config, desc=f"predictor {dataset.name}", progress=progress)
    net.eval()
    images, factors = dataset.get(test_idx)
    net.meta = {**config, "dataset_name": dataset.name, "heldout": net.score(images, factors)}
    if checkpoint_path is not None:
        Path(checkpoint_path).unlink(missing_ok=True)
    return net


def sample_quality(
    predictor: FactorPredictor, fake_images: torch.Tensor, real_images: torch.Tensor, factor: str | None = None
) -> dict[str, Any]:
    """How recognisable generated samples are: for a categorical ``factor`` (default: the first one, e.g.
    "shape") the mean max-probability and class histogram of fakes and reals, plus the domain FID
    (Fréchet distance of predictor features, fakes vs reals, via clean-fid)."""
    from dplase.metrics.fid import domain_fid

    cats = [s["name"] for s in predictor.specs if s["kind"] == "categorical"]
    factor = factor or (cats[0] if cats else None)
    out: dict[str, Any] = {"domain_fid": domain_fid(predictor, fake_images, real_images),
                           "n_fake": len(fake_images), "n_real": len(real_images)}
    if factor is not None:
        spec = predictor.spec(factor)
        if spec["kind"] != "categorical":
            raise ValueError(f"sample_quality needs a categorical factor, '{factor}' is {spec['kind']}")
        n_classes = int(spec["n_values"])
        for tag, images in (("fake", fake_images), ("real", real_images)):
            probs = predictor.predict(images).probs[factor]
            out[f"{tag}_mean_max_prob"] = float(probs.max(dim=1).values.mean())
            out[f"{tag}_histogram"] = torch.bincount(probs.argmax(dim=1), minlength=n_classes).tolist()
        out["factor"], out["labels"] = factor, list(spec.get("labels") or range(n_classes))
    return out
