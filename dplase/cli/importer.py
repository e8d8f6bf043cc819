"""`dplase import`: convert a foreign generator checkpoint (rosinality, genforce, BigGAN) into a dplase one."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dplase.cli.options import InputFileError, parse_key_values
from dplase.generators.importers import IMPORTERS


def _option_value(text: str) -> object:
    """A KEY=VALUE option's value as JSON where it parses (numbers, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@click.command("import")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="dplase generator file to write (.pt); PATH.png gets 16 samples, PATH.losses.parquet an "
                   "empty loss table (as the workflow writes beside an imported generator).")
@click.option("--format", "fmt", type=click.Choice(list(IMPORTERS)), default=None,
              help="The checkpoint's layout [default: told from the file].")
@click.option("--option", "options", multiple=True, callback=parse_key_values,
              help="Importer option KEY=VALUE (repeatable): truncation=0.7, use=g (rosinality), classes=[207] "
                   "(biggan).")
@click.option("--name", default=None, help="Model name recorded in the file [default: the checkpoint's stem].")
@click.option("--dataset", default=None, help="Dataset the generator models (recorded; the evaluation checks it).")
@click.option("--space", type=click.Choice(["z", "w"]), default=None,
              help="Also print the dimension and prior of this latent space.")
def import_checkpoint(checkpoint: Path, out: Path, fmt: str | None, options: dict[str, str], name: str | None,
                      dataset: str | None, space: str | None) -> None:
    """Import CHECKPOINT, a generator in a foreign layout, as a dplase generator file: it is loaded with
    torch.load(weights_only=True) (nothing is unpickled beyond tensors), every tensor is checked against the
    family's layout, and the result loads like a trained generator everywhere in dplase.

    \b
    Examples:
      dplase import stylegan2-ffhq-config-f.pt --out results/models/ffhq.pt --option truncation=0.7
      dplase import biggan-deep-128/ --out results/models/biggan-dog.pt --option 'classes=[207]'
    """
    from dplase.artifacts import ArtifactError
    from dplase.generators.registry import load_generator
    from dplase.jobs import import_generator_job

    parsed = {key: _option_value(value) for key, value in options.items()}
    try:  # the workflow's own job: the same file, grid and loss table
        path = import_generator_job(options={"path": checkpoint, "format": fmt, "options": parsed,
                                             "dataset": dataset}, out=out, name=name)
    except (ArtifactError, ValueError) as err:
        raise InputFileError(str(err)) from err
    adapter = load_generator(path)
    if space is not None:
        adapter = adapter.in_space(space)
    click.echo(f"wrote {path} (family {adapter.family}, {adapter.image_size} px, latent space {adapter.space} of "
               f"dimension {adapter.z_dim}, layers {', '.join(adapter.layers[:3])}...) and {path.with_suffix('.png')}")
