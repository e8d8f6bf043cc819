"""The sweep as tasks: the same job functions, keyword arguments and output paths as the Snakemake rules.

A `Task` is plain data (a "module:function" name, JSON-able keyword arguments, its input and output paths and
the resources of its rule), so it pickles without code and runs the same way in a SLURM job, a local
subprocess or in-process. Tasks are named after the rules they stand for (train_gan, discover_directions, ...)
so both routes' jobs carry the same names in sacct.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dplase.sweep import Sweep

#: the waves the launcher submits in order; each wave's tasks depend only on earlier waves' outputs
WAVES: tuple[tuple[str, ...], ...] = (
    ("train_gan", "train_factor_predictor"),
    ("discover_directions",),
    ("evaluate_walks",),
)
STAGES = tuple(stage for wave in WAVES for stage in wave)
#: stages that run on a GPU when the cluster has one (the Snakemake profile asks gpu=1 for the same rules)
GPU_STAGES = frozenset({"train_gan", "discover_directions", "evaluate_walks"})


@dataclass(frozen=True)
class Task:
    """One job: ``function(**kwargs)`` run in ``workdir``, writing ``outputs`` from ``inputs``."""

    stage: str
    key: str  # what the task is about: a run id, or "dataset/model", or a dataset
    function: str  # "module:function"
    kwargs: dict[str, Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    workdir: str
    threads: int = 1
    mem_mb: int = 2000
    runtime_min: int = 60
    gpu: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.stage}[{self.key}]"

    def path(self, relative: str) -> Path:
        """A task path as seen from the launcher (paths are relative to ``workdir``, as in the Snakefile)."""
        return Path(self.workdir) / relative

    def done(self) -> bool:
        """All outputs exist (what a rerun skips)."""
        return all(self.path(p).exists() for p in self.outputs)

    def missing_inputs(self) -> list[str]:
        return [p for p in self.inputs if not self.path(p).exists()]


def _resources(config: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """Threads, memory and time of a stage: the values its rule declares in workflow/rules/*.smk."""
    if stage in GPU_STAGES:
        return {"threads": 2 if stage == "train_gan" else 1, "mem_mb": int(config.get("mem_mb", 4000)),
                "runtime_min": int(config.get("runtime", 60)), "gpu": True}
    return {"threads": 1, "mem_mb": 2000, "runtime_min": 60, "gpu": False}


def plan_tasks(sweep: Sweep, stages: Sequence[str] = STAGES, workdir: str | os.PathLike | None = None) -> list[Task]:
    """Every task of ``stages`` for the sweep, in wave order (done or not; see `Task.done`)."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    workdir = str(Path(workdir or os.getcwd()).resolve())
    config = sweep.config
    tasks: list[Task] = []
    if "train_gan" in stages:
        for model, dataset in sweep.trained_generators():
            out = sweep.path("generator", model=model, dataset=dataset)
            tasks.append(Task(
                "train_gan", f"{dataset}/{model}", "dplase.jobs:train_gan_job",
                {**sweep.gan_params(model, dataset), "out": out}, (),
                (out, sweep.path("generator_grid", model=model, dataset=dataset),
                 sweep.path("generator_losses", model=model, dataset=dataset)),
                workdir, **_resources(config, "train_gan")))
    if "train_factor_predictor" in stages:
        for dataset in sweep.datasets():
            out = sweep.path("predictor", dataset=dataset)
            tasks.append(Task(
                "train_factor_predictor", dataset, "dplase.jobs:train_predictor_job",
                {**sweep.predictor_params(dataset), "out": out}, (), (out,),
                workdir, **_resources(config, "train_factor_predictor")))
    run_paths = {run.run_id: sweep.run_paths(run) for run in sweep.runs}
    if "discover_directions" in stages:
        for run_id, paths in run_paths.items():
            tasks.append(Task(
                "discover_directions", run_id, "dplase.jobs:discover_job",
                {**sweep.discover_params(run_id), "generator": paths["generator"], "out": paths["directions"],
                 "losses": paths["losses"]},
                (paths["generator"],), (paths["directions"], paths["losses"]),
                workdir, **_resources(config, "discover_directions")))
    if "evaluate_walks" in stages:
        for run_id, paths in run_paths.items():
            tasks.append(Task(
                "evaluate_walks", run_id, "dplase.jobs:evaluate_job",
                {**sweep.evaluate_params(run_id), "generator": paths["generator"],
                 "directions": paths["directions"], "predictor": paths["predictor"], "out": paths["run_metrics"]},
                (paths["generator"], paths["directions"], paths["predictor"]), (paths["run_metrics"],),
                workdir, **_resources(config, "evaluate_walks")))
    return tasks


def collect_tasks(sweep: Sweep, workdir: str | os.PathLike | None = None) -> list[Task]:
    """The light tasks run on the submitting node at the end (the workflow's localrules): runs table, metrics
    and loss tables, with the same inputs as the rules write_runs_table, collect_metrics and collect_losses."""
    workdir = str(Path(workdir or os.getcwd()).resolve())
    runs = sweep.runs
    metrics = tuple(sweep.path("run_metrics", run_id=r.run_id) for r in runs)
    run_losses = tuple(sweep.path("losses", run_id=r.run_id) for r in runs)
    gan_losses = tuple(sweep.path("generator_losses", model=m, dataset=d) for m, d in sweep.trained_generators())
    labels = [{"model": m, "dataset": d, "run_id": None, "seed": None} for m, d in sweep.trained_generators()]
    return [
        Task("write_runs_table", "runs", "dplase.jobs:write_runs_table_job",
             {"runs": [r.to_dict() for r in runs], "out": sweep.path("runs_table")}, (),
             (sweep.path("runs_table"),), workdir),
        Task("collect_metrics", "metrics", "dplase.jobs:collect_metrics_job",
             {"inputs": list(metrics), "out": sweep.path("metrics")}, (*metrics, sweep.path("runs_table")),
             (sweep.path("metrics"),), workdir),
        Task("collect_losses", "losses", "dplase.jobs:collect_losses_job",
             {"run_losses": list(run_losses), "generator_losses": list(gan_losses), "generator_labels": labels,
              "out": sweep.path("all_losses")}, (*run_losses, *gan_losses), (sweep.path("all_losses"),), workdir),
    ]
