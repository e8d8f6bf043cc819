"""The stage table: every job of the study, read by both launch routes (the Snakemake rules in
workflow/rules/*.smk and `dplase sweep`'s submitit plan in `dplase.launch.plan`).

A stage names its job function (`dplase.jobs`), what one job is about (``per``: a trained generator, a dataset,
a run, or the whole study), its inputs and outputs as keys of the path scheme (`dplase.config.paths.PATHS`,
``input/output name -> path key``; an input whose path has a wildcard the stage does not have is every such
file of the study), and its resources. ``gpu`` stages ask for the configured GPUs, memory (``mem_mb`` times
the attempt) and time; the others declare their own. ``local`` stages are light: Snakemake runs them on the
submitting node, the launcher after its waves, in this process. Each job's own arguments come from
`dplase.config.Sweep.job_kwargs` in the job function's own names.

Adding a stage is one job function plus one entry here (and, for Snakemake, a rule that reads the entry).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dplase.registry import Registry

#: what one job of a stage is about -> the wildcards its paths use
PER = {"generator": ("model", "dataset", "model_seed"), "dataset": ("dataset",), "run": ("run_id",), "study": ()}

STAGES = Registry("stage", {
    "train_gan": ("dplase.jobs:generator_job", {
        "per": "generator", "inputs": {}, "outputs": {"out": "generator"},
        "side_outputs": {"grid": "generator_grid", "losses": "generator_losses"},
        "threads": 2, "gpu": True, "local": False}),
    "train_factor_predictor": ("dplase.jobs:train_predictor_job", {
        "per": "dataset", "inputs": {}, "outputs": {"out": "predictor"},
        "threads": 1, "gpu": False, "mem_mb": 2000, "runtime": 60, "local": False}),
    "discover_directions": ("dplase.jobs:discover_job", {
        "per": "run", "inputs": {"generator": "generator"}, "outputs": {"out": "directions", "losses": "losses"},
        "threads": 1, "gpu": True, "local": False}),
    "evaluate_walks": ("dplase.jobs:evaluate_job", {
        "per": "run", "inputs": {"generator": "generator", "directions": "directions", "predictor": "predictor"},
        "outputs": {"out": "run_metrics"}, "threads": 1, "gpu": True, "local": False}),
    "plot_traversals": ("dplase.jobs:plot_traversal_job", {
        "per": "run", "inputs": {"generator": "generator", "directions": "directions"},
        "outputs": {"out": "traversal"}, "threads": 1, "gpu": False, "mem_mb": 1000, "runtime": 10,
        "local": True}),
    "write_runs_table": ("dplase.jobs:write_runs_table_job", {
        "per": "study", "inputs": {}, "outputs": {"out": "runs_table"},
        "threads": 1, "gpu": False, "mem_mb": 1000, "runtime": 10, "local": True}),
    "collect_metrics": ("dplase.jobs:collect_metrics_job", {
        "per": "study", "inputs": {"inputs": "run_metrics", "runs": "runs_table"}, "outputs": {"out": "metrics"},
        "threads": 1, "gpu": False, "mem_mb": 4000, "runtime": 30, "local": True}),
    "collect_losses": ("dplase.jobs:collect_losses_job", {
        "per": "study", "inputs": {"run_losses": "losses", "generator_losses": "generator_losses"},
        "outputs": {"out": "all_losses"}, "threads": 1, "gpu": False, "mem_mb": 4000, "runtime": 30,
        "local": True}),
    "compare_methods": ("dplase.jobs:compare_job", {
        "per": "study", "inputs": {"metrics": "metrics"}, "outputs": {"out": "comparison_md"},
        "side_outputs": {"table": "comparison", "paired": "comparison_paired", "html": "comparison_html"},
        "threads": 1, "gpu": False, "mem_mb": 2000, "runtime": 10, "local": True}),
    "explore_walks": ("dplase.jobs:explore_job", {
        "per": "study", "inputs": {"metrics": "metrics", "directions": "directions", "generators": "generator"},
        "outputs": {"out": "explorer"}, "threads": 1, "gpu": False, "mem_mb": 4000, "runtime": 30, "local": True}),
})
#: inputs that order a stage after another without being an argument of its job
ORDER_ONLY_INPUTS = {"collect_metrics": ("runs",), "explore_walks": ("directions", "generators")}


def resources(stage: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """threads, mem_mb, runtime (minutes) and gpu count of one job of ``stage`` (first attempt)."""
    info = STAGES[stage]
    if info["gpu"]:
        return {"threads": info["threads"], "mem_mb": int(config["mem_mb"]), "runtime": int(config["runtime"]),
                "gpu": int(config["gpu_per_job"])}
    return {"threads": info["threads"], "mem_mb": info["mem_mb"], "runtime": info["runtime"], "gpu": 0}


def waves(stages: tuple[str, ...] | None = None) -> list[tuple[str, ...]]:
    """The non-local stages in dependency order: each wave needs only outputs of earlier waves."""
    wanted = [s for s in (stages or tuple(STAGES)) if not STAGES[s]["local"]]
    producer = {key: name for name in STAGES for key in STAGES[name]["outputs"].values()}
    level: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in level:
            parents = [producer[k] for k in STAGES[name]["inputs"].values() if k in producer]
            level[name] = 1 + max((depth(p) for p in parents), default=-1)
        return level[name]

    by_level: dict[int, list[str]] = {}
    for name in wanted:
        by_level.setdefault(depth(name), []).append(name)
    return [tuple(by_level[i]) for i in sorted(by_level)]


def collection_stages() -> tuple[str, ...]:
    """The light whole-study stages (runs table, collected metrics and losses), in table order; the launcher
    runs them after its waves (traversal grids and figures are drawn by the Snakemake route)."""
    return STAGES.where(local=True, per="study")


def job_arguments(stage: str, files: Mapping[str, Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of one job: its input and output files by name (side outputs and order-only
    inputs, which the job finds by itself or does not read, left out) plus its own ``kwargs``."""
    info = STAGES[stage]
    skip = set(info.get("side_outputs", {})) | set(ORDER_ONLY_INPUTS.get(stage, ()))
    names = [n for n in (*info["inputs"], *info["outputs"]) if n not in skip]
    return {**{n: files[n] for n in names}, **kwargs}


def run_job(stage: str, files: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Any:
    """Run one job of ``stage`` in this process (what a Snakemake rule's script and a launcher task do)."""
    return STAGES.load(stage)(**job_arguments(stage, files, kwargs))
