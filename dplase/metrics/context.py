"""What every metric sees: the protocol (`EvalConfig`), the shared evaluation state (`EvalContext`) and the hooks
of metrics fed by the walk-image loop (`ImageMetric`).

A metric registered in `dplase.metrics.METRICS` is either a function ``EvalContext -> list[Row]`` (asked after
the walk loop; it reads the walked latents, the real set, ...), or an `ImageMetric` subclass (``needs_images``
in its registry entry): built from the context before the loop, it sees the start images once and each
(walk, direction) batch of walked images as soon as it is generated, then is asked for its rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from dplase.metrics import METRICS
from dplase.walks import EVAL_WALKS
from dplase.walks.steps import StepRange

if TYPE_CHECKING:
    from dplase.data.base import ImageDataset
    from dplase.directions import DirectionSet
    from dplase.generators.base import GeneratorAdapter
    from dplase.metrics.predictor import FactorPredictor, Predictions

#: one long-format measurement: walk, direction, step, metric, value, n_samples, extractor (absent keys: null)
Row = dict[str, Any]


@dataclass
class EvalConfig:
    """The evaluation protocol (fixed defaults; change only to make runs cheaper or larger)."""

    metrics: tuple[str, ...] = METRICS.names
    n_samples: int = 64  # start latents z0
    seed: int = 0
    # None: the one step range T of the prior (`dplase.walks.steps`), the range every method trains on; an
    # explicit larger value extrapolates on request (per-step rows past the run's trained range: extrapolated)
    max_eps: float | None = None
    n_steps: int = 7  # odd: the grid contains 0
    # None: linear, norm, learned where the set has a correction, masked where it has channel masks
    walks: tuple[str, ...] | None = None  # names of `dplase.walks.EVAL_WALKS`
    extractor: str = "domain"
    inception_weights: str | None = None
    n_real: int = 2000  # real images (with replacement): FID reference, attribute reference scales
    encoder_steps: int = 600
    encoder_batch_size: int = 64
    # disentanglement codes (disent, and the exact ceiling): real images drawn without replacement with seed + 2,
    # max(n_mig, n_dci_train + n_dci_test) of them (a smaller dataset is used whole, split in the same ratio);
    # MIG / modularity on the first n_mig, DCI importances on the first n_dci_train, informativeness on the next
    # n_dci_test (dplase.metrics.disentanglement.plan_sizes; each row's n_samples and note record the sizes)
    n_mig: int = 10_000
    n_dci_train: int = 10_000
    n_dci_test: int = 5_000
    # gbt: boosted regression trees on the ordinal code of a continuous factor, classification trees for a
    # categorical one; gbt_classifier: classification trees for every factor (disentanglement_lib); lasso
    dci_importance: str = "gbt"
    dci_estimators: int = 100  # boosting iterations per factor (disentanglement_lib: sklearn's default)
    rca_steps: int = 400
    rca_test: int = 1024
    batch_size: int = 256
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
        if self.n_steps < 2 or (self.max_eps is not None and not self.max_eps > 0):
            raise ValueError(f"need n_steps >= 2 and max_eps > 0, got {self.n_steps} and {self.max_eps}")
        if self.walks is not None:
            for walk in self.walks:
                EVAL_WALKS.check(walk)
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {self.n_samples}")
        if min(self.n_mig, self.n_dci_train, self.n_dci_test) < 1:
            raise ValueError(f"n_mig, n_dci_train and n_dci_test must be >= 1, got {self.n_mig}, "
                             f"{self.n_dci_train} and {self.n_dci_test}")

    def step_range(self, prior=None) -> StepRange:
        """[-max_eps, max_eps]; with ``max_eps`` None, [-T, T] with T = `max_step` of ``prior`` (then needed)."""
        if self.max_eps is not None:
            return StepRange(float(self.max_eps))
        if prior is None:
            raise ValueError("max_eps is None (the prior's T): pass the prior to get the step grid")
        return StepRange.for_prior(prior)

    def step_grid(self, prior=None) -> np.ndarray:
        """The symmetric step grid, rounded so that steps compare exactly across runs (``prior``: see
        `step_range`)."""
        return self.step_range(prior).grid(self.n_steps)


@dataclass
class EvalContext:
    """The shared state of one evaluation. The walk loop fills ``walked``; metrics only read."""

    generator: GeneratorAdapter
    directions: DirectionSet
    predictor: FactorPredictor  # on ``device``, in eval mode
    dataset: ImageDataset  # the real dataset the predictor was trained on
    config: EvalConfig
    device: str | torch.device
    walks: list[str]
    steps: list[float]  # the non-zero grid steps (step 0 is the start point itself)
    z0: torch.Tensor  # (K * n) x d on CPU, from seed; rows j*n:(j+1)*n are direction j's start points
    #: (walk, direction) -> walked latents, (len(steps) * n) x d on CPU: step i's block is `step_rows(i)`; for a
    #: feature-space edit (masked) the latents of its underlying walk (`dplase.walks.walk_for`)
    walked: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)
    #: (walk, direction) -> exact factors of a feature-space edit's images, where the generator knows them from
    #: features (`PlantedAdapter.exact_factors_from_features`); latent walks' come from their latents
    walked_exact: dict[tuple[str, int], dict[str, torch.Tensor]] = field(default_factory=dict)
    #: rows the walk loop itself measures (the masked walk's group choice), added to the results
    loop_rows: list[Row] = field(default_factory=list)
    #: the predictor's reading of the latest image batch, shared by the image metrics it is shown to
    _last_predictions: tuple[Any, Predictions] | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        """Start points per direction."""
        return self.config.n_samples

    @property
    def k(self) -> int:
        """Number of directions."""
        return self.directions.k

    def block(self, j: int) -> slice:
        """Rows of direction j in ``z0`` and in the start images."""
        return slice(j * self.n, (j + 1) * self.n)

    def step_rows(self, i: int) -> slice:
        """Rows of step ``steps[i]`` in a (walk, direction) batch (walked latents or images)."""
        return slice(i * self.n, (i + 1) * self.n)

    @cached_property
    def real(self) -> tuple[torch.Tensor, pd.DataFrame]:
        """The real reference set (images, factors): ``n_real`` items drawn with seed + 2 (on first use)."""
        return self.dataset.sample(self.config.n_real, self.config.seed + 2)

    @cached_property
    def real_predictions(self) -> Predictions:
        """The predictor's reading of the real reference set (computed once, whichever metrics need it)."""
        return self.predictor.predict(self.real[0])

    def predict(self, key: Any, images: torch.Tensor) -> Predictions:
        """The predictor's reading of one image batch of the walk loop (``key``: "start" or (walk, direction)):
        every image metric shown the batch gets the same predictions from one pass; only the latest is kept."""
        if self._last_predictions is None or self._last_predictions[0] != key:
            self._last_predictions = (key, self.predictor.predict(images))
        return self._last_predictions[1]

    def walk_fn(self, walk: str):
        """``(z0, gamma, eps) -> z`` for a walk name, on the generator's device (a feature-space edit's: the latent
        of its underlying walk)."""
        from dplase.walks import walk_for

        return walk_for(self.directions, walk, device=self.generator.device)

    def exact_factors(self, walk: str, j: int) -> dict[str, torch.Tensor] | None:
        """The exact factors of (walk, direction j)'s images, for a generator with ``exact_factors``: from the
        walked latents for a latent walk, from the edited features for a feature-space edit (None where the
        generator cannot tell them from the features at the DirectionSet's layer)."""
        from dplase.walks import is_feature_edit

        if is_feature_edit(walk):
            return self.walked_exact.get((walk, j))
        return self.generator.exact_factors(self.walked[(walk, j)])


class ImageMetric:
    """A metric fed by the walk-image loop; every image is generated once and shown to all image metrics.

    Keep only what the rows need (predictions, features), so that memory does not grow with the image count.
    """

    def __init__(self, ctx: EvalContext) -> None:
        self.ctx = ctx

    def start(self, images: torch.Tensor) -> None:
        """The start images G(z0), (K * n) on CPU; ``ctx.block(j)`` selects direction j's."""

    def walked(self, walk: str, j: int, images: torch.Tensor) -> None:
        """Direction j's walked images under ``walk``, (len(steps) * n) on CPU; ``ctx.step_rows(i)`` selects
        step i's, row r of each block walked from start point r of the direction's block."""

    def rows(self) -> list[Row]:
        """The measurement rows, asked once after the loop."""
        raise NotImplementedError
