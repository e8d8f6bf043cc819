"""Helpers of the SLURM tests (tests/test_slurm_submitit.py, tests/test_slurm_snakemake.py): reaching the test
cluster, running the two routes' commands, reading SLURM accounting, and tiny generators and sweep configs.

The two test files are separate so that pytest-xdist (`--dist loadfile`) runs them side by side, each file's
tests one after another in one worker; the helpers below therefore never assume a job in the queue is theirs
(they select jobs by working directory).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from dplase.artifacts import load_artifact

REPO = Path(__file__).resolve().parents[1]
DPLASE = str(Path(sys.executable).with_name("dplase"))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}


def cluster_problem() -> str | None:
    """Why the cluster tests cannot run here (None when a cluster with accounting answers)."""
    if shutil.which("sinfo") is None or shutil.which("sacct") is None:
        return "no SLURM client on PATH (sinfo/sacct); start a test cluster with scripts/slurm-cluster.sh start"
    try:
        info = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no SLURM controller answers"
    if info.returncode != 0:
        return f"no SLURM cluster reachable (sinfo: {info.stderr.strip()[-200:]}); run scripts/slurm-cluster.sh start"
    states = {s.rstrip("*~#") for s in info.stdout.split()}
    if not states & USABLE_NODE_STATES:
        return f"no SLURM node accepts jobs (node states: {', '.join(sorted(states)) or 'none'})"
    acct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=30)
    if acct.returncode != 0:
        return f"SLURM accounting unavailable (sacct: {acct.stderr.strip()[-200:]}); the tests read job states from it"
    return None


def command_env() -> dict[str, str]:
    """The environment of the commands: the venv's bin first (jobs and shell rules call `dplase`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_command(cmd: list[str], cwd: Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=command_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def sacct_jobs(workdir: Path, requeues: bool = False) -> pd.DataFrame:
    """One row per job (array tasks included) that ran in ``workdir``, from SLURM accounting; with
    ``requeues`` also one row per earlier, requeued start of a job (state REQUEUED)."""
    fields = ["JobID", "JobName", "State", "AllocTRES", "Comment", "WorkDir"]
    cmd = ["sacct", "-n", "-P", "-X", "-S", "now-2hours", "-o", ",".join(fields), *(["-D"] if requeues else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.count("|") == len(fields) - 1]
    frame = pd.DataFrame(rows, columns=fields)
    return frame[frame["WorkDir"].map(lambda d: Path(d).resolve() == workdir.resolve() if d else False)]


def make_generator(path: Path, seed: int = 0) -> Path:
    """A small untrained DCGAN checkpoint: discovery methods run on it in seconds."""
    from dplase.generators import save_generator
    from dplase.generators.dcgan import DCGANAdapter

    arch = {"z_dim": 8, "image_size": 32, "channels": 1, "width": 4, "pixelnorm": False}
    adapter = DCGANAdapter.build(arch, prior={"name": "gaussian", "dim": 8}, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_generator(path, adapter.net, "dcgan", arch, adapter.prior.to_config(),
                          {"dataset": "shapes", "seed": seed, "steps": 0})


def sweep_config(path: Path, models: dict, methods: list[str], seeds: list[int], params: dict) -> Path:
    """A discovery-only config on pretrained generators (no GAN training), written to ``path``."""
    config = {
        "checkpoint_every": 10,
        "datasets": {"shapes": {"image_size": 32}},
        "models": {name: {"checkpoint": str(ckpt)} for name, ckpt in models.items()},
        "sweeps": [{"name": "s", "models": list(models), "datasets": ["shapes"], "methods": methods,
                    "seeds": seeds, "params": params}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def load_sweep_file(config: Path):
    from dplase.launch import load_sweep

    return load_sweep([config], base_config=None)


def assert_same_directions(a: Path, b: Path) -> None:
    tensors_a, meta_a = load_artifact(a, kind="directions")
    tensors_b, meta_b = load_artifact(b, kind="directions")
    assert meta_a == meta_b
    assert torch.equal(tensors_a["directions"], tensors_b["directions"])
    assert torch.equal(tensors_a["scores"], tensors_b["scores"])


def reference_discovery(sweep, run_id: str, generator: Path, out_dir: Path) -> Path:
    """Run ``run_id``'s discovery in this process with one thread, as its job does, writing
    ``out_dir``/directions.pt and losses.parquet: the uninterrupted run the routes' results must equal."""
    from dplase.jobs import discover_job

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        discover_job(**sweep.job_kwargs("discover_directions", run_id), generator=str(generator),
                     out=str(out_dir / "directions.pt"), losses=str(out_dir / "losses.parquet"))
    finally:
        torch.set_num_threads(threads)
    return out_dir


def sweep_command(config: Path, cluster: str, *extra: str) -> list[str]:
    return [DPLASE, "sweep", "--config", str(config), "--base-config", "", "--cluster", cluster,
            "--stage", "discover_directions", "--no-collect", "--profile", str(REPO / "profiles" / "slurm"), *extra]


def sweep_accounting(workdir: Path, requeues: bool = False) -> pd.DataFrame:
    """`_sacct` once every job has ended: submitit sees a job's result file a moment before SLURM ends it."""
    deadline = time.time() + 60
    while True:
        jobs = sacct_jobs(workdir, requeues)
        settled = len(jobs) and not jobs["State"].isin(["RUNNING", "COMPLETING", "PENDING"]).any()
        if settled or time.time() > deadline:
            return jobs
        time.sleep(1)


def queued_job_in(workdir: Path) -> str:
    """The id of the one job in the queue that runs in ``workdir`` (other tests' jobs may share the queue)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%Z"], capture_output=True, text=True, check=True).stdout
    ids = [i for i, d in (line.split("|", 1) for line in out.splitlines() if "|" in line)
           if Path(d).resolve() == workdir.resolve()]
    assert len(ids) == 1, f"expected one queued job in {workdir}, squeue has: {out}"
    return ids[0]


@contextlib.contextmanager
def started(cmd: list[str], **popen_kwargs) -> Iterator[subprocess.Popen]:
    """``cmd`` running in the background with the commands' environment; killed on the way out if still alive
    (a failed assertion must not leave a workflow submitting jobs)."""
    proc = subprocess.Popen(cmd, env=command_env(), text=True, **popen_kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def wait_for_checkpoint(proc: subprocess.Popen, ckpt: Path, timeout: float = 300) -> None:
    """Wait until the job that ``proc`` waits for has written its first periodic checkpoint (it is mid-run).
    The timeout is generous: another test file's jobs may hold the test node's two CPUs a while."""
    deadline = time.time() + timeout
    while not ckpt.exists():
        assert proc.poll() is None and time.time() < deadline, "the job never checkpointed"
        time.sleep(0.2)


def assert_resumed_mid_run(log: str, total_steps: int) -> None:
    """The job log says the trainer resumed from its checkpoint at a step strictly inside the run."""
    resumed = re.search(r"resumed from checkpoint \S+directions\.ckpt at step (\d+)", log)
    assert resumed and 0 < int(resumed.group(1)) < total_steps, log


def job_state(job_id: str) -> tuple[str, str]:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True).stdout.split()
    return (out[0], out[1]) if len(out) >= 2 else ("", "")


def wait_for_requeued(proc: subprocess.Popen, job_id: str, timeout: float) -> None:
    """Wait until ``proc`` (which waits for the requeued job) ends, lifting SLURM's ~2-minute hold on requeued
    jobs (reason BeginTime) so the test does not sit it out."""
    deadline = time.time() + timeout
    while proc.poll() is None:
        state, reason = job_state(job_id)
        if state == "PENDING" and reason == "BeginTime":
            subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], check=False)
        assert time.time() < deadline, "the requeued job did not finish"
        time.sleep(1)


def workflow_dir(path: Path) -> Path:
    """A working directory for the workflow: the Snakefile's relative paths (config/, results/) land here."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config").symlink_to(REPO / "config")
    return path


def snakemake_in(workdir: Path, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    """`snakemake ...` run from the repository root (so `--profile slurm` is resolved as a user types it)."""
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=command_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def needs_workflow() -> None:
    if not (REPO / "Snakefile").is_file():
        pytest.skip("the workflow (Snakefile) is not in this checkout")


# the profile's 20 s first status poll is meant for a shared cluster; the tests poll sooner
FAST_POLL = ("--slurm-init-seconds-before-status-checks", "2")


def load_sweep_for(*configs: str | Path):
    from dplase.launch import load_sweep

    return load_sweep(list(configs), base_config=REPO / "config" / "config.yaml")
