"""Plot rules: draw one figure from a collected Parquet table (dplase.plots.figures.draw_figure)."""

from dplase.jobs import job_log
from dplase.plots.figures import draw_figure

with job_log(snakemake.log[0]):
    draw_figure(
        snakemake.params.figure,
        snakemake.input.table,
        png=snakemake.output.png,
        pdf=snakemake.output.pdf,
        **snakemake.params.options,
    )
