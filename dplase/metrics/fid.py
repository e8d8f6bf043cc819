"""FID along walks with clean-fid: its batch feature hook for the features, its Fréchet distance for the score.

Two extractors, both plugged into clean-fid as a custom feature model (a callable batch -> features):
- ``domain``: the factor predictor's penultimate layer (offline, CPU-friendly default);
- ``inception``: clean-fid's own TorchScript Inception (``inception-2015-12-05.pt``). It is loaded from a
  local copy (``weights=PATH``, the file or the folder holding it); without one, clean-fid's download is tried,
  and when that fails too the error names the ``--inception-weights`` option.

`WalkFID` is the registered metric "fid": FID per walk and signed step over the K x n walked images of that
step (all directions pooled), each from a distinct start point; step 0 is the set of start images itself.
(Pooling +eps and -eps, or reusing few start points for all directions, would make small-step sets
near-duplicates of each other and inflate their FID through lost diversity.)
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dplase.metrics.context import EvalContext, ImageMetric, Row

INCEPTION_FILE = "inception-2015-12-05.pt"
EXTRACTORS = ("domain", "inception")

#: a clean-fid feature model: a batch of images -> features
FeatureModel = Callable[[torch.Tensor], torch.Tensor]


class InceptionUnavailableError(RuntimeError):
    """clean-fid's Inception weights could not be found or downloaded."""


def domain_extractor(predictor) -> FeatureModel:
    """The factor predictor's penultimate layer as a clean-fid feature model (input: images in [-1, 1])."""

    def model(batch: torch.Tensor) -> torch.Tensor:
        return predictor.features(batch)

    return model


def inception_extractor(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                        download: bool = True) -> FeatureModel:
    """clean-fid's Inception as a feature model taking images in [-1, 1] of any size and 1 or 3 channels.

    Images are mapped to [0, 255], resized with clean-fid's own "clean" resizer (PIL bicubic to 299) and fed
    to `cleanfid.inception_torchscript.InceptionV3W`.
    """
    from cleanfid.inception_torchscript import InceptionV3W
    from cleanfid.resize import build_resizer

    folder, use_download = _inception_folder(weights, download)
    try:
        net = InceptionV3W(str(folder), download=use_download).to(device).eval()
    except Exception as err:  # download errors come in many types (URLError, HTTPError, OSError, ...)
        raise InceptionUnavailableError(
            f"Inception weights for FID are not available ({type(err).__name__}: {err}). Put clean-fid's "
            f"{INCEPTION_FILE} on disk and pass its path with --inception-weights PATH (Python: "
            "inception_extractor(weights=PATH)), or use --extractor domain"
        ) from err
    resize = build_resizer("clean")

    @torch.no_grad()
    def model(batch: torch.Tensor) -> torch.Tensor:
        pixels = ((batch.float().clamp(-1, 1) + 1) * 127.5).cpu()
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        resized = [torch.from_numpy(resize(img.permute(1, 2, 0).numpy()).transpose(2, 0, 1).copy())
                   for img in pixels]
        return net(torch.stack(resized).to(device)).cpu()

    return model


def _inception_folder(weights: str | os.PathLike | None, download: bool) -> tuple[Path, bool]:
    """Folder that holds (or will hold) the weight file, and whether clean-fid may download into it."""
    if weights is None:
        return Path("/tmp"), download  # clean-fid's own cache location on Linux
    path = Path(weights)
    if path.is_dir():
        path = path / INCEPTION_FILE
    if not path.is_file() or path.name != INCEPTION_FILE:
        raise InceptionUnavailableError(
            f"--inception-weights {weights}: expected clean-fid's {INCEPTION_FILE} (or a folder holding it)"
        )
    return path.parent, False


def make_extractor(name: str, predictor=None, inception_weights: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu") -> FeatureModel:
    """Extractor by name ("domain" needs ``predictor``)."""
    if name == "domain":
        if predictor is None:
            raise ValueError("the domain extractor needs a factor predictor")
        return domain_extractor(predictor)
    if name == "inception":
        return inception_extractor(inception_weights, device=device)
    raise ValueError(f"unknown FID extractor '{name}'; choose one of {', '.join(EXTRACTORS)}")


def extract_features(images: torch.Tensor, model: FeatureModel, batch_size: int = 256,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """Features (N x F, float64) of images through clean-fid's batch hook `get_batch_features`."""
    from cleanfid.fid import get_batch_features

    feats = [get_batch_features(b, model, device) for b in torch.split(images, batch_size)]
    return np.concatenate(feats).astype(np.float64) if feats else np.empty((0, 0))


def fid_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """Fréchet distance between two feature sets: clean-fid's `fid_from_feats` (mean/cov + frechet_distance)."""
    from cleanfid.fid import fid_from_feats

    if len(feats1) < 2 or len(feats2) < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {len(feats1)} and {len(feats2)}")
    return float(np.real(fid_from_feats(np.asarray(feats1, np.float64), np.asarray(feats2, np.float64))))


def domain_fid(predictor, images1: torch.Tensor, images2: torch.Tensor) -> float:
    """Domain FID between two image sets (predictor features)."""
    model = domain_extractor(predictor)
    return fid_from_features(extract_features(images1, model), extract_features(images2, model))


class WalkFID(ImageMetric):
    """FID along walks: features of each walked image as it is made, one Fréchet distance per (walk, step)."""

    def __init__(self, ctx: EvalContext) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        # built before any image is made, so that missing Inception weights fail before the long loop
        self.extractor = make_extractor(cfg.extractor, ctx.predictor, cfg.inception_weights, ctx.device)
        self.real_feats = np.empty((0, 0))
        self.feats: dict[tuple[str, float], list[np.ndarray]] = defaultdict(list)

    def _features(self, images: torch.Tensor) -> np.ndarray:
        return extract_features(images, self.extractor, self.ctx.config.batch_size, self.ctx.device)

    def start(self, images: torch.Tensor) -> None:
        """Real reference features, and the start images as every walk's step 0."""
        self.real_feats = self._features(self.ctx.real[0])
        start_feats = self._features(images)
        for w in self.ctx.walks:
            self.feats[(w, 0.0)] = [start_feats]

    def walked(self, walk: str, j: int, images: torch.Tensor) -> None:
        feats = self._features(images)
        for i, e in enumerate(self.ctx.steps):
            self.feats[(walk, e)].append(feats[self.ctx.step_rows(i)])

    def rows(self) -> list[Row]:
        """One ``fid`` row per (walk, step), then the size of the real reference set."""
        extractor = self.ctx.config.extractor
        rows: list[Row] = []
        for (w, step), parts in sorted(self.feats.items()):
            feats = np.concatenate(parts)
            rows.append({"walk": w, "step": step, "metric": "fid", "value": fid_from_features(feats, self.real_feats),
                         "n_samples": len(feats), "extractor": extractor})
        rows.append({"metric": "fid_real_reference_size", "value": float(len(self.real_feats)),
                     "n_samples": len(self.real_feats), "extractor": extractor})
        return rows
