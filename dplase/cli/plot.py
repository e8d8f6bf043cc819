"""`dplase plot`: redraw the study's figures from the collected Parquet tables (no model needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from dplase.plots import FIGURES

#: table a figure reads (its ``table`` in FIGURES) -> the option giving that table's path
TABLE_OPTIONS = {"metrics": "--metrics", "losses": "--losses"}


def _list_figures(function: Callable[..., None]) -> Callable[..., None]:
    """Name the registered figures in the command's help (the docstring's ``{figures}``)."""
    function.__doc__ = function.__doc__.replace("{figures}", ", ".join(FIGURES))
    return function


@click.command("plot")
@click.argument("figures", nargs=-1, type=click.Choice([*FIGURES, "all"]))
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("results/metrics.parquet"), show_default=True, help="Collected results table.")
@click.option("--losses", "losses_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("results/losses.parquet"), show_default=True, help="Collected loss-curve table.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results/figures"),
              show_default=True, help="Folder for NAME.png and NAME.pdf.")
@click.option("--dpi", type=click.IntRange(min=50), default=120, show_default=True, help="PNG resolution.")
@click.option("--ablation-metric", "ablation_metrics", multiple=True,
              help="Metric of the ablation figure (repeatable) [default: fid, abs_logp_drift, outside_share, "
                   "attr_top_share, mig, rca].")
@click.pass_context
@_list_figures
def plot(ctx: click.Context, figures: tuple[str, ...], metrics_path: Path, losses_path: Path, out_dir: Path,
         dpi: int, ablation_metrics: tuple[str, ...]) -> None:
    """Draw figures (PNG and PDF) from results/metrics.parquet and results/losses.parquet alone.

    FIGURES: {figures}, or all (the default).
    Traversal grids need the generator: use `dplase traverse`.

    \b
    Example (all figures of the default study):
      dplase plot all --metrics results/metrics.parquet --out-dir results/figures
    \b
    One figure at a higher resolution:
      dplase plot fid_vs_step --dpi 200
    """
    from dplase.plots.figures import draw_figure
    from dplase.results import ResultsSchemaError

    tables = {"metrics": metrics_path, "losses": losses_path}
    names = FIGURES.names if not figures or "all" in figures else tuple(dict.fromkeys(figures))
    for name in names:
        kind = FIGURES[name]["table"]
        table = tables[kind]
        if not table.is_file():
            ctx.fail(f"{table} does not exist (figure {name} reads it; set {TABLE_OPTIONS[kind]})")
        try:
            png = draw_figure(name, table, out_dir / f"{name}.png", out_dir / f"{name}.pdf", dpi=dpi,
                              ablation_metrics=list(ablation_metrics) or None)
        except ResultsSchemaError as err:
            ctx.fail(str(err))
        click.echo(f"wrote {png} and {png.with_suffix('.pdf')}")
