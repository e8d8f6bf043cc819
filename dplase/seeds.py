"""Seed semantics, in one place: what every seed of a study is, and how the evaluation's seed is derived.

- **Generator seed** (``model_seed``; a model's `seeds` in the config, default its ``train.seed`` or
  ``planted.seed``): the GAN's training seed, or a planted generator's directions and mixing.
- **Run seed** (``seed``; a sweep's `seeds`): the discovery method's seed (initialisation, minibatches).
  Closed-form methods (SeFa, coordinate) ignore it: their spread over replicates comes only from the generator
  seed and the evaluation seed below.
- **A replicate** is one (generator seed, run seed) pair: the ``model_seed`` and ``seed`` columns.
- **Evaluation seed** of a run: `replicate_seed` of the config's ``evaluation.seed`` and the run's replicate.
  Every random draw of the evaluation derives from it (start latents: seed; real images: seed + 2; code
  encoder: seed + 3, its held-out fit: seed + 7; RCA: seed + 4 and + 5; exact-factor references: seed + 6),
  so replicates are independent, while the methods of one replicate share every draw (paired comparisons).
  Replicate (0, 0) evaluates with ``evaluation.seed`` itself.
"""

from __future__ import annotations

#: multipliers of the replicate's seeds: far apart, and far above the evaluation's own offsets (0..7)
RUN_SEED_STRIDE = 7_919
MODEL_SEED_STRIDE = 104_729


def replicate_seed(evaluation_seed: int, model_seed: int, run_seed: int) -> int:
    """The evaluation seed of a replicate (see the module): the same for every method of the replicate."""
    if min(evaluation_seed, model_seed, run_seed) < 0:
        raise ValueError(f"seeds must be >= 0, got {evaluation_seed}, {model_seed}, {run_seed}")
    return int(evaluation_seed) + RUN_SEED_STRIDE * int(run_seed) + MODEL_SEED_STRIDE * int(model_seed)
