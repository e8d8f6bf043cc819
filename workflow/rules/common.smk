# Config validation, the sweep's runs, wildcard constraints and the input functions every rule uses. The logic
# lives in dplase.config and dplase.stages (tested there); this file only connects it to the rules: each rule is
# one stage of dplase.stages.STAGES, and reads its inputs, outputs, resources and job arguments from there.

from snakemake.utils import validate

from dplase import config as dplase_config
from dplase.config.paths import template
from dplase.plots import FIGURES
from dplase.stages import STAGES, resources

# dplase's own validation first: its errors name the offending key; then Snakemake's (fills the same defaults)
dplase_config.validate_config(config)


validate(config, "../schemas/config.schema.yaml")


# semantic checks (unknown model/method/metric, K > z_dim, missing files) and the run list, before any job
SWEEP = dplase_config.prepare(config)


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    model="[A-Za-z0-9_]+",
    model_seed="[0-9]+",
    run_id="[a-z0-9]+-[0-9a-f]{10}",


def job_key(stage, wildcards):
    """What the job of ``stage`` that the wildcards name is about (see dplase.config.study.JobKey)."""
    per = STAGES[stage]["per"]
    if per == "generator":
        return (wildcards.model, wildcards.dataset, int(wildcards.model_seed))
    if per == "dataset":
        return wildcards.dataset
    if per == "run":
        return wildcards.run_id
    return None


def stage_output(stage, name):
    """The output ``name`` of a stage as a path template (its wildcards left in)."""
    info = STAGES[stage]
    return template(
        SWEEP.root, {**info["outputs"], **info.get("side_outputs", {})}[name]
    )


def stage_inputs(stage):
    """Input function: the stage's input files of the job the wildcards name (use with unpack())."""

    def inputs(wildcards):
        return SWEEP.job_inputs(stage, job_key(stage, wildcards))

    return inputs


def stage_params(stage):
    """Params function: the job's own arguments (dplase.config.Sweep.job_kwargs)."""
    return lambda wildcards: SWEEP.job_kwargs(stage, job_key(stage, wildcards))


def stage_resources(stage):
    """The stage's resources; a GPU stage's memory grows with each retry."""
    first = resources(stage, config)
    out = {"mem_mb": first["mem_mb"], "runtime": first["runtime"]}
    if STAGES[stage]["gpu"]:
        out["mem_mb"] = lambda wildcards, attempt: first["mem_mb"] * attempt
        out["gpu"] = first["gpu"]
    return out


def run_of(wildcards):
    return SWEEP.run(wildcards.run_id)


def final_targets(wildcards):
    """Everything `snakemake` builds by default: tables, figures, traversal grids, GAN sample grids."""
    targets = [
        SWEEP.path(name)
        for name in ("runs_table", "metrics", "all_losses", "comparison_md")
    ]
    targets += [
        SWEEP.path("figure", figure=name, ext=ext)
        for name in FIGURES
        for ext in ("png", "pdf")
    ]
    targets += [
        SWEEP.path("traversal", run_id=key) for key in SWEEP.job_keys("plot_traversals")
    ]
    targets += [
        SWEEP.path("generator_grid", model=m, dataset=d, model_seed=s)
        for m, d, s in SWEEP.job_keys("train_gan")
    ]
    return targets
