"""`dplase validate-density`: train the learned walk's F and C on known priors and say how well each walk
preserves density (one JSON object per prior and walk on stdout)."""

from __future__ import annotations

import json
import math

import click

from dplase.priors import PRIOR_NAMES


def _json_value(value):
    """NaN as null (JSON has no NaN)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


@click.command("validate-density")
@click.option("--prior", "priors", multiple=True, type=click.Choice(PRIOR_NAMES),
              help="Prior to validate on (repeatable) [default: all of them].")
@click.option("--dim", type=click.IntRange(min=1), default=16, show_default=True,
              help="Latent dimension (the default study's z_dim is 16).")
@click.option("--cdf-steps", type=click.IntRange(min=0), default=1500, show_default=True, help="F's training steps.")
@click.option("--correction-steps", type=click.IntRange(min=0), default=1500, show_default=True,
              help="C's training steps (F frozen).")
@click.option("--newton-steps", type=click.IntRange(min=0), default=5, show_default=True,
              help="Level-projection steps on F (0: C's network alone).")
@click.option("--projection-start", type=click.Choice(["linear", "network"]), default="linear", show_default=True,
              help="Where the projection starts: the linear step (C's network unused) or the network's proposal.")
@click.option("--projection", type=click.Choice(["normal", "orthogonal"]), default="normal", show_default=True,
              help="Newton steps along the level's normal (nearest level point) or orthogonal to the direction "
                   "(the full step along it kept).")
@click.option("--directions", "n_directions", type=click.IntRange(min=1), default=8, show_default=True,
              help="Random orthonormal directions to walk along (at most --dim).")
@click.option("--n-eval", type=click.IntRange(min=2), default=512, show_default=True, help="Held-out start points.")
@click.option("--n-steps", type=click.IntRange(min=2), default=None,
              help="Evaluation grid size in [-T, T] [default: the evaluation's, 7].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads [default: torch's].")
@click.option("--progress/--no-progress", default=False, show_default=True, help="Training progress bars.")
@click.pass_context
def validate_density(ctx: click.Context, priors: tuple[str, ...], dim: int, cdf_steps: int, correction_steps: int,
                     newton_steps: int, projection_start: str, projection: str, n_directions: int, n_eval: int,
                     n_steps: int | None, seed: int, threads: int | None, progress: bool) -> None:
    """Mean |Delta log p0| and the share of walked latents outside the central 98% of the prior's norm
    distribution, for the linear, norm and learned walks, over the evaluation's step range [-T, T].

    \b
    Keys: prior, walk, drift (mean |Delta log p0|, nats; the uniform prior's density is smoothed by
    N(0, 0.05^2) at the cube's faces so a step outside costs a finite amount), outside_norm (share outside the
    central 98% of ||z||), outside (share outside the support), progress (mean step along the direction / eps),
    max_step (T), steps (the evaluation grid), max_abs_log_pdf_error (F on [-3, 3], Gaussian only).
    \b
    Example (about 30 s per prior on one core):
      dplase validate-density --prior gaussian --threads 1
    """
    import torch

    from dplase.walks.learned import DensityConfig
    from dplase.walks.validation import validate_density as run
    from dplase.walks.validation import walk_records

    if n_directions > dim:
        ctx.fail(f"--directions {n_directions} is more than --dim {dim} (the directions are orthonormal)")
    if threads is not None:
        torch.set_num_threads(threads)
    for prior in priors or PRIOR_NAMES:
        cfg = DensityConfig(newton_steps=newton_steps, projection_start=projection_start, projection=projection)
        result = run(prior, dim=dim, seed=seed, cdf_steps=cdf_steps, correction_steps=correction_steps,
                     n_directions=n_directions, n_eval=n_eval, cfg=cfg, progress=progress, n_steps=n_steps)
        for record in walk_records(result):
            click.echo(json.dumps({k: _json_value(v) for k, v in record.items()}))
