"""`dplase plot`: redraw the study's figures from the collected Parquet tables (no model needed)."""

from __future__ import annotations

from pathlib import Path

import click

FIGURE_NAMES = ("fid_vs_step", "density_vs_step", "attribute_change", "ablation", "loss_curves")


@click.command("plot")
@click.argument("figures", nargs=-1, type=click.Choice([*FIGURE_NAMES, "all"]))
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
def plot(ctx: click.Context, figures: tuple[str, ...], metrics_path: Path, losses_path: Path, out_dir: Path,
         dpi: int, ablation_metrics: tuple[str, ...]) -> None:
    """Draw figures (PNG and PDF) from results/metrics.parquet and results/losses.parquet alone.

    FIGURES: fid_vs_step, density_vs_step, attribute_change, ablation, loss_curves, or all (the default).
    Traversal grids need the generator: use `dplase traverse`.

    \b
    Example (all figures of the default study):
      dplase plot all --metrics results/metrics.parquet --out-dir results/figures
    \b
    One figure at a higher resolution:
      dplase plot fid_vs_step --dpi 200
    """
    from dplase.plots.figures import FIGURES, draw_figure
    from dplase.results import ResultsSchemaError

    names = FIGURE_NAMES if not figures or "all" in figures else tuple(dict.fromkeys(figures))
    for name in names:
        table = losses_path if FIGURES[name][1] == "losses" else metrics_path
        if not table.is_file():
            option = "--losses" if FIGURES[name][1] == "losses" else "--metrics"
            ctx.fail(f"{table} does not exist (figure {name} reads it; set {option})")
        try:
            png = draw_figure(name, table, out_dir / f"{name}.png", out_dir / f"{name}.pdf", dpi=dpi,
                              ablation_metrics=list(ablation_metrics) or None)
        except ResultsSchemaError as err:
            ctx.fail(str(err))
        click.echo(f"wrote {png} and {png.with_suffix('.pdf')}")
