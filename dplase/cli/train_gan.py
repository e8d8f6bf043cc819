"""`dplase train-gan` and `dplase sample`: train the built-in DCGAN on a dataset, draw sample grids."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import click

from dplase.cli.options import InputFileError, parse_key_values
from dplase.data import DATASETS
from dplase.priors import PRIOR_NAMES
from dplase.training.gan import GanConfig


def _default(name: str, text: str) -> str:
    """Help text ending with the GanConfig default of a field (the option itself defaults to None = that)."""
    return f"{text} [default: {GanConfig.__dataclass_fields__[name].default}]."


@click.command("train-gan")
@click.option("--dataset", required=True, help=f"Dataset name: {', '.join(DATASETS)}.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Generator checkpoint to write (.pt); PATH.png, PATH.losses.parquet are written beside it.")
@click.option("--image-size", type=click.Choice(["32", "64"]), default="64", show_default=True,
              help="Image size in pixels.")
@click.option("--steps", type=click.IntRange(min=0), default=None, help=_default("steps", "Training steps"))
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help=_default("batch_size", "Batch size"))
@click.option("--width", type=click.IntRange(min=1), default=None,
              help=_default("width", "Base channel width of G and D"))
@click.option("--z-dim", type=click.IntRange(min=1), default=None, help=_default("z_dim", "Latent dimension"))
@click.option("--hidden", type=click.IntRange(min=0), default=None,
              help=_default("hidden", "Size of the hidden fully connected layer of G and of D's head (0: none)"))
@click.option("--mbstd/--no-mbstd", default=None,
              help=_default("mbstd", "Minibatch standard-deviation channel in D"))
@click.option("--prior", type=click.Choice(PRIOR_NAMES), default="gaussian", show_default=True,
              help="Latent prior p0.")
@click.option("--pixelnorm", is_flag=True, help="Normalise z first (makes G invariant to ||z||).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help=_default("lr", "Adam learning rate of G and D"))
@click.option("--r1-gamma", type=click.FloatRange(min=0), default=None, help=_default("r1_gamma", "R1 penalty weight"))
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=None,
              help=_default("ema_decay", "EMA decay of the saved generator's weights"))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of init, data and latents.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda:0.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=None,
              help=_default("checkpoint_every", "Checkpoint interval in steps (0: only on SIGTERM/SIGUSR2)"))
@click.option("--grid-every", type=click.IntRange(min=0), default=None,
              help=_default("grid_every", "Rewrite PATH.png every N steps (0: only at the end)"))
@click.option("--data-option", "data_options", multiple=True, callback=parse_key_values, metavar="KEY=VALUE",
              help="Extra dataset option (repeatable), e.g. path=DIR for --dataset folder.")
@click.option("--threads", type=click.IntRange(min=1), default=lambda: min(2, os.cpu_count() or 1),
              show_default="2, or 1 on a one-core machine",
              help="torch CPU threads. On an idle 2-core machine 2 threads run the default recipe about 1.6x "
                   "faster than 1; on a busy shared machine use 1 (spinning threads then slow every step).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a tqdm progress bar.")
@click.pass_context
def train_gan(ctx: click.Context, dataset: str, out: Path, image_size: str, steps: int | None,
              batch_size: int | None, width: int | None, z_dim: int | None, hidden: int | None,
              mbstd: bool | None, prior: str, pixelnorm: bool,
              lr: float | None, r1_gamma: float | None, ema_decay: float | None, seed: int, device: str,
              checkpoint_every: int | None, grid_every: int | None, data_options: dict[str, str],
              threads: int, progress: bool) -> None:
    """Train the built-in DCGAN (non-saturating loss + R1, EMA generator) and write its checkpoint.

    Checkpoints go to PATH.ckpt every --checkpoint-every steps and on SIGTERM/SIGUSR2 (exit code 143);
    rerunning the same command resumes, also after kill -9. If PATH already holds a generator trained with
    the same configuration, nothing is done.

    \b
    Example (the default CPU recipe, about 9 minutes on an idle 2-core machine):
      dplase train-gan --dataset shapes --out results/models/shapes-dcgan64.pt --seed 0
    \b
    Quick 32 px run:
      dplase train-gan --dataset shapes --image-size 32 --steps 200 --out /tmp/shapes32.pt
    """
    import dataclasses

    from dplase.artifacts import ArtifactError
    from dplase.training import NonFiniteLossError, Preempted
    from dplase.training.gan import train_gan as run_training

    given = {"steps": steps, "batch_size": batch_size, "width": width, "z_dim": z_dim, "hidden": hidden,
             "mbstd": mbstd, "lr": lr,
             "r1_gamma": r1_gamma, "ema_decay": ema_decay, "checkpoint_every": checkpoint_every,
             "grid_every": grid_every}
    fields = {k: v for k, v in given.items() if v is not None}
    config = GanConfig(dataset=dataset, image_size=int(image_size), prior=prior, pixelnorm=pixelnorm, seed=seed,
                       dataset_options=dict(data_options), **fields)
    data = _load_dataset_or_fail(ctx, config)
    try:
        import torch

        torch.device(device)
    except RuntimeError as err:
        raise _bad(ctx, "device", str(err)) from err
    click.echo(f"train-gan: {dataset} {image_size}px, config {config.hash()}: "
               + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items() if k != "dataset"), err=True)
    started, threads_before = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        path = run_training(config, out, device=device, progress=progress, dataset=data)
    except Preempted as stop:
        click.echo(f"train-gan: {stop}", err=True)
        raise
    except NonFiniteLossError as err:  # the run failed (exit code 1); its last good checkpoint is kept
        raise click.ClickException(str(err)) from None
    except ArtifactError as err:  # e.g. a checkpoint of another configuration at PATH.ckpt
        raise InputFileError(str(err)) from None
    finally:
        torch.set_num_threads(threads_before)  # the command may run inside another process (tests, notebooks)
    click.echo(f"train-gan: wrote {path} and {path.with_suffix('.png')} "
               f"({time.perf_counter() - started:.0f} s)", err=True)


def _load_dataset_or_fail(ctx: click.Context, config):
    """Load the dataset, turning its ValueErrors (unknown name, unsupported size) into usage errors."""
    from dplase.data import load_dataset

    try:
        return load_dataset(config.dataset, image_size=config.image_size, seed=config.seed,
                            **config.dataset_options)
    except (ValueError, TypeError) as err:
        text = str(err)
        name = "image_size" if "size" in text else "data_options" if "option" in text else "dataset"
        raise _bad(ctx, name, text) from err


def _bad(ctx: click.Context, name: str, message: str) -> click.BadParameter:
    """A usage error attributed to the option whose parameter name is ``name``."""
    param = next((p for p in ctx.command.params if p.name == name), None)
    return click.BadParameter(message, ctx=ctx, param=param)


@click.command("sample")
@click.option("--generator", "generator_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Generator checkpoint written by train-gan.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG grid to write.")
@click.option("--n", type=click.IntRange(min=1), default=64, show_default=True, help="Number of samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the latents.")
@click.option("--nrow", type=click.IntRange(min=1), default=None, help="Images per row [default: ceil(sqrt(n))].")
@click.option("--device", default="cpu", show_default=True, help="torch device.")
@click.pass_context
def sample(ctx: click.Context, generator_path: Path, out: Path, n: int, seed: int, nrow: int | None,
           device: str) -> None:
    """Draw N samples from a generator checkpoint (latents from its prior, seeded) into a PNG grid.

    \b
    Example:
      dplase sample --generator results/models/shapes-dcgan64.pt --out results/shapes-samples.png --n 64
    """
    from dplase.artifacts import ArtifactError
    from dplase.generators import load_generator
    from dplase.plots.grids import save_image_grid

    try:
        generator = load_generator(generator_path, device=device)
    except ArtifactError as err:
        raise _bad(ctx, "generator_path", str(err)) from err
    images = generator.generate(generator.sample_latents(n, seed))
    save_image_grid(images, out, nrow=nrow or math.ceil(math.sqrt(n)))
    click.echo(f"sample: wrote {n} samples of {generator_path} to {out}", err=True)
