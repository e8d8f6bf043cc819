"""Figures: the figure registry (`FIGURES`), image grids (samples, traversals) and the metric plots.

`FIGURES` is the one list of figure names: the CLI's choices (`dplase plot`), the Snakemake rule
``plot_figure`` (its ``{figure}`` wildcard, input table, report caption and category) and the workflow's
default targets all read it. This module stays import-light (no torch, matplotlib, seaborn or pandas) because
Snakemake imports it whenever it parses the workflow; the drawing functions live in `dplase.plots.figures`
and the grids in `dplase.plots.grids`, both imported on first use.

Info of each entry:
  ``table``     the collected table the figure reads: "metrics" (results/metrics.parquet) or "losses"
                (results/losses.parquet)
  ``caption``   its caption in the HTML report, a file in workflow/report/
  ``category``  its section of the HTML report
  ``uses_ablation_metrics``  the drawing function takes the metric names (figure option ``ablation_metrics``)
"""

from __future__ import annotations

from typing import Any

from dplase.registry import Registry

#: figure name -> drawing function (metrics or loss frame -> matplotlib Figure) and how the workflow uses it
FIGURES = Registry("figure", {
    "fid_vs_step": ("dplase.plots.figures:fid_vs_step",
                    {"table": "metrics", "caption": "fid_vs_step.rst", "category": "3. Realism along walks"}),
    "density_vs_step": ("dplase.plots.figures:density_vs_step",
                        {"table": "metrics", "caption": "density_vs_step.rst", "category": "4. Density along walks"}),
    "attribute_change": ("dplase.plots.figures:attribute_change",
                         {"table": "metrics", "caption": "attribute_change.rst", "category": "5. Attribute change"}),
    "ablation": ("dplase.plots.figures:ablation",
                 {"table": "metrics", "caption": "ablation.rst", "category": "6. Density ablation",
                  "uses_ablation_metrics": True}),
    "loss_curves": ("dplase.plots.figures:loss_curves",
                    {"table": "losses", "caption": "loss_curves.rst", "category": "7. Training curves"}),
    "recovery": ("dplase.plots.recovery:recovery",
                 {"table": "metrics", "caption": "recovery.rst", "category": "0. Planted ground truth"}),
})
#: the tables figures read (the ``table`` info of `FIGURES`)
TABLES = ("metrics", "losses")

__all__ = ["FIGURES", "TABLES", "grid_array", "save_image_grid"]


def __getattr__(name: str) -> Any:
    """`grid_array` and `save_image_grid` from `dplase.plots.grids`, imported (with torch) on first use."""
    if name in ("grid_array", "save_image_grid"):
        import importlib

        return getattr(importlib.import_module("dplase.plots.grids"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
