"""`dplase explore`: the walk explorer page of a finished study (what the workflow's explore_walks rule writes)."""

from __future__ import annotations

from pathlib import Path

import click

from dplase.cli.options import InputFileError, parse_key_values


def _seeds(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """"0,1" -> [0, 1]; None stays None (every seed)."""
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got '{value}'", ctx=ctx, param=param) from None


def study_runs(metrics_path: Path, results: Path, run_ids: tuple[str, ...], checkpoints: dict[str, str],
               model_seeds: list[int] | None, seeds: list[int] | None) -> list[dict[str, str]]:
    """The runs of a results table (in its order), each with its directions and generator file by the
    workflow's path scheme under ``results`` (a model's pretrained checkpoint from ``checkpoints``)."""
    from dplase.config.paths import result_path
    from dplase.results import read_results

    frame = read_results(metrics_path).drop_duplicates("run_id")
    if run_ids:
        unknown = sorted(set(run_ids) - set(frame["run_id"]))
        if unknown:
            raise InputFileError(f"{metrics_path}: no rows for run(s) {', '.join(unknown)}")
        frame = frame[frame["run_id"].isin(run_ids)]
    if model_seeds is not None:
        frame = frame[frame["model_seed"].isin(model_seeds)]
    if seeds is not None:
        frame = frame[frame["seed"].isin(seeds)]
    runs = []
    for row in frame.itertuples(index=False):
        generator = checkpoints.get(row.model) or result_path(str(results), "generator", dataset=row.dataset,
                                                              model=row.model, model_seed=int(row.model_seed))
        directions = result_path(str(results), "directions", run_id=row.run_id)
        for path in (generator, directions):
            if not Path(path).is_file():
                raise InputFileError(f"run {row.run_id}: {path} does not exist (pass --results, or --checkpoint "
                                     "MODEL=PATH for a pretrained generator)")
        runs.append({"run_id": row.run_id, "generator": generator, "directions": directions})
    if not runs:
        raise InputFileError(f"{metrics_path}: no runs left to show")
    return runs


@click.command("explore")
@click.option("--metrics", "metrics_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path("results/metrics.parquet"), show_default=True, help="Collected results table.")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder holding runs/ and generators/ (default: the folder of --metrics).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The page (default: RESULTS/explorer/index.html).")
@click.option("--run", "run_ids", multiple=True, help="Show only this run id (repeatable; default: every run).")
@click.option("--checkpoint", "checkpoints", multiple=True, callback=parse_key_values, metavar="MODEL=PATH",
              help="The generator file of a model with a pretrained checkpoint (repeatable).")
@click.option("--model-seeds", callback=_seeds, default=None, help="Only runs on these generator seeds, e.g. 0,1.")
@click.option("--seeds", callback=_seeds, default=None, help="Only runs with these seeds.")
@click.option("--n-starts", type=click.IntRange(min=1), default=4, show_default=True,
              help="Start samples per direction (the first of the evaluation's, at most all of them).")
@click.option("--image-size", type=click.IntRange(min=8), default=64, show_default=True,
              help="Largest frame side in pixels (larger images are downscaled by area averaging).")
@click.option("--device", default="cpu", show_default=True, help="torch device that renders the frames.")
def explore(metrics_path: Path, results: Path | None, out: Path | None, run_ids: tuple[str, ...],
            checkpoints: dict[str, str], model_seeds: list[int] | None, seeds: list[int] | None, n_starts: int,
            image_size: int, device: str) -> None:
    """Write the walk explorer: one self-contained HTML page (no server, no network) with a slider per
    direction over the evaluation's step grid, two runs side by side on the same start latents, and each
    direction's top factors (and matched planted factor). Frames are rendered from the evaluation's own
    seeded start latents.

    \b
    Example:
      dplase explore --metrics results/metrics.parquet --n-starts 4
      dplase explore --metrics results/metrics.parquet --run sefa-0123456789 --run dplase-9876543210
    """
    from dplase.explorer import write_explorer

    results = results or metrics_path.parent
    out = out or results / "explorer" / "index.html"
    runs = study_runs(metrics_path, results, run_ids, checkpoints, model_seeds, seeds)
    path = write_explorer(metrics_path, runs, out, n_starts=n_starts, image_size=image_size, device=device)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {len(runs)} runs)")
