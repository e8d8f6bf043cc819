"""Voynov & Babenko (ICML 2020): directions trained jointly with a reconstructor that must tell them apart.

The K directions are the first K rows of exp(A - Aᵀ) (an orthogonal matrix for any A, so they stay exactly
orthonormal with no penalty; as published, A starts near 0, i.e. the directions start near the coordinate
axes). Each step draws z, a direction index k and a shift ε (`dplase.walks.steps.StepRange.shifts`, published
defaults: uniform, scale 6, min shift 0.5), renders G(z) and G(walk(z, γ_k, ε)), and minimises
label_weight * CE(k) + shift_weight * L1(ε) over both the reconstructor and A.

Scores: each direction's held-out reconstructor recall (how reliably its edits are recognised).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.methods import FitContext, MethodConfig, MethodSpec, make_direction_set
from dplase.priors import seeded_generator
from dplase.reconstructor import build_reconstructor, per_direction_accuracy, reconstructor_terms, sample_pairs
from dplase.training.loop import LoopState, run_loop, step_generator
from dplase.walks import WALKS, make_walk
from dplase.walks.steps import StepRange

#: the walks without a learned correction network (only dplase trains one): linear, norm
SUPPORTED_WALKS = WALKS.where(needs_correction=False)
#: offset between the training seed and the seed of the held-out pairs used for the scores
EVAL_SEED_OFFSET = 7_777


@dataclass
class VoynovConfig(MethodConfig):
    """Published defaults (Adam lr 1e-4 for both parts, batch 32, shift scale 6, min shift 0.5,
    label weight 1, shift weight 0.25); the step count is scaled down for CPU runs."""

    steps: int = 5_000
    batch_size: int = 32
    lr: float = 1e-4  # reconstructor learning rate
    directions_lr: float = 1e-4
    shift_scale: float = 6.0
    min_shift: float = 0.5
    shift_distribution: str = "uniform"
    label_weight: float = 1.0
    shift_weight: float = 0.25
    init_scale: float = 0.001  # std of the initial A (near 0: directions start near the coordinate axes)
    reconstructor_width: int = 16
    n_eval: int = 1_024  # held-out pairs for the per-direction scores


class OrthonormalDirections(nn.Module):
    """K x d directions as the first K rows of the orthogonal matrix exp(A - Aᵀ)."""

    def __init__(self, k: int, dim: int, init_scale: float, seed: int) -> None:
        super().__init__()
        self.k = k
        self.log_half = nn.Parameter(init_scale * torch.randn(dim, dim, generator=seeded_generator(seed)))

    def forward(self) -> torch.Tensor:
        return torch.linalg.matrix_exp(self.log_half - self.log_half.T)[: self.k]


def fit(name: str, generator: GeneratorAdapter, config: VoynovConfig, context: FitContext) -> DirectionSet:
    """Train directions and reconstructor jointly (checkpointed, resumable) and return the directions."""
    if config.walk not in SUPPORTED_WALKS:
        raise ValueError(f"voynov trains with walk {' or '.join(SUPPORTED_WALKS)}, got '{config.walk}' "
                         "(the learned walk needs a correction network that only dplase trains)")
    walk_fn = make_walk(config.walk)
    shifts = StepRange(config.shift_scale, config.min_shift).shifts(config.shift_distribution)
    device = generator.device  # everything lives where the generator does (the CLI loads it on --device)
    directions = OrthonormalDirections(config.k, generator.z_dim, config.init_scale, context.seed).to(device)
    model = build_reconstructor(config.k, generator.channels, config.reconstructor_width, shifts,
                                seed=context.seed + 1, device=device)
    opt_dirs = torch.optim.Adam(directions.parameters(), lr=config.directions_lr)
    opt_model = torch.optim.Adam(model.parameters(), lr=config.lr)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        gen = step_generator(context.seed, step)
        x0, x1, idx, eps = sample_pairs(generator, directions(), walk_fn, config.batch_size, shifts, gen)
        terms = reconstructor_terms(model, x0, x1, idx, eps, config.label_weight, config.shift_weight)
        opt_dirs.zero_grad(set_to_none=True)
        opt_model.zero_grad(set_to_none=True)
        (terms["label"] + terms["shift"]).backward()
        opt_dirs.step()
        opt_model.step()
        return terms

    model.train()
    state = LoopState({"directions": directions, "reconstructor": model, "opt_directions": opt_dirs,
                       "opt_reconstructor": opt_model})
    meta = {"method": name, "config": dataclasses.asdict(config), "seed": context.seed,
            "generator_sha256": generator.checkpoint_sha256}
    run_loop(total_steps=config.steps, step_fn=step_fn, state=state, checkpoint_path=context.checkpoint_path,
             checkpoint_every=context.checkpoint_every, kind="voynov-checkpoint", meta=meta, desc="voynov",
             progress=context.progress)
    context.history.extend(state.history)

    with torch.no_grad():
        final = directions().detach()
    scores = per_direction_accuracy(model, generator, final, walk_fn, n=config.n_eval,
                                    seed=context.seed + EVAL_SEED_OFFSET, shifts=shifts)
    return make_direction_set(name, generator, config, context, final, scores)


SPEC = MethodSpec(names=("voynov",), config_cls=VoynovConfig, fit=fit)
