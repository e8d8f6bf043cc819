"""`dplase compare`: per-variant means with CIs over replicates and paired differences against a reference."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("compare")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("results/metrics.parquet"), show_default=True, help="Collected results table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results"),
              show_default=True, help="Folder for comparison.csv, comparison_paired.csv and comparison.md.")
@click.option("--reference", default="dplase (norm)", show_default=True,
              help="Variant every other one is compared with (paired by model_seed and seed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.pass_context
def compare(ctx: click.Context, metrics_path: Path, out_dir: Path, reference: str, seed: int) -> None:
    """Compare methods: means with 95% t-intervals over replicates, and paired differences against
    --reference (bootstrap CI, paired t-test, Holm-adjusted p per dataset and model).

    \b
    Example:
      dplase compare --metrics results/metrics.parquet --out results/ --reference "dplase (norm)"
    """
    from dplase.compare import UnknownReferenceError, write_comparison
    from dplase.results import ResultsSchemaError

    try:
        paths = write_comparison(metrics_path, out_dir, reference=reference, seed=seed)
    except (ResultsSchemaError, UnknownReferenceError) as err:
        # one line and exit code 2 (a usage error), without click's usage banner or a traceback
        click.echo(f"Error: {err}", err=True)
        ctx.exit(2)
    click.echo(f"wrote {', '.join(map(str, paths))}")
