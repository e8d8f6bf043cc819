"""Run the sweep's tasks through submitit: one job array per stage, on SLURM, local subprocesses or in-process.

Pre-emption design (why it is safe): every trainer runs inside `dplase.training.loop.run_loop`, which, while it
trains, owns SIGTERM and SIGUSR2: on either it finishes the current step, writes its checkpoint
(``DIR/directions.ckpt`` for discovery) and raises `Preempted`. submitit's own SIGUSR2 handler (checkpoint the
callable, ``scontrol requeue``, exit) is shadowed meanwhile and comes back when the loop exits. So `TaskJob`
catches `Preempted`:

- after SIGUSR2 (submitit's pre-timeout signal, ``slurm_signal_delay_s`` before the time limit) it re-raises
  SIGUSR2 to itself, now reaching submitit's handler, which calls `TaskJob.checkpoint` (resubmit the same
  task) and requeues the job;
- after SIGTERM (SLURM pre-emption with PreemptMode=REQUEUE, ``scontrol requeue``, ``scancel``) it exits with
  143: SLURM itself requeues the job when that was the intent, and never when it was a cancel.

The requeued job calls the same job function again, whose trainer resumes from the checkpoint (run_loop prints
"resumed from checkpoint ... at step N" to the job's log). A signal outside training reaches submitit's handler
directly; the task then reruns from its last periodic checkpoint (``checkpoint_every``) or from scratch.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from dplase.config import Sweep, load_config, prepare
from dplase.launch.plan import LAUNCH_STAGES, WAVES, Task, collect_tasks, plan_tasks

log = logging.getLogger(__name__)

CLUSTERS = ("slurm", "local", "debug")


def _resolve(function: str) -> Callable[..., Any]:
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)


@contextlib.contextmanager
def _in_dir(path: str) -> Iterator[None]:
    """Run in the task's working directory (its paths are relative to it, as in the Snakefile)."""
    old = os.getcwd()
    if Path(old).resolve() == Path(path).resolve():
        yield
        return
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_task(task: Task) -> str:
    """Run one task in this process: the job function with the task's arguments; returns the first output."""
    import torch

    with _in_dir(task.workdir):
        # the thread count Snakemake gives the rule, so both routes compute the same bytes
        torch.set_num_threads(task.threads)
        print(f"[dplase] {task.name}: {task.function} -> {', '.join(task.outputs)}", flush=True)
        started = time.perf_counter()
        _resolve(task.function)(**task.kwargs)
        print(f"[dplase] {task.name}: done in {time.perf_counter() - started:.1f}s", flush=True)
    return task.outputs[0] if task.outputs else ""


class TaskJob(submitit.helpers.Checkpointable):
    """The submitted callable: runs a task; pre-emption-safe (see the module docstring)."""

    def __call__(self, task: Task) -> str:
        from dplase.training.loop import Preempted

        try:
            return run_task(task)
        except Preempted as err:
            print(f"[dplase] {task.name}: {err}", flush=True)
            if getattr(err, "signum", None) == signal.SIGUSR2 and _submitit_owns(signal.SIGUSR2):
                # the trainer's handler is gone now: hand the signal to submitit, which calls self.checkpoint()
                # and requeues this job (it exits the process; nothing after this line runs under SLURM)
                signal.raise_signal(signal.SIGUSR2)
            raise

    def checkpoint(self, task: Task) -> submitit.helpers.DelayedSubmission:
        """Resubmit the same task: the trainer state is already on disk (its checkpoint), so nothing else to save."""
        print(f"[dplase] {task.name}: requeue requested; the rerun resumes from the trainer checkpoint", flush=True)
        return submitit.helpers.DelayedSubmission(TaskJob(), task)


def _submitit_owns(signum: int) -> bool:
    """Whether submitit's checkpoint-and-requeue handler is installed for ``signum`` (so re-raising is safe)."""
    handler = signal.getsignal(signum)
    owner = getattr(handler, "__self__", None)
    return owner is not None and type(owner).__module__.startswith("submitit")


# ------------------------------------------------------------------------------------------------- launching


@dataclass
class SlurmOptions:
    """Where and how to submit (only used with cluster="slurm"; the defaults come from the Snakemake profile)."""

    account: str | None = None
    partition: str | None = None
    gpus_per_job: int = 1
    gpu_type: str | None = None  # e.g. "a100": asks --gres=gpu:a100:N
    array_parallelism: int = 50
    signal_delay_s: int = 90  # SIGUSR2 this long before the time limit
    additional: dict[str, Any] = field(default_factory=dict)  # extra sbatch options (name -> value)


@dataclass
class TaskOutcome:
    """What happened to one task: state "done" (ran now), "skipped" (outputs existed), "failed", "blocked"."""

    task: Task
    state: str
    job_id: str | None = None
    log_path: str | None = None
    error: str | None = None


@dataclass
class LaunchReport:
    outcomes: list[TaskOutcome]
    folder: str

    def by_state(self, state: str) -> list[TaskOutcome]:
        return [o for o in self.outcomes if o.state == state]

    @property
    def ok(self) -> bool:
        return not self.by_state("failed") and not self.by_state("blocked")

    def summary(self) -> str:
        counts = {s: len(self.by_state(s)) for s in ("done", "skipped", "failed", "blocked")}
        lines = [", ".join(f"{n} {s}" for s, n in counts.items())]
        for o in self.by_state("failed"):
            lines.append(f"FAILED {o.task.name} (job {o.job_id}): {o.error}\n    log: {o.log_path}")
        for o in self.by_state("blocked"):
            lines.append(f"NOT RUN {o.task.name}: {o.error}")
        return "\n".join(lines)


def profile_defaults(profile: str | os.PathLike | None) -> dict[str, Any]:
    """slurm_account and slurm_partition of a Snakemake profile's default-resources (the values a user edits
    once for both routes); {} when the profile does not exist."""
    import yaml

    if profile is None:
        return {}
    path = Path(profile)
    path = path / "config.yaml" if path.is_dir() else path
    if not path.is_file():
        return {}
    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    resources = data.get("default-resources") or {}
    if isinstance(resources, list):  # the "KEY=VALUE" list form
        resources = dict(item.split("=", 1) for item in resources)
    return {k: str(v).strip("'\"") for k, v in resources.items() if k in ("slurm_account", "slurm_partition")}


def make_executor(cluster: str, folder: str | os.PathLike, slurm: SlurmOptions) -> submitit.AutoExecutor:
    """A submitit executor for ``cluster`` ("slurm", "local" or "debug") writing its logs under ``folder``."""
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown cluster '{cluster}'; choose one of {', '.join(CLUSTERS)}")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    if cluster == "slurm":
        extra = {**slurm.additional}
        if slurm.account:
            extra["account"] = slurm.account
        executor.update_parameters(slurm_partition=slurm.partition, slurm_additional_parameters=extra,
                                   slurm_array_parallelism=slurm.array_parallelism,
                                   slurm_signal_delay_s=slurm.signal_delay_s)
    return executor


def _stage_parameters(executor: submitit.AutoExecutor, cluster: str, stage: str, tasks: Sequence[Task],
                      slurm: SlurmOptions) -> None:
    first = tasks[0]
    params: dict[str, Any] = {"name": stage, "timeout_min": first.runtime_min, "cpus_per_task": first.threads}
    if cluster == "slurm":
        params["slurm_mem"] = f"{max(t.mem_mb for t in tasks)}M"
        gpus = slurm.gpus_per_job if first.gpu else 0
        gres = None
        if gpus:
            gres = f"gpu:{slurm.gpu_type}:{gpus}" if slurm.gpu_type else f"gpu:{gpus}"
        params["slurm_gres"] = gres
    executor.update_parameters(**params)


def _job_log(job: submitit.Job) -> str:
    return str(job.paths.stdout)


def _short_error(err: BaseException) -> str:
    """The line naming the error; submitit wraps the remote traceback and appends the log paths after it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line)]
    if named:
        return named[-1]
    return lines[0] if lines else type(err).__name__


def submit_wave(folder: str | os.PathLike, cluster: str, tasks: Sequence[Task], slurm: SlurmOptions,
                echo: Callable[[str], None] = print) -> list[TaskOutcome]:
    """Submit ``tasks`` (one job array per stage), wait for them and report each one's outcome."""
    by_stage: dict[str, list[Task]] = {}
    for task in tasks:
        by_stage.setdefault(task.stage, []).append(task)
    submitted: list[tuple[Task, submitit.Job]] = []
    for stage, stage_tasks in by_stage.items():
        # a fresh executor per stage: submitit keeps earlier values for parameters set to None (a CPU stage
        # would inherit the GPU request of the stage before)
        executor = make_executor(cluster, folder, slurm)
        _stage_parameters(executor, cluster, stage, stage_tasks, slurm)
        jobs = executor.map_array(TaskJob(), stage_tasks)
        array_id = jobs[0].job_id.split("_")[0] if jobs else "-"
        echo(f"submitted {stage}: {len(jobs)} task(s) as job array {array_id} ({cluster})")
        submitted += list(zip(stage_tasks, jobs, strict=True))
    outcomes = []
    for task, job in submitted:
        try:
            job.result()
            outcomes.append(TaskOutcome(task, "done", job.job_id, _job_log(job)))
            echo(f"  done   {task.name} (job {job.job_id})")
        except Exception as err:  # a failed job: report it with its log, keep the others going
            outcomes.append(TaskOutcome(task, "failed", job.job_id, _job_log(job), _short_error(err)))
            echo(f"  FAILED {task.name} (job {job.job_id}): {_short_error(err)}\n         log: {_job_log(job)}")
    return outcomes


def _stale(task: Task) -> bool:
    """Outputs missing or older than an input (collect tasks rerun when a run was added or redone)."""
    if not task.done():
        return True
    newest_input = max((task.path(p).stat().st_mtime for p in task.inputs if task.path(p).exists()), default=0.0)
    return min(task.path(p).stat().st_mtime for p in task.outputs) < newest_input


def launch(
    sweep: Sweep,
    cluster: str = "slurm",
    *,
    folder: str | os.PathLike = "results/logs/submitit",
    slurm: SlurmOptions | None = None,
    stages: Sequence[str] | None = None,
    collect: bool = True,
    workdir: str | os.PathLike | None = None,
    echo: Callable[[str], None] = print,
) -> LaunchReport:
    """Run the sweep: wave by wave (models, discovery, evaluation), each stage one job array of the tasks whose
    outputs are missing; then, on this node, the runs table and the collected metrics and losses.

    A task whose inputs are missing because an earlier task failed is reported "blocked"; everything else still
    runs. Rerunning the same call does only the missing work.
    """
    slurm = slurm or SlurmOptions()
    workdir = str(Path(workdir or os.getcwd()).resolve())
    folder = Path(folder) if Path(folder).is_absolute() else Path(workdir) / folder
    make_executor(cluster, folder, slurm)  # fail early on an unknown cluster
    wanted = set(stages) if stages is not None else set(LAUNCH_STAGES)
    outcomes: list[TaskOutcome] = []
    for wave in WAVES:
        tasks = plan_tasks(sweep, [s for s in wave if s in wanted], workdir)
        todo = []
        for task in tasks:
            if task.done():
                outcomes.append(TaskOutcome(task, "skipped"))
            elif missing := task.missing_inputs():
                outcomes.append(TaskOutcome(task, "blocked", error=f"missing input(s): {', '.join(missing)}"))
            else:
                todo.append(task)
        if todo:
            outcomes += submit_wave(folder, cluster, todo, slurm, echo)
    report = LaunchReport(outcomes, str(folder))
    if collect and report.ok:
        for task in collect_tasks(sweep, workdir):
            if _stale(task):
                run_task(task)
                outcomes.append(TaskOutcome(task, "done"))
            else:
                outcomes.append(TaskOutcome(task, "skipped"))
    elif collect:
        echo("collection skipped: some tasks failed or could not run")
    return report


def load_sweep(config_files: Sequence[str | os.PathLike], base_config: str | os.PathLike | None = "config/config.yaml",
               root: str = "results") -> Sweep:
    """The sweep `snakemake --configfile FILE...` sees: ``config_files`` merged onto the Snakefile's base config
    (when it exists), validated and expanded."""
    files = [base_config] if base_config and Path(base_config).is_file() else []
    files += [f for f in config_files if not (files and Path(f).resolve() == Path(files[0]).resolve())]
    return prepare(load_config(*files), root)


def slurm_options_from(profile: str | os.PathLike | None, overrides: Mapping[str, Any]) -> SlurmOptions:
    """SlurmOptions from the profile's account/partition, then explicit overrides (None values ignored)."""
    defaults = profile_defaults(profile)
    options = SlurmOptions(account=defaults.get("slurm_account"), partition=defaults.get("slurm_partition"))
    for key, value in overrides.items():
        if value is not None:
            setattr(options, key, value)
    return options
