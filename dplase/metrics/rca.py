"""RCA (reconstructor classification accuracy, Voynov & Babenko 2020): a label-free interpretability score.

A fresh reconstructor (`dplase.reconstructor`, the same module the ``voynov`` method trains jointly) learns,
on fixed directions, to tell from an image pair (G(z), G(walk(z, γ_k, ε))) which direction k was applied;
its accuracy on pairs drawn from a different seed is the score (chance: 1/K).

`rca_metric` is the registered metric "rca": one score per walk (seed + 4 of the evaluation seed), with shifts on
the one step range (`dplase.walks.steps.shift_range`: scale T of the prior, minimum T / 12), the range Voynov's
method trains on and the evaluation grid defaults to, whatever ``max_eps`` the grid was asked for. A feature-space
edit (the masked walk) gets a NaN row with the reason: the reconstructor renders its pairs from latents.
"""

from __future__ import annotations

import math

import torch

from dplase.metrics.context import EvalContext, Row
from dplase.reconstructor import WalkFn, reconstructor_accuracy, train_reconstructor
from dplase.walks import is_feature_edit
from dplase.walks.steps import shift_range


def rca(generator, directions: torch.Tensor, walk_fn: WalkFn, steps: int = 400, n_test: int = 1024,
        seed: int = 0, batch_size: int = 32, shift_scale: float | None = None, min_shift: float | None = None,
        device: str | torch.device = "cpu", progress: bool = True) -> float:
    """Held-out direction-classification accuracy of a reconstructor trained for ``steps`` steps.

    Training pairs come from ``seed``, test pairs from ``seed + 1`` (disjoint random streams). Shifts:
    `shift_range` of the generator's prior (scale T, minimum T / 12) where ``shift_scale`` / ``min_shift`` are
    None (Voynov's published values: 6 and 0.5).
    """
    if directions.shape[0] < 2:
        raise ValueError("RCA needs at least 2 directions")
    shifts = shift_range(generator.prior, shift_scale, min_shift).shifts()
    model, _ = train_reconstructor(generator, directions, walk_fn, steps=steps, batch_size=batch_size,
                                   shifts=shifts, seed=seed, device=device, progress=progress)
    return reconstructor_accuracy(model, generator, directions, walk_fn, n=n_test, seed=seed + 1,
                                  shifts=shifts)


def rca_metric(ctx: EvalContext) -> list[Row]:
    """RCA per walk, the reconstructor trained and tested on that walk."""
    cfg, gen = ctx.config, ctx.generator
    rows: list[Row] = []
    scale = shift_range(gen.prior)
    for w in ctx.walks:
        if is_feature_edit(w):
            rows.append({"walk": w, "metric": "rca", "value": math.nan,
                         "note": "not measured: the reconstructor renders G(z) from latents; a feature-space edit "
                                 "has no latent of its own"})
            continue
        # shifts on the one step range, T of the prior (not Voynov's 6, tuned for d = 512): the range the
        # methods train on and the grid defaults to; RCA never extrapolates
        value = rca(gen, ctx.directions.directions, ctx.walk_fn(w), steps=cfg.rca_steps, n_test=cfg.rca_test,
                    seed=cfg.seed + 4, shift_scale=scale.max_step, min_shift=scale.min_step,
                    device=gen.device, progress=cfg.progress)
        rows.append({"walk": w, "metric": "rca", "value": value, "n_samples": cfg.rca_test})
    return rows
