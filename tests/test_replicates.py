"""Replicates are independent and deterministic: a replicate is (generator seed, run seed), its evaluation
draws come from `dplase.seeds.replicate_seed`, and a deterministic method (SeFa) gets its spread from the
generator seed and the evaluation draws, never from nowhere (a zero-width CI over identical rows)."""

from __future__ import annotations

import numpy as np
import torch
from conftest import tiny_evaluation_setup

from dplase.generators.dcgan import DCGANAdapter
from dplase.methods import FitContext, fit
from dplase.metrics.evaluate import EvalConfig, evaluate
from dplase.seeds import replicate_seed

ARCH = {"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}


def summary(rows) -> dict[tuple, float]:
    """The run-level and per-direction values of an evaluation, keyed by (walk, direction, step, metric)."""
    return {(r.get("walk"), r.get("direction"), r.get("step"), r["metric"]): r["value"] for r in rows
            if np.isfinite(r["value"])}


def run(model_seed: int, run_seed: int) -> dict[tuple, float]:
    data, _, predictor, _ = tiny_evaluation_setup()
    generator = DCGANAdapter.build(ARCH, seed=model_seed)  # generator seed: a different (untrained) GAN
    directions = fit("sefa", generator, {"k": 3}, FitContext(seed=run_seed, progress=False))
    config = EvalConfig(metrics=("attr", "density"), n_samples=8, n_steps=3, n_real=64, walks=("linear",),
                        seed=replicate_seed(0, model_seed, run_seed), progress=False)
    return summary(evaluate(generator, directions, predictor, data, config))


def test_the_same_replicate_gives_the_same_numbers():
    assert run(0, 1) == run(0, 1)


def test_run_seeds_change_the_evaluation_draws_even_for_a_deterministic_method():
    gen = DCGANAdapter.build(ARCH, seed=0)
    same = [fit("sefa", gen, {"k": 3}, FitContext(seed=s)).directions for s in (0, 1)]
    assert torch.equal(*same)  # SeFa ignores the run seed ...
    a, b = run(0, 0), run(0, 1)
    assert a.keys() == b.keys()
    changed = [k for k in a if a[k] != b[k]]
    assert len(changed) > 0.5 * len(a)  # ... but its replicates are evaluated on independent draws


def test_sefa_spreads_across_generator_seeds():
    values = [run(model_seed, 0) for model_seed in (0, 1, 2)]
    key = ("linear", None, None, "attr_top_share")
    spread = np.std([v[key] for v in values], ddof=1)
    assert spread > 0
    dirs = [fit("sefa", DCGANAdapter.build(ARCH, seed=s), {"k": 3}).directions for s in (0, 1)]
    assert torch.linalg.matrix_norm(dirs[0].abs() - dirs[1].abs()) > 0.1  # different GANs, different directions
