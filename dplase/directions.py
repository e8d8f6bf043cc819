"""DirectionSet: the artifact every direction-discovery method produces."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dplase import __version__
from dplase.artifacts import ArtifactError, config_hash, load_artifact, save_artifact
from dplase.walks import WALKS

#: the registered walk names (linear, norm, learned)


@dataclass
class DirectionSet:
    """K unit latent directions plus everything needed to trace where they came from.

    ``directions`` is K x d float32 with unit rows; ``scores`` has one value per direction (larger = more
    important for the method: eigenvalue, explained variance, variation); ``channel_masks`` (K x groups x C,
    optional) come from channel-subspace learning; ``extra`` holds further plain tensors a walk needs (for
    example the learned correction network's weights).
    """

    directions: torch.Tensor
    scores: torch.Tensor
    method: str
    config: dict[str, Any]
    walk: str = "linear"
    layer: str = ""
    seed: int = 0
    generator_sha256: str = ""
    package_version: str = __version__
    channel_masks: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    #: the generator's latent space the directions live in ("z"; "w" for StyleGAN2's whitened w)
    space: str = "z"

    def __post_init__(self) -> None:
        if self.directions.ndim != 2:
            raise ValueError(f"directions must be K x d, got shape {tuple(self.directions.shape)}")
        self.directions = self.directions.detach().to("cpu", torch.float32)
        norms = self.directions.norm(dim=1, keepdim=True)
        if torch.any(norms == 0) or not torch.isfinite(self.directions).all():
            raise ValueError("directions must be finite and non-zero")
        # renormalise only rows that are not unit already, so save()/load() round-trips bit-exactly
        off = (norms - 1).abs() > 1e-6
        self.directions = torch.where(off, self.directions / norms, self.directions)
        self.scores = torch.as_tensor(self.scores).detach().to("cpu", torch.float32).reshape(-1)
        if self.scores.numel() != self.k:
            raise ValueError(f"need one score per direction: {self.scores.numel()} scores for K={self.k}")
        WALKS.check(self.walk)

    @property
    def k(self) -> int:
        return int(self.directions.shape[0])

    @property
    def z_dim(self) -> int:
        return int(self.directions.shape[1])

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically as plain tensors + JSON metadata."""
        tensors: dict[str, Any] = {"directions": self.directions, "scores": self.scores, "extra": self.extra}
        if self.channel_masks is not None:
            tensors["channel_masks"] = self.channel_masks.detach().cpu()
        meta = {
            "method": self.method,
            "config": self.config,
            "config_hash": self.config_hash,
            "walk": self.walk,
            "layer": self.layer,
            "seed": self.seed,
            "generator_sha256": self.generator_sha256,
            "package_version": self.package_version,
            "space": self.space,
        }
        return save_artifact(path, "directions", tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DirectionSet:
        """Load a file written by `save` (weights_only; foreign files give a clear error)."""
        tensors, meta = load_artifact(path, kind="directions")
        try:
            return cls(
                directions=tensors["directions"],
                scores=tensors["scores"],
                method=meta["method"],
                config=meta["config"],
                walk=meta["walk"],
                layer=meta["layer"],
                seed=meta["seed"],
                generator_sha256=meta["generator_sha256"],
                package_version=meta["package_version"],
                channel_masks=tensors.get("channel_masks"),
                extra=dict(tensors.get("extra", {})),
                space=str(meta.get("space", "z")),  # sets written before spaces existed are in z
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:  # a hand-made or older foreign file
            raise ArtifactError(f"{path}: not a valid DirectionSet ({type(err).__name__}: {err})") from err
