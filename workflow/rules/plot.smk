# Figures, drawn from the collected Parquet files alone (so they can be redrawn without recomputing). One rule
# over every figure of the registry dplase.plots.FIGURES: the table it reads, its report caption and category.

from pathlib import Path

from dplase.plots import FIGURES

#: table of the registry ("table" of a figure) -> the collected Parquet file (collect_metrics, collect_losses)
FIGURE_TABLES = {"metrics": SWEEP.path("metrics"), "losses": SWEEP.path("all_losses")}
#: figure -> its caption text (workflow/report/<caption>); report() takes one caption file per rule, so
#: ../report/figure.rst inserts the figure's own caption from the job's params
FIGURE_CAPTIONS = {
    name: Path(workflow.source_path(f"../report/{entry['caption']}")).read_text()
    for name, entry in FIGURES.items()
}


rule plot_figure:
    input:
        table=lambda wildcards: FIGURE_TABLES[FIGURES[wildcards.figure]["table"]],
    output:
        png=report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category=lambda wildcards: FIGURES[wildcards.figure]["category"],
        ),
        pdf="results/figures/{figure}.pdf",
    log:
        "results/logs/plot_figure/{figure}.log",
    benchmark:
        "results/benchmarks/plot_figure/{figure}.tsv"
    wildcard_constraints:
        figure="|".join(FIGURES),
    localrule: True
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="{figure}",
        options=lambda wildcards: SWEEP.figure_options(),
        caption=lambda wildcards: FIGURE_CAPTIONS[wildcards.figure],
    script:
        "../scripts/plot_figure.py"
