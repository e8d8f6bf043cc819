"""The sweep as tasks: the same job functions, keyword arguments and output paths as the Snakemake rules.

A `Task` is plain data (a "module:function" name, JSON-able keyword arguments, its input and output paths and
the resources of its rule), so it pickles without code and runs the same way in a SLURM job, a local
subprocess or in-process. Tasks are named after the rules they stand for (train_gan, discover_directions, ...)
so both routes' jobs carry the same names in sacct.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dplase.config import Sweep
from dplase.stages import STAGES, collection_stages, job_arguments, resources, waves

#: the waves the launcher submits in order (from the stage table: each needs only earlier waves' outputs)
WAVES: tuple[tuple[str, ...], ...] = tuple(waves())
#: the stages the launcher submits (its --stage choices)
LAUNCH_STAGES = tuple(stage for wave in WAVES for stage in wave)


@dataclass(frozen=True)
class Task:
    """One job: ``function(**kwargs)`` run in ``workdir``, writing ``outputs`` from ``inputs``."""

    stage: str
    key: str  # what the task is about: a run id, or "dataset/model/seedS", or a dataset
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


def _task(sweep: Sweep, stage: str, key, workdir: str) -> Task:
    """The task of one job of ``stage``: the same function, arguments and files as the stage's rule."""
    inputs = sweep.job_inputs(stage, key)
    outputs = sweep.job_outputs(stage, key)
    kwargs = job_arguments(stage, {**inputs, **outputs}, sweep.job_kwargs(stage, key))
    res = resources(stage, sweep.config)
    flat_inputs = tuple(p for v in inputs.values() for p in ([v] if isinstance(v, str) else v))
    name = key if isinstance(key, str) else f"{key[1]}/{key[0]}/seed{key[2]}" if key else stage
    return Task(stage, name, STAGES[stage].target, kwargs, flat_inputs, tuple(outputs.values()), workdir,
                threads=res["threads"], mem_mb=res["mem_mb"], runtime_min=res["runtime"], gpu=STAGES[stage]["gpu"])


def plan_tasks(sweep: Sweep, stages: Sequence[str] = LAUNCH_STAGES,
               workdir: str | os.PathLike | None = None) -> list[Task]:
    """Every task of ``stages`` for the sweep, in wave order (done or not; see `Task.done`)."""
    unknown = sorted(set(stages) - set(LAUNCH_STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(LAUNCH_STAGES)}")
    workdir = str(Path(workdir or os.getcwd()).resolve())
    return [_task(sweep, stage, key, workdir) for stage in LAUNCH_STAGES if stage in stages
            for key in sweep.job_keys(stage)]


def collect_tasks(sweep: Sweep, workdir: str | os.PathLike | None = None) -> list[Task]:
    """The light tasks run on the submitting node at the end (the workflow's local collection rules): runs
    table, metrics and loss tables, with the same inputs as those rules."""
    workdir = str(Path(workdir or os.getcwd()).resolve())
    return [_task(sweep, stage, None, workdir) for stage in collection_stages()]
