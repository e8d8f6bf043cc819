"""`dplase planted`: write a planted generator (known directions, no training) as a generator checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from dplase.priors import PRIOR_NAMES


@click.command("planted")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Generator checkpoint to write (.pt); PATH.png gets 64 samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the planted directions.")
@click.option("--z-dim", type=click.IntRange(min=1), default=16, show_default=True, help="Latent dimension.")
@click.option("--image-size", type=click.Choice(["32", "64"]), default="64", show_default=True,
              help="Image size in pixels.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="1: grayscale; 3: the colour variant.")
@click.option("--level", type=click.Choice(["aligned", "mixed"]), default="aligned", show_default=True,
              help="aligned: the first layer's principal directions are the planted ones (SeFa is right by "
                   "construction); mixed: they are not.")
@click.option("--prior", type=click.Choice(PRIOR_NAMES), default="gaussian", show_default=True,
              help="Latent prior p0.")
@click.option("--factor", "factors", multiple=True,
              help="Planted factor (repeatable, in direction order) [default: pos_x pos_y scale orientation "
                   "shape].")
@click.option("--gain", "gains", multiple=True, type=float, help="Gain per --factor (repeatable; default descending).")
@click.pass_context
def planted(ctx: click.Context, out: Path, seed: int, z_dim: int, image_size: str, channels: str, level: str,
            prior: str, factors: tuple[str, ...], gains: tuple[float, ...]) -> None:
    """Write a planted generator: sprites whose factors are functions of known latent directions.

    \b
    Example (the default: 16-d Gaussian latent, 64 px grayscale, five planted factors):
      dplase planted --out results/generators/planted/planted/seed0.pt --seed 0
    \b
    The hard level, in colour:
      dplase planted --out planted-mixed.pt --level mixed --channels 3 --image-size 32
    """
    from dplase.generators import load_generator
    from dplase.generators.planted import FACTORS, save_planted
    from dplase.plots.grids import save_image_grid

    try:
        path = save_planted(out, z_dim=z_dim, image_size=int(image_size), channels=int(channels), seed=seed,
                            level=level, factors=list(factors or FACTORS), gains=list(gains) if gains else None,
                            prior=prior)
    except ValueError as err:
        ctx.fail(str(err))
    generator = load_generator(path)
    save_image_grid(generator.generate(generator.sample_latents(64, seed)), path.with_suffix(".png"), nrow=8)
    click.echo(f"wrote {path} ({', '.join(generator.factor_names)} planted in {z_dim} dimensions) and "
               f"{path.with_suffix('.png')}")
