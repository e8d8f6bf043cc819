"""Voynov & Babenko (ICML 2020): directions trained jointly with a reconstructor that must tell them apart.

The K directions are the first K rows of exp(A - Aᵀ) (an orthogonal matrix for any A, so they stay exactly
orthonormal with no penalty; as published, A starts near 0, i.e. the directions start near the coordinate
axes). Each step draws z, a direction index k and a shift ε (`dplase.walks.steps.StepRange.shifts`), renders
G(z) and G(walk(z, γ_k, ε)), and minimises label_weight * CE(k) + shift_weight * L1(ε) over both the
reconstructor and A.

Step range (`dplase.walks.steps`): shifts uniform in [-T, T], T = `max_step` of the prior (1.77 at d = 16), with
minimum shift T / 12 (the published 0.5 / 6), the range every other method trains and is evaluated on; the
published fixed scale 6 (tuned for d = 512) is ``shift_scale: 6, min_shift: 0.5``.

Budget (`voynov_budget`, used for every option left at None): ``steps = STEPS_PER_DIM * z_dim`` (50 per latent
dimension: 800 at d = 16, 25 600 at d = 512), ``directions_lr = DIRECTIONS_MOVE / (STEPS_PER_DIM * z_dim)``
(5 / steps of the rule, 6.25e-3 at d = 16, also when ``steps`` is given: Adam moves an entry of A by at most
~lr per step, so the entries of A, hence the rotation angles of the directions, can move O(1) within the
budget; the published 1e-4 x 1e5 steps is 10) and reconstructor ``lr = RECONSTRUCTOR_LR``
(1e-3, the RCA reconstructor's rate, which learns in a few hundred steps). At the published lr 1e-4 and our
former 300 steps the directions never left the axes they start on (each kept |cos| 0.996-0.998 with an axis on
the planted generator at d = 16). An explicit value of any of the three overrides the rule.

Scores: each direction's held-out reconstructor recall (how reliably its edits are recognised).
The DirectionSet records its convergence (`dplase.methods.convergence_record`) and its trained step range
(``extra["max_step"]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.methods import (
    FitContext,
    MethodConfig,
    MethodSpec,
    convergence_record,
    latent_budget,
    make_direction_set,
)
from dplase.priors import seeded_generator
from dplase.reconstructor import build_reconstructor, per_direction_accuracy, reconstructor_terms, sample_pairs
from dplase.training.loop import LoopState, check_finite_update, run_loop, step_generator
from dplase.walks import WALKS, make_walk
from dplase.walks.steps import StepRange, shift_range

#: the walks without a learned correction network (only dplase trains one): linear, norm
SUPPORTED_WALKS = WALKS.where(needs_correction=False)
#: offset between the training seed and the seed of the held-out pairs used for the scores
EVAL_SEED_OFFSET = 7_777


#: the budget rule (see the module docstring; steps from `dplase.methods.latent_budget`): the directions' lr x
#: steps, the reconstructor's learning rate
DIRECTIONS_MOVE = 5.0
RECONSTRUCTOR_LR = 1e-3


def voynov_budget(z_dim: int, k: int | None = None) -> dict[str, float | int]:
    """The default budget at latent size ``z_dim``: ``steps = 50 z_dim``, ``directions_lr = 5 / steps`` and
    reconstructor ``lr = 1e-3`` (``k`` does not change it: every step trains all K directions' rotation).
    Where a config gives some of them, the others still come from here (lr does not follow a given steps)."""
    steps, directions_lr = latent_budget(z_dim, DIRECTIONS_MOVE)
    return {"steps": steps, "directions_lr": directions_lr, "lr": RECONSTRUCTOR_LR}


@dataclass
class VoynovConfig(MethodConfig):
    """Published defaults (Adam, batch 32, label weight 1, shift weight 0.25, A initialised at 0.001 randn)
    except the budget and the step range: ``steps``, ``lr``, ``directions_lr`` None follow `voynov_budget`,
    ``shift_scale`` / ``min_shift`` None follow the one step range (`dplase.walks.steps.shift_range`: T and
    T / 12). Explicit values override."""

    steps: int | None = None  # None: 50 * z_dim
    batch_size: int = 32
    lr: float | None = None  # reconstructor learning rate; None: 1e-3
    directions_lr: float | None = None  # None: 5 / (50 z_dim), whatever ``steps`` is
    shift_scale: float | None = None  # None: T of the prior (published: 6)
    min_shift: float | None = None  # None: shift_scale / 12 (published: 0.5)
    shift_distribution: str = "uniform"
    label_weight: float = 1.0
    shift_weight: float = 0.25
    init_scale: float = 0.001  # std of the initial A (near 0: directions start near the coordinate axes)
    reconstructor_width: int = 16
    n_eval: int = 1_024  # held-out pairs for the per-direction scores

    def resolved(self, generator: GeneratorAdapter) -> VoynovConfig:
        """This config with every None filled in for ``generator`` (budget rule, step range)."""
        budget = voynov_budget(generator.z_dim, self.k)
        given = {"steps": self.steps, "directions_lr": self.directions_lr, "lr": self.lr}
        budget.update({name: value for name, value in given.items() if value is not None})
        scale = shift_range(generator.prior, self.shift_scale, self.min_shift)
        return dataclasses.replace(self, steps=int(budget["steps"]), directions_lr=float(budget["directions_lr"]),
                                   lr=float(budget["lr"]), shift_scale=scale.max_step, min_shift=scale.min_step)


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
    config = config.resolved(generator)
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
        check_finite_update(terms, [*directions.parameters(), *model.parameters()], step)  # before any update
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
    extra = {"max_step": torch.tensor(float(config.shift_scale), dtype=torch.float64),
             "convergence": convergence_record(state.history, total=("label", "shift"))}
    return make_direction_set(name, generator, config, context, final, scores, extra=extra)


SPEC = MethodSpec(names=("voynov",), config_cls=VoynovConfig, fit=fit)
