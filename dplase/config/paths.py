"""The results path scheme, declared once: every rule, task and job finds its files here."""

from __future__ import annotations

from typing import Any

#: result path templates (relative to the results root); the Snakemake rules and the launcher use the same
PATHS = {
    "generator": "generators/{dataset}/{model}/seed{model_seed}.pt",
    "generator_grid": "generators/{dataset}/{model}/seed{model_seed}.png",
    "generator_losses": "generators/{dataset}/{model}/seed{model_seed}.losses.parquet",
    "predictor": "predictors/{dataset}.pt",
    "directions": "runs/{run_id}/directions.pt",
    "losses": "runs/{run_id}/losses.parquet",
    "run_metrics": "runs/{run_id}/metrics.parquet",
    "traversal": "runs/{run_id}/traversal.png",
    "runs_table": "runs.parquet",
    "metrics": "metrics.parquet",
    "all_losses": "losses.parquet",
    "comparison_md": "comparison.md",
    "comparison": "comparison.csv",
    "comparison_paired": "comparison_paired.csv",
    "comparison_html": "comparison.html",
    "figure": "figures/{figure}.{ext}",
    "explorer": "explorer/index.html",
}


def result_path(root: str, name: str, **fields: Any) -> str:
    """The path ``name`` (a key of `PATHS`) under ``root`` with its wildcards filled."""
    return f"{root}/{PATHS[name].format(**fields)}"


def template(root: str, name: str) -> str:
    """The path ``name`` under ``root`` with its wildcards left in (a Snakemake rule's input/output)."""
    return f"{root}/{PATHS[name]}"
