"""Launch the sweep through submitit (SLURM job arrays, local processes or in-process), pre-emption safe.

The Snakemake route (`snakemake --profile slurm`) and this one run the same job functions (dplase.jobs) with
the same arguments (dplase.config.Sweep, from the stage table dplase.stages.STAGES) and write the same
files, so they are interchangeable.
"""

from dplase.launch.plan import LAUNCH_STAGES, WAVES, Task, collect_tasks, plan_tasks
from dplase.launch.runner import (
    CLUSTERS,
    LaunchReport,
    SlurmOptions,
    TaskJob,
    TaskOutcome,
    launch,
    load_sweep,
    profile_defaults,
    run_task,
    slurm_options_from,
)

__all__ = [
    "CLUSTERS", "LAUNCH_STAGES", "WAVES", "LaunchReport", "SlurmOptions", "Task", "TaskJob", "TaskOutcome",
    "collect_tasks", "launch", "load_sweep", "plan_tasks", "profile_defaults", "run_task", "slurm_options_from",
]
