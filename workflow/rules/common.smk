# Config validation, the sweep's runs, wildcard constraints and input functions. The logic lives in
# dplase.sweep (tested there); this file only connects it to the rules.

import shutil
import sys
from pathlib import Path

from snakemake.utils import validate

from dplase import sweep as dplase_sweep

# dplase's own validation first: its errors name the offending key; then Snakemake's (fills the same defaults)
dplase_sweep.validate_config(config)


validate(config, "../schemas/config.schema.yaml")


# semantic checks (unknown model/method/metric, K > z_dim, missing files) and the run list, before any job
SWEEP = dplase_sweep.prepare(config)


# the `dplase` command of the environment Snakemake runs in (also when that environment is not activated)
DPLASE = next(
    (str(p) for p in [Path(sys.executable).parent / "dplase"] if p.is_file()),
    shutil.which("dplase") or "dplase",
)


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    model="[A-Za-z0-9_]+",
    run_id="[a-z0-9]+-[0-9a-f]{10}",


def gpu_resources():
    """Resources of the GPU-heavy rules; memory grows with each retry."""
    return {
        "mem_mb": lambda wildcards, attempt: config["mem_mb"] * attempt,
        "runtime": config["runtime"],
        "gpu": config["gpu_per_job"],
    }


def run_of(wildcards):
    return SWEEP.run(wildcards.run_id)


def generator_of(wildcards):
    """The generator a run uses (trained by train_gan, or a pretrained checkpoint)."""
    run = run_of(wildcards)
    return SWEEP.generator_path(run.model, run.dataset)


def predictor_of(wildcards):
    return SWEEP.path("predictor", dataset=run_of(wildcards).dataset)


def all_run_files(name):
    """Input function: the file ``name`` (a dplase.sweep.PATHS key) of every run."""

    def files(wildcards):
        return [SWEEP.path(name, run_id=run.run_id) for run in SWEEP.runs]

    return files


def generator_loss_files(wildcards):
    return [
        SWEEP.path("generator_losses", model=m, dataset=d)
        for m, d in SWEEP.trained_generators()
    ]


def final_targets(wildcards):
    """Everything `snakemake` builds by default: tables, figures, traversal grids, GAN sample grids."""
    targets = [
        SWEEP.path("runs_table"),
        SWEEP.path("metrics"),
        SWEEP.path("all_losses"),
    ]
    targets += [
        f"results/figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")
    ]
    targets += [
        SWEEP.path("traversal", run_id=r.run_id) for r in SWEEP.traversal_runs()
    ]
    targets += [
        SWEEP.path("generator_grid", model=m, dataset=d)
        for m, d in SWEEP.trained_generators()
    ]
    return targets


#: figure name -> what it shows (every one is drawn from results/metrics.parquet or results/losses.parquet)
FIGURES = (
    "fid_vs_step",
    "density_vs_step",
    "attribute_change",
    "ablation",
    "loss_curves",
)
