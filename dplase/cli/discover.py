"""`dplase discover` (fit any registered method) and `dplase traverse` (draw a traversal grid).

Both are method-agnostic: the common options map onto fields of the method's config dataclass when it has
them (an option the method lacks is a usage error), and ``--param KEY=VALUE`` sets any other field, with the
value converted to the field's declared type.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import click

from dplase.cli.options import InputFileError
from dplase.methods import METHODS
from dplase.walks import WALKS

#: CLI option (click parameter name) -> the method option it sets (as configs spell it)
OPTION_FIELDS = {
    "walk": "walk", "layer": "layer", "k": "k", "steps": "steps", "lr": "lr", "batch_size": "batch_size",
    "lambda_": "lambda", "zeta": "zeta", "estimator": "estimator", "orthogonal": "orthogonal",
    "subspace": "subspace", "space": "space",
}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def convert_value(text: str, hint: Any) -> Any:
    """Convert ``text`` to the type ``hint`` (int, float, bool, str, X | None, list/tuple as JSON)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert_value(text, arg)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError("; ".join(errors))
    if hint is bool:
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValueError(f"expected a boolean (true/false), got '{text}'")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got '{text}'") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got '{text}'") from None
    if hint is str:
        return text
    if origin in (list, tuple) or hint in (list, tuple):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"expected a JSON list, got '{text}'") from None
        if not isinstance(value, list):
            raise ValueError(f"expected a JSON list, got '{text}'")
        return tuple(value) if (origin or hint) is tuple else value
    raise ValueError(f"cannot parse a value of type {hint}")


def config_overrides(
    method: str, options: dict[str, Any], params: tuple[str, ...], given: set[str]
) -> dict[str, Any]:
    """Config overrides from the common options that were given and from ``--param KEY=VALUE`` pairs.

    Raises click.UsageError for an option the method lacks, a malformed/unknown/badly typed param, or a
    field set twice.
    """
    from dplase.methods import get_method, option_fields

    cls = get_method(method).config_cls
    hints = typing.get_type_hints(cls)
    fields = {**{f.name: f.name for f in dataclasses.fields(cls)}, **option_fields(cls)}  # option -> field
    overrides: dict[str, Any] = {}
    for option in sorted(given & set(OPTION_FIELDS)):
        flag = "--" + option.rstrip("_").replace("_", "-")
        if OPTION_FIELDS[option] not in fields:
            known = ", ".join(sorted(fields))
            raise click.UsageError(f"{flag} does not apply to method '{method}' (its options: {known})")
        overrides[fields[OPTION_FIELDS[option]]] = options[option]
    for item in params:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise click.UsageError(f"--param expects KEY=VALUE, got '{item}'")
        if key not in fields:
            raise click.UsageError(f"method '{method}' has no option '{key}'; known: {', '.join(sorted(fields))}")
        if fields[key] in overrides:
            raise click.UsageError(f"option '{key}' is set twice (by a flag and --param, or by two --param)")
        try:
            overrides[fields[key]] = convert_value(text, hints[fields[key]])
        except ValueError as err:
            raise click.UsageError(f"--param {key}: {err}") from None
    return overrides


@click.command("discover")
@click.option("--generator", "generator_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Generator checkpoint (from `dplase train-gan`).")
@click.option("--method", required=True, type=click.Choice(list(METHODS)), help="Direction-discovery method.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output DirectionSet (…/directions.pt); loss curves and checkpoint go beside it.")
@click.option("--walk", type=click.Choice(list(WALKS)), help="Walk the directions are trained for / used with.")
@click.option("--layer", help="Split layer of the generator (default: the generator's first split point).")
@click.option("--space", type=click.Choice(["z", "w"]),
              help="Latent space to run in (default z; w: StyleGAN2's mapped w, whitened).")
@click.option("--k", type=click.IntRange(min=1), help="Number of directions.")
@click.option("--steps", type=click.IntRange(min=0), help="Training steps (trained methods).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for every random choice.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size.")
@click.option("--lambda", "lambda_", type=click.FloatRange(min=0), help="DP-LaSE decorrelation weight.")
@click.option("--zeta", type=click.FloatRange(min=0), help="DP-LaSE orthogonality penalty weight.")
@click.option("--estimator", type=click.Choice(["full", "stochastic"]), help="DP-LaSE loss estimator.")
@click.option("--orthogonal", type=click.Choice(["penalty", "expm"]), help="How Gamma is kept orthogonal.")
@click.option("--subspace", is_flag=True, default=False, help="Also learn channel subspaces (channel masks).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Any field of the method's config, e.g. --param density_mode=pretrain (repeatable).")
@click.option("--device", default="cpu", show_default=True, help="Torch device (cpu, cuda, cuda:1, ...).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=100, show_default=True,
              help="Checkpoint every N steps (0: only on SIGTERM/SIGUSR2).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a tqdm progress bar.")
@click.pass_context
def discover(ctx: click.Context, generator_path: str, method: str, out: Path, seed: int, params: tuple[str, ...],
             device: str, checkpoint_every: int, progress: bool, **options: Any) -> None:
    """Discover K latent directions of a generator with one method and save them as a DirectionSet.

    Trained methods checkpoint to OUT with suffix .ckpt (resumed when the same command is rerun, removed
    after success) and write their loss curves to OUT with suffix .losses.parquet.

    \b
    Example (DP-LaSE, norm-preserving walk, 10 directions, short CPU run):
      dplase discover --generator results/models/shapes-dcgan64.pt --method dplase --walk norm \\
          --layer block1 --k 10 --steps 500 --seed 0 --out results/shapes/dplase/directions.pt
    \b
    Example (learned walk with F pre-trained then frozen; SeFa baseline):
      dplase discover --generator G.pt --method dplase --walk learned --param density_mode=pretrain --out D.pt
      dplase discover --generator G.pt --method sefa --k 10 --out results/shapes/sefa/directions.pt
    """
    from dplase.artifacts import ArtifactError
    from dplase.directions import DirectionSet
    from dplase.jobs import discover_job
    from dplase.methods import make_config
    from dplase.training.loop import NonFiniteLossError

    given = {name for name in OPTION_FIELDS
             if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)}
    try:
        overrides = config_overrides(method, options, params, given)
        make_config(method, **overrides)  # a bad value is a usage error before the generator loads
    except click.UsageError as err:
        ctx.fail(err.message)
    except ValueError as err:
        ctx.fail(str(err))
    try:
        discover_job(method=method, config=overrides, seed=seed, generator=generator_path, out=out,
                     losses=out.with_suffix(".losses.parquet"), labels={"method": method, "seed": seed},
                     device=device, checkpoint_every=checkpoint_every, progress=progress)
    except ArtifactError as err:
        raise InputFileError(str(err)) from None
    except NonFiniteLossError as err:  # a failed run, not bad input: exit code 1
        raise click.ClickException(str(err)) from None
    except ValueError as err:
        ctx.fail(str(err))
    directions = DirectionSet.load(out)
    scores = ", ".join(f"{s:.4g}" for s in directions.scores.tolist())
    click.echo(f"wrote {out}: {directions.k} {method} directions (space {directions.space}, walk "
               f"{directions.walk}, layer {directions.layer}); scores {scores}")


@click.command("traverse")
@click.option("--generator", "generator_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Generator checkpoint.")
@click.option("--directions", "directions_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="DirectionSet from `dplase discover`.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output PNG.")
@click.option("--n-steps", type=click.IntRange(min=2), default=7, show_default=True,
              help="Columns (steps); an even number gets a 0 column added.")
@click.option("--max-eps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Largest |step|; columns span [-max-eps, max-eps]  [default: the prior's T, the step range "
                   "the methods train on and the evaluation grid spans]")
@click.option("--walk", type=click.Choice(list(WALKS)), help="Walk to use (default: the DirectionSet's).")
@click.option("--k", type=click.IntRange(min=1), help="Show only the first K directions (highest scores).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the start latent.")
@click.option("--group", type=click.IntRange(min=0), help="Edit only the channels of this subspace group.")
@click.option("--masked", type=click.IntRange(min=0), metavar="J",
              help="Instead: direction J's traversal unmasked and masked (its channel subspace: --group, or the "
                   "evaluation's rule) side by side, from 3 seeded start latents.")
@click.option("--device", default="cpu", show_default=True, help="Torch device.")
@click.pass_context
def traverse(ctx: click.Context, generator_path: str, directions_path: str, out: Path, n_steps: int,
             max_eps: float | None, walk: str | None, k: int | None, seed: int, group: int | None,
             masked: int | None, device: str) -> None:
    """Draw a traversal grid: one row per direction, one column per step, from one seeded start latent.

    \b
    Example:
      dplase traverse --generator results/models/shapes-dcgan64.pt \\
          --directions results/shapes/dplase/directions.pt --out traversal.png --n-steps 7 --max-eps 3
    """
    from dplase.artifacts import ArtifactError
    from dplase.jobs import plot_traversal_job

    try:
        plot_traversal_job(generator=generator_path, directions=directions_path, out=out, n_steps=n_steps,
                           max_eps=max_eps, walk=walk, k=k, seed=seed, group=group, masked=masked, device=device,
                           warn=lambda message: click.echo(f"warning: {message}", err=True))
    except ArtifactError as err:
        raise InputFileError(str(err)) from None
    except ValueError as err:
        ctx.fail(str(err))
    click.echo(f"wrote {out}")
