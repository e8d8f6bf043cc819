"""Interruption, local (issue 18): `snakemake --cores 2 --configfile config/test.yaml` killed with SIGKILL (the
whole process group: Snakemake and every job it started) at a seeded random moment inside each stage (GAN
training, discovery, evaluation, collection) and recovered each time with the README's command
(`snakemake --unlock`, then the same command with `--rerun-incomplete`) must end with the metrics of an
uninterrupted run, and must not redo any job that had finished before a kill.

To keep the cost near two runs of the tiny config, the four kills happen one after the other in one folder: kill
in stage 1, recover until the killed job is done again and a job of stage 2 starts, kill that one, and so on;
the last recovery runs to the end. A job's start is Snakemake's own mark (`.snakemake/incomplete/<base64 of the
output>`, rewritten at every start); its own work starts when its log file appears, after its imports (about a
second). Each kill comes once the job has done a seeded fraction (0.1-1) of 40% of its own work in the
uninterrupted run, counted in CPU time (read from /proc for the process that holds the log open), not wall time:
the stage windows are short (0.3 s of own work for the collection job, 1.4 s for GAN training) and wall time
stretches 2-10x with the load of the machine; CPU time stretches less (up to 1.7x measured, for the two-thread GAN
training under two busy loops), and 40% leaves room for 2.5x. The test checks that each kill landed before the
job's end (its output is absent after the kill). The table of kills is
printed (`pytest -s`) and written to `kills.json` in the test's temporary folder.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_workflow import (
    BIN,
    ROOT,
    SNAKEMAKE,
    TEST_CONFIG,
    expected_outputs,
    incomplete_outputs,
    job_total,
    make_workdir,
    results_without_timestamps,
    snakemake,
)

from dplase.artifacts import load_artifact, sha256_tree
from dplase.config import load_config, prepare
from dplase.generators.registry import FAMILIES

SEED = 18
COMMAND = ("--cores", "2", "--configfile", TEST_CONFIG)
#: a kill comes within this share of the job's own work (CPU time) in the uninterrupted run: the margin for a
#: reference run on a busy machine, whose CPU time the spinning threads of a loaded torch inflate
KILL_SHARE = 0.4
POLL_S = 0.01
#: jobs of a stage whose own work took this much CPU time in the reference run are the ones killed, where any
#: does (a closed-form discovery's own work is 0.3 CPU-s, the trained ones' 1.3-1.8)
MIN_OWN_CPU_S = 0.5
#: a job of the next stage counts if it started at most this long before the killed job was done again (a
#: margin for the coarse file clock: the collection job can start right after the last evaluation)
ARM_SLACK_S = 0.5
DEADLINE_S = 900


@dataclass(frozen=True)
class Job:
    """One job of the workflow: its rule, its outputs (the first is the one the test watches) and its log."""

    rule: str
    name: str
    outputs: tuple[Path, ...]
    log: Path

    def done(self) -> bool:
        return all(p.is_file() for p in self.outputs)


def stage_jobs(workdir: Path) -> dict[str, list[Job]]:
    """The jobs of each interrupted stage, in the tiny config's sweep."""
    sweep = prepare(load_config(ROOT / "config/config.yaml", ROOT / TEST_CONFIG))

    def out(*names: str, **fields: Any) -> tuple[Path, ...]:
        return tuple(workdir / sweep.path(n, **fields) for n in names)

    trained = [(m, d, s) for m, d, s in sweep.trained_generators()
               if FAMILIES[sweep.job_kwargs("train_gan", (m, d, s))["family"]].get("trainable")]
    logs = workdir / "results/logs"
    return {
        "GAN training": [Job("train_gan", f"{m}/{d}/seed{s}",
                             out("generator", "generator_grid", "generator_losses", model=m, dataset=d, model_seed=s),
                             logs / f"train_gan/{d}/{m}/seed{s}.log") for m, d, s in trained],
        "discovery": [Job("discover_directions", r.run_id, out("directions", "losses", run_id=r.run_id),
                          logs / f"discover_directions/{r.run_id}.log") for r in sweep.runs],
        "evaluation": [Job("evaluate_walks", r.run_id, out("run_metrics", run_id=r.run_id),
                           logs / f"evaluate_walks/{r.run_id}.log") for r in sweep.runs],
        "collection": [Job("collect_metrics", "metrics", out("metrics"), logs / "collect_metrics.log")],
    }


def start_marks(workdir: Path) -> dict[Path, float]:
    """Output -> when Snakemake last started the job that writes it (the mtime of its incomplete mark)."""
    marks = workdir / ".snakemake" / "incomplete"
    found: dict[Path, float] = {}
    for mark in marks.iterdir() if marks.is_dir() else []:
        try:
            found[workdir / base64.urlsafe_b64decode(mark.name).decode()] = mark.stat().st_mtime
        except (OSError, ValueError, UnicodeDecodeError):
            continue  # unmarked while we looked (the job ended), or Snakemake's own bookkeeping file
    return found


def launch(workdir: Path, log: Path, *args: str) -> subprocess.Popen:
    """Snakemake in its own process group, so one killpg reaches every job it started."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # `dplase` for shell rules
    with open(log, "w") as handle:
        return subprocess.Popen([SNAKEMAKE, *args], cwd=workdir, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def processes_in(folder: Path) -> list[int]:
    """Live processes whose working directory is ``folder`` (Linux /proc; zombies have none)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")) == folder.resolve():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (field 3, the state, first), or None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def holder(path: Path, pgid: int) -> int | None:
    """The process of group ``pgid`` that has ``path`` open (a job keeps its log open while it runs)."""
    wanted = str(path.resolve())
    for proc in Path("/proc").glob("[0-9]*"):
        fields = stat_fields(int(proc.name))
        if fields is None or int(fields[2]) != pgid:
            continue
        try:
            if any(os.readlink(fd) == wanted for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


class Progress:
    """How far a running job is in its own work: the CPU time it used since its log appeared (past its imports).
    CPU time, not wall time: it counts the same on a busy machine as on an idle one."""

    def __init__(self, job: Job, pgid: int, started: float) -> None:
        self.job, self.pgid, self.started = job, pgid, started
        self.pid: int | None = None
        self.cpu0 = self.cpu = self.logged = self.ended = 0.0

    def poll(self) -> None:
        if self.pid is None:  # not a killed attempt's log: it was opened after this start
            if self.job.log.exists() and self.job.log.stat().st_mtime >= self.started:
                self.pid = holder(self.job.log, self.pgid)
                if self.pid is not None:
                    self.cpu0 = self.cpu = cpu_s(self.pid) or 0.0
                    self.logged = time.time()
        elif (now := cpu_s(self.pid)) is not None:
            self.cpu = now

    @property
    def own_cpu_s(self) -> float:
        return self.cpu - self.cpu0


def key(job: Job) -> str:
    return f"{job.rule}:{job.name}"


def reference_run(workdir: Path, jobs: list[Job]) -> tuple[dict[str, Progress], float, int]:
    """Run the tiny config uninterrupted; returns each watched job's progress at its end, the wall time and the
    job count."""
    log = workdir.parent / "reference.log"
    watched: dict[str, Progress] = {}
    took: dict[str, Progress] = {}
    start = time.perf_counter()
    process = launch(workdir, log, *COMMAND)
    while process.poll() is None:
        marks = start_marks(workdir)
        for job in jobs:
            if key(job) not in watched and job.outputs[0] in marks:
                watched[key(job)] = Progress(job, process.pid, marks[job.outputs[0]])
            if key(job) in watched and key(job) not in took:
                watched[key(job)].poll()
                if watched[key(job)].pid is not None and job.done():
                    took[key(job)] = watched[key(job)]
                    took[key(job)].ended = time.time()
        time.sleep(POLL_S)
    elapsed = time.perf_counter() - start
    text = log.read_text()
    assert process.returncode == 0, text[-5000:]
    return took, elapsed, job_total(text)


def kill_inside(process: subprocess.Popen, workdir: Path, jobs: list[Job], armed: float, fraction: float,
                took: dict[str, Progress]) -> dict[str, Any]:
    """Wait for a job of ``jobs`` to start (at ``armed`` or later) and SIGKILL the process group once the job
    has done ``fraction`` of KILL_SHARE of its own work in the reference run (its CPU time since its log
    appeared); jobs whose own work took MIN_OWN_CPU_S or more there are preferred. Says where the kill landed."""
    seen = [j for j in jobs if key(j) in took]  # a job too short to catch running is no candidate
    candidates = [j for j in seen if took[key(j)].own_cpu_s >= MIN_OWN_CPU_S] or seen
    assert candidates, f"no job of {[j.rule for j in jobs][:1]} was seen running in the reference run"
    deadline, progress, goal = time.time() + DEADLINE_S, None, 0.0
    while time.time() < deadline:
        assert process.poll() is None, "the workflow ended before the stage's job could be killed"
        if progress is None:
            marks = start_marks(workdir)
            for job in candidates:
                if marks.get(job.outputs[0], 0.0) >= armed - ARM_SLACK_S and not job.done():
                    progress = Progress(job, process.pid, marks[job.outputs[0]])
                    goal = fraction * KILL_SHARE * took[key(job)].own_cpu_s
                    break
        if progress is not None:
            progress.poll()
            if progress.pid is not None and progress.own_cpu_s >= goal:
                break
        time.sleep(POLL_S)
    assert progress is not None and progress.pid is not None, "no job of the stage started"
    killed = time.time()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for _ in range(100):  # an orphaned job would go on writing: every one must be gone
        if not processes_in(workdir):
            break
        time.sleep(0.1)
    assert not processes_in(workdir), "a job outlived the process-group kill"
    target, reference = progress.job, took[key(progress.job)]
    assert not target.outputs[0].exists(), f"the kill landed after {target.rule} {target.name} had finished"
    incomplete = incomplete_outputs(workdir)
    return {
        "job": target, "rule": target.rule, "name": target.name,
        "kill_s": killed - progress.logged, "after_start_s": killed - progress.started,
        "kill_cpu_s": progress.own_cpu_s, "reference_cpu_s": reference.own_cpu_s,
        "reference_s": reference.ended - reference.logged,
        "checkpoint": target.outputs[0].with_suffix(".ckpt").exists(),
        "tmp_left": len(list((workdir / "results").rglob(".*.tmp"))),
        # job outputs complete at the kill (a killed job's log is rewritten by its rerun, as it should be)
        "finished": {p: p.stat().st_mtime_ns for p in expected_outputs(workdir)
                     if p.is_file() and p not in incomplete and "logs" not in p.relative_to(workdir).parts},
    }


def recover(workdir: Path, log: Path) -> subprocess.Popen:
    """The README's recovery command: `snakemake --unlock`, then the same command with --rerun-incomplete."""
    unlock = snakemake(workdir, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    return launch(workdir, log, *COMMAND, "--rerun-incomplete")


def wait_done(process: subprocess.Popen, job: Job) -> float:
    """Wait until ``job``'s outputs exist again; returns when (time.time())."""
    deadline = time.time() + DEADLINE_S
    while not job.done():
        assert process.poll() is None or job.done(), f"the rerun ended without redoing {job.rule} {job.name}"
        assert time.time() < deadline, f"{job.rule} {job.name} was not redone in {DEADLINE_S} s"
        time.sleep(POLL_S)
    return time.time()


def same_values(path: Path, reference: Path) -> bool:
    """An artifact's tensors, or a results table's rows (without timestamps), equal the reference's."""
    if path.suffix == ".pt":
        return sha256_tree(load_artifact(path)[0]) == sha256_tree(load_artifact(reference)[0])
    return results_without_timestamps(path).equals(results_without_timestamps(reference))


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict[str, Any]:
    """The reference run, then one run killed in each stage in turn and recovered; the kill table."""
    base = tmp_path_factory.mktemp("interruption")
    reference = make_workdir(base / "reference")
    stages = stage_jobs(reference)
    took, reference_s, reference_jobs = reference_run(reference, [j for jobs in stages.values() for j in jobs])

    workdir = make_workdir(base / "wf")
    stages = stage_jobs(workdir)
    rng = random.Random(SEED)
    fractions = {stage: rng.uniform(0.1, 1.0) for stage in stages}
    start = time.perf_counter()
    process, armed, kills = launch(workdir, base / "run0.log", *COMMAND), time.time(), []
    try:
        for i, (stage, jobs) in enumerate(stages.items()):
            kill = kill_inside(process, workdir, jobs, armed, fractions[stage], took)
            rerun_started, log = time.time(), base / f"rerun{i + 1}.log"
            process = recover(workdir, log)
            armed = wait_done(process, kill["job"])  # the next stage's kill waits for this job to be redone
            kills.append({"stage": stage, "fraction": fractions[stage], **kill, "rerun_s": armed - rerun_started,
                          "rerun_jobs": job_total(log.read_text())})  # Snakemake's job table comes first
        rc = process.wait(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:  # a failed check: leave no workflow running behind the test
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    final_rerun_s, interrupted_s = time.time() - rerun_started, time.perf_counter() - start
    assert rc == 0, log.read_text()[-5000:]

    for kill in kills:
        job = kill.pop("job")
        kill["finished_count"] = len(kill["finished"])
        kill["redone"] = sorted(str(p.relative_to(workdir)) for p, mtime in kill.pop("finished").items()
                                if p.stat().st_mtime_ns != mtime)
        kill["equal"] = same_values(job.outputs[0], reference / job.outputs[0].relative_to(workdir))
    metrics_equal = same_values(workdir / "results/metrics.parquet", reference / "results/metrics.parquet")
    table = {"seed": SEED, "reference_s": reference_s, "reference_jobs": reference_jobs,
             "interrupted_s": interrupted_s, "final_rerun_s": final_rerun_s, "metrics_equal": metrics_equal,
             "kills": kills}
    (base / "kills.json").write_text(json.dumps(table, indent=2))
    print_table(table)
    return {**table, "workdir": workdir, "reference": reference}


def print_table(table: dict[str, Any]) -> None:
    """The kill table as Markdown (shown by `pytest -s`)."""
    print(f"\n\nkill -9 table (seed {table['seed']}): uninterrupted run {table['reference_s']:.1f} s "
          f"({table['reference_jobs']} jobs); run killed 4 times and recovered {table['interrupted_s']:.1f} s, "
          f"its last rerun {table['final_rerun_s']:.1f} s; metrics.parquet equal: {table['metrics_equal']}\n")
    print("| stage | killed job | kill moment (of the reference job's own work) | checkpoint | .tmp left | "
          "rerun: redone after | jobs planned | equal? | jobs redone |")
    print("|---|---|---|---|---:|---:|---:|---|---:|")
    for k in table["kills"]:
        print(f"| {k['stage']} | {k['rule']} {k['name']} | {k['kill_s']:.2f} s after its log, "
              f"{k['after_start_s']:.2f} s after its start; {k['kill_cpu_s']:.2f} of {k['reference_cpu_s']:.2f} "
              f"CPU-s ({k['reference_s']:.2f} s) | {k['checkpoint']} | {k['tmp_left']} | {k['rerun_s']:.1f} s | "
              f"{k['rerun_jobs']} | {k['equal']} | {len(k['redone'])} |")


@pytest.mark.slow
def test_each_kill_lands_inside_its_stage(interrupted):
    kills = interrupted["kills"]
    assert [k["stage"] for k in kills] == ["GAN training", "discovery", "evaluation", "collection"]
    assert [k["rule"] for k in kills] == ["train_gan", "discover_directions", "evaluate_walks", "collect_metrics"]
    for kill in kills:  # in its own work, before it ended (kill_inside checked its output was absent)
        assert kill["kill_s"] >= 0 and kill["kill_cpu_s"] < kill["reference_cpu_s"], kill


@pytest.mark.slow
def test_recovered_run_has_the_uninterrupted_values(interrupted):
    pd.testing.assert_frame_equal(
        results_without_timestamps(interrupted["workdir"] / "results/metrics.parquet"),
        results_without_timestamps(interrupted["reference"] / "results/metrics.parquet"))
    for kill in interrupted["kills"]:  # each killed job, redone, wrote what the uninterrupted one did
        assert kill["equal"], kill


@pytest.mark.slow
def test_no_finished_job_is_redone(interrupted):
    for kill in interrupted["kills"]:
        assert kill["finished_count"] > 0, kill  # some jobs had finished before each kill
        assert not kill["redone"], (kill["stage"], kill["redone"])
        # the rerun planned only what was left (and the killed job), not the whole workflow again
        assert 0 < kill["rerun_jobs"] < interrupted["reference_jobs"], kill
