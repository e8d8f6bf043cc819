"""The SLURM routes against a live cluster (marker `slurm`), and the submitit launcher in-process.

The cluster tests need a reachable SLURM with accounting (scripts/slurm-cluster.sh start gives one on this
machine; .ci/run starts it) and skip with the reason otherwise. They check what a user relies on:
1. `snakemake --profile slurm` runs every heavy rule as a SLURM job (sacct: rule, COMPLETED, gres/gpu for the
   GPU rules) and its final Parquet equals a local run's;
2. `dplase sweep --cluster slurm` runs discovery as one job array, with the same artifacts as the local route;
3. a discovery job requeued mid-run (scontrol requeue, or submitit's pre-timeout SIGUSR2) resumes from its
   checkpoint and ends with the directions of an uninterrupted run;
4. a job failing on bad input is reported with its log, the others finish, and a rerun after the fix does
   only the missing work (both routes).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
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


# ------------------------------------------------------------------------------------------------ helpers


def _cluster_problem() -> str | None:
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


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = _cluster_problem()
    if problem:
        pytest.skip(problem)


def _env() -> dict[str, str]:
    """The environment of the commands: the venv's bin first (jobs and shell rules call `dplase`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def _sacct(workdir: Path, requeues: bool = False) -> pd.DataFrame:
    """One row per job (array tasks included) that ran in ``workdir``, from SLURM accounting; with
    ``requeues`` also one row per earlier, requeued start of a job (state REQUEUED)."""
    fields = ["JobID", "JobName", "State", "AllocTRES", "Comment", "WorkDir"]
    cmd = ["sacct", "-n", "-P", "-X", "-S", "now-2hours", "-o", ",".join(fields), *(["-D"] if requeues else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.count("|") == len(fields) - 1]
    frame = pd.DataFrame(rows, columns=fields)
    return frame[frame["WorkDir"].map(lambda d: Path(d).resolve() == workdir.resolve() if d else False)]


def _make_generator(path: Path, seed: int = 0) -> Path:
    """A small untrained DCGAN checkpoint: discovery methods run on it in seconds."""
    from dplase.generators import save_generator
    from dplase.generators.dcgan import DCGANAdapter

    arch = {"z_dim": 8, "image_size": 32, "channels": 1, "width": 4, "pixelnorm": False}
    adapter = DCGANAdapter.build(arch, prior={"name": "gaussian", "dim": 8}, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_generator(path, adapter.net, "dcgan", arch, adapter.prior.to_config(),
                          {"dataset": "shapes", "seed": seed, "steps": 0})


def _sweep_config(path: Path, models: dict, methods: list[str], seeds: list[int], params: dict) -> Path:
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


def _load_sweep(config: Path):
    from dplase.launch import load_sweep

    return load_sweep([config], base_config=None)


def _assert_same_directions(a: Path, b: Path) -> None:
    tensors_a, meta_a = load_artifact(a, kind="directions")
    tensors_b, meta_b = load_artifact(b, kind="directions")
    assert meta_a == meta_b
    assert torch.equal(tensors_a["directions"], tensors_b["directions"])
    assert torch.equal(tensors_a["scores"], tensors_b["scores"])


def _sweep_cmd(config: Path, cluster: str, *extra: str) -> list[str]:
    return [DPLASE, "sweep", "--config", str(config), "--base-config", "", "--cluster", cluster,
            "--stage", "discover_directions", "--no-collect", "--profile", str(REPO / "profiles" / "slurm"), *extra]


# --------------------------------------------------------------------------- the launcher without a cluster


def test_profile_names_the_test_clusters_account_and_partition():
    """The values a user edits in the profile are the ones both routes submit with."""
    from dplase.launch import profile_defaults, slurm_options_from

    script = (REPO / "scripts" / "slurm-cluster.sh").read_text()
    account = re.search(r"DPLASE_SLURM_ACCOUNT:-(\w+)", script).group(1)
    partition = re.search(r"DPLASE_SLURM_PARTITION:-(\w+)", script).group(1)
    assert profile_defaults(REPO / "slurm") == {"slurm_account": account, "slurm_partition": partition}
    options = slurm_options_from(REPO / "profiles" / "slurm", {"partition": "gpu", "account": None})
    assert (options.account, options.partition) == (account, "gpu")
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert all(profile["set-resources"][rule]["gpu"] == 1
               for rule in ("train_gan", "discover_directions", "evaluate_walks"))


def test_debug_route_runs_the_rule_functions_and_skips_done_work(tmp_path, monkeypatch):
    """In-process route: same files as calling dplase.jobs.discover_job directly; a rerun submits nothing."""
    from dplase.jobs import discover_job
    from dplase.launch import launch

    generator = _make_generator(tmp_path / "g.pt")
    config = _sweep_config(tmp_path / "c.yaml", {"tiny": generator}, ["voynov"], [0, 1], {"k": 3, "steps": 4})
    sweep = _load_sweep(config)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        report = launch(sweep, "debug", stages=["discover_directions"], collect=False, echo=lambda s: None)
        assert [o.state for o in report.outcomes] == ["done", "done"], report.summary()
        run = sweep.runs[1]
        torch.set_num_threads(1)
        discover_job(**sweep.discover_params(run.run_id), generator=str(generator), out="ref/directions.pt",
                     losses="ref/losses.parquet")
        again = launch(sweep, "debug", stages=["discover_directions"], collect=False, echo=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    _assert_same_directions(tmp_path / sweep.run_paths(run)["directions"], tmp_path / "ref" / "directions.pt")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / sweep.run_paths(run)["losses"]),
                                  pd.read_parquet(tmp_path / "ref" / "losses.parquet"))
    assert [o.state for o in again.outcomes] == ["skipped", "skipped"]


def test_debug_route_reports_a_bad_input_and_runs_the_rest(tmp_path, monkeypatch):
    from dplase.launch import launch

    good = _make_generator(tmp_path / "good.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    config = _sweep_config(tmp_path / "c.yaml", {"good": good, "bad": bad}, ["random"], [0], {"k": 2})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pdb.post_mortem", lambda *args: None)  # submitit's debug executor opens pdb on failure
    report = launch(_load_sweep(config), "debug", stages=["discover_directions"], collect=False,
                    echo=lambda s: None)
    states = {o.task.kwargs["run"]["model"]: o for o in report.outcomes}
    assert states["good"].state == "done" and states["bad"].state == "failed"
    assert "bad.pt" in states["bad"].error
    assert not report.ok and re.search(r"FAILED discover_directions\[random-\w+\]", report.summary())


def test_sweep_cli_rejects_a_missing_config(tmp_path):
    from click.testing import CliRunner

    from dplase.cli import main

    result = CliRunner().invoke(main, ["sweep", "--config", str(tmp_path / "nope.yaml"), "--cluster", "debug"])
    assert result.exit_code == 2
    assert re.search(r"config file .*nope\.yaml does not exist", result.output)


# ------------------------------------------------------------------------------------ submitit on SLURM


@pytest.mark.slurm
def test_sweep_on_slurm_is_one_array_with_the_local_routes_artifacts(cluster, tmp_path):
    generator = _make_generator(tmp_path / "g.pt")
    config = _sweep_config(tmp_path / "c.yaml", {"tiny": generator}, ["voynov"], [0, 1], {"k": 3, "steps": 12})
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    on_slurm.mkdir()
    local.mkdir()
    out = _run(_sweep_cmd(config, "slurm"), on_slurm, timeout=300).stdout
    _run(_sweep_cmd(config, "local"), local, timeout=300)
    assert re.search(r"submitted discover_directions: 2 task\(s\) as job array \d+ \(slurm\)", out), out
    jobs = _sweep_accounting(on_slurm)
    assert len(jobs) == 2 and jobs["JobID"].str.fullmatch(r"\d+_[01]").all(), jobs
    assert jobs["JobID"].str.split("_").str[0].nunique() == 1  # one array
    assert (jobs["JobName"] == "discover_directions").all() and (jobs["State"] == "COMPLETED").all()
    assert jobs["AllocTRES"].str.contains("gres/gpu=1").all()
    for run in _load_sweep(config).runs:
        for name in ("directions", "losses"):
            rel = _load_sweep(config).run_paths(run)[name]
            if name == "directions":
                _assert_same_directions(on_slurm / rel, local / rel)
            else:
                pd.testing.assert_frame_equal(pd.read_parquet(on_slurm / rel), pd.read_parquet(local / rel))


def _sweep_accounting(workdir: Path, requeues: bool = False) -> pd.DataFrame:
    """`_sacct` once every job has ended: submitit sees a job's result file a moment before SLURM ends it."""
    deadline = time.time() + 60
    while True:
        jobs = _sacct(workdir, requeues)
        settled = len(jobs) and not jobs["State"].isin(["RUNNING", "COMPLETING", "PENDING"]).any()
        if settled or time.time() > deadline:
            return jobs
        time.sleep(1)


def _job_state(job_id: str) -> tuple[str, str]:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True).stdout.split()
    return (out[0], out[1]) if len(out) >= 2 else ("", "")


def _wait_for_requeued(proc: subprocess.Popen, job_id: str, timeout: float) -> None:
    """Wait until ``proc`` (which waits for the requeued job) ends, lifting SLURM's ~2-minute hold on requeued
    jobs (reason BeginTime) so the test does not sit it out."""
    deadline = time.time() + timeout
    while proc.poll() is None:
        state, reason = _job_state(job_id)
        if state == "PENDING" and reason == "BeginTime":
            subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], check=False)
        assert time.time() < deadline, "the requeued job did not finish"
        time.sleep(1)


@pytest.mark.slurm
@pytest.mark.parametrize("interrupt", ["scontrol-requeue", "pre-timeout-usr2"])
def test_preempted_discovery_resumes_from_its_checkpoint(cluster, tmp_path, interrupt):
    """Requeue a running discovery job; it resumes at the checkpointed step and ends like an uninterrupted run.

    SLURM holds a requeued job for about two minutes (BeginTime); the test lifts the hold with
    `scontrol update StartTime=now` so it runs at once, which changes nothing else.
    """
    from dplase.jobs import discover_job

    generator = _make_generator(tmp_path / "g.pt")
    config = _sweep_config(tmp_path / "c.yaml", {"tiny": generator}, ["voynov"], [0], {"k": 3, "steps": 150})
    sweep = _load_sweep(config)
    run = sweep.runs[0]
    workdir = tmp_path / "w"
    workdir.mkdir()
    ckpt = workdir / Path(sweep.run_paths(run)["directions"]).with_suffix(".ckpt")
    proc = subprocess.Popen(_sweep_cmd(config, "slurm"), cwd=workdir, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not ckpt.exists():  # the first periodic checkpoint: the trainer is mid-run
            assert proc.poll() is None and time.time() < deadline, "the job never checkpointed"
            time.sleep(0.2)
        job_id = subprocess.run(["squeue", "-h", "-n", "discover_directions", "-o", "%i"], capture_output=True,
                                text=True, check=True).stdout.split()[0]
        if interrupt == "scontrol-requeue":
            subprocess.run(["scontrol", "requeue", job_id], check=True)
        else:  # what SLURM sends slurm_signal_delay_s before the time limit; submitit's handler requeues
            subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        _wait_for_requeued(proc, job_id, timeout=180)
        output = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    log = (workdir / "results" / "logs" / "submitit" / f"{job_id}_0_log.out").read_text()
    resumed = re.search(r"resumed from checkpoint \S+directions\.ckpt at step (\d+)", log)
    assert resumed and 0 < int(resumed.group(1)) < 150, log
    assert "pre-empted at step" in log
    starts = _sweep_accounting(workdir, requeues=True)
    assert list(starts["State"]) == ["REQUEUED", "COMPLETED"], starts
    assert not ckpt.exists()  # removed after success
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        discover_job(**sweep.discover_params(run.run_id), generator=str(generator),
                     out=str(tmp_path / "ref" / "directions.pt"), losses=str(tmp_path / "ref" / "losses.parquet"))
    finally:
        torch.set_num_threads(threads)
    _assert_same_directions(workdir / sweep.run_paths(run)["directions"], tmp_path / "ref" / "directions.pt")
    pd.testing.assert_frame_equal(pd.read_parquet(workdir / sweep.run_paths(run)["losses"]),
                                  pd.read_parquet(tmp_path / "ref" / "losses.parquet"))


@pytest.mark.slurm
def test_sweep_reports_a_bad_input_and_reruns_only_the_missing_work(cluster, tmp_path):
    good = _make_generator(tmp_path / "good.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    config = _sweep_config(tmp_path / "c.yaml", {"good": good, "bad": bad}, ["sefa", "random"], [0], {"k": 2})
    workdir = tmp_path / "w"
    workdir.mkdir()
    first = _run(_sweep_cmd(config, "slurm"), workdir, timeout=300, check=False)
    assert first.returncode == 1, first.stdout + first.stderr
    summary = first.stdout[first.stdout.index("2 done, 0 skipped, 2 failed, 0 blocked"):]
    failed = re.findall(r"FAILED discover_directions\[(\S+)\] \(job (\S+)\): (.*)\n\s+log: (\S+)", summary)
    assert len(failed) == 2, first.stdout
    for _run_id, _job, error, log_path in failed:
        assert "bad.pt" in error
        assert "bad.pt" in Path(log_path).read_text() + Path(log_path).with_suffix(".err").read_text()
    sweep = _load_sweep(config)
    good_runs = [r for r in sweep.runs if r.model == "good"]
    assert all((workdir / sweep.run_paths(r)["directions"]).exists() for r in good_runs)
    done_before = {r.run_id: (workdir / sweep.run_paths(r)["directions"]).stat().st_mtime_ns for r in good_runs}
    jobs_before = set(_sweep_accounting(workdir)["JobID"])
    assert len(jobs_before) == 4

    shutil.copy(_make_generator(tmp_path / "fixed.pt", seed=1), bad)  # fix the input
    second = _run(_sweep_cmd(config, "slurm"), workdir, timeout=300)
    assert "2 done, 2 skipped, 0 failed" in second.stdout, second.stdout
    assert {r.run_id: (workdir / sweep.run_paths(r)["directions"]).stat().st_mtime_ns for r in good_runs} == done_before
    new_jobs = set(_sweep_accounting(workdir)["JobID"]) - jobs_before
    assert len(new_jobs) == 2  # only the two runs of the fixed model were submitted


# ------------------------------------------------------------------------------------- Snakemake on SLURM

HEAVY_RULES = {"train_gan", "train_factor_predictor", "discover_directions", "evaluate_walks"}
GPU_RULES = {"train_gan", "discover_directions", "evaluate_walks"}


def _workflow_dir(path: Path) -> Path:
    """A working directory for the workflow: the Snakefile's relative paths (config/, results/) land here."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config").symlink_to(REPO / "config")
    return path


def _snakemake(workdir: Path, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    """`snakemake ...` run from the repository root (so `--profile slurm` is resolved as a user types it)."""
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def _needs_workflow() -> None:
    if not (REPO / "Snakefile").is_file():
        pytest.skip("the workflow (Snakefile) is not in this checkout")


# the profile's 20 s first status poll is meant for a shared cluster; the tests poll sooner
FAST_POLL = ("--slurm-init-seconds-before-status-checks", "2")


@pytest.mark.slurm
def test_snakemake_profile_runs_heavy_rules_as_slurm_jobs_with_the_local_result(cluster, tmp_path):
    _needs_workflow()
    test_config = str(REPO / "config" / "test.yaml")
    on_slurm = _workflow_dir(tmp_path / "slurm")
    local = _workflow_dir(tmp_path / "local")
    # the local reference run goes alongside: the SLURM run spends much of its time waiting on the scheduler
    reference = subprocess.Popen(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(local), "--cores", "2",
         "--configfile", test_config], cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        _snakemake(on_slurm, "--profile", "slurm", "--configfile", test_config, *FAST_POLL)
        _, reference_err = reference.communicate(timeout=900)
    finally:
        if reference.poll() is None:
            reference.kill()
    assert reference.returncode == 0, reference_err[-6000:]

    jobs = _sacct(on_slurm)
    rules = jobs["Comment"].str.extract(r"^rule_([a-z_]+?)(?:_wildcards_.*)?$")[0]
    assert rules.notna().all(), jobs
    assert set(rules) == HEAVY_RULES, f"light rules must stay local, heavy ones go to SLURM: {sorted(set(rules))}"
    assert (jobs["State"] == "COMPLETED").all(), jobs
    gpu = jobs["AllocTRES"].str.contains("gres/gpu=1")
    assert gpu[rules.isin(GPU_RULES)].all() and not gpu[~rules.isin(GPU_RULES)].any(), jobs
    n_runs = len(_load_sweep_for(REPO / "config" / "test.yaml").runs)
    assert (rules == "discover_directions").sum() == n_runs and (rules == "evaluate_walks").sum() == n_runs

    # collect_metrics concatenates the runs in sweep order, so the rows line up without sorting
    a = pd.read_parquet(on_slurm / "results" / "metrics.parquet").drop(columns="created_at")
    b = pd.read_parquet(local / "results" / "metrics.parquet").drop(columns="created_at")
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def _load_sweep_for(config: Path):
    from dplase.launch import load_sweep

    return load_sweep([config], base_config=REPO / "config" / "config.yaml")


@pytest.mark.slurm
def test_snakemake_failed_job_is_reported_with_its_log_and_rerun_does_only_missing_work(cluster, tmp_path):
    _needs_workflow()
    good = _make_generator(tmp_path / "good.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    overlay = {
        "retries": 0,
        "datasets": {"shapes": {"image_size": 32}},
        "models": {"good": {"checkpoint": str(good)}, "bad": {"checkpoint": str(bad)}},
        "predictor": {"steps": 5},
        "sweeps": [{"name": "s", "models": ["good", "bad"], "datasets": ["shapes"], "methods": ["random"],
                    "seeds": [0], "params": {"k": 2}}],
        "evaluation": {"n_samples": 16, "metrics": ["attr", "density"]},
    }
    config = tmp_path / "overlay.yaml"
    config.write_text(yaml.safe_dump(overlay))
    workdir = _workflow_dir(tmp_path / "w")
    target = ["results/metrics.parquet"]
    first = _snakemake(workdir, "--profile", "slurm", "--configfile", str(config), *FAST_POLL, *target,
                       check=False)
    assert first.returncode != 0
    sweep = _load_sweep_for(config)
    bad_run = next(r for r in sweep.runs if r.model == "bad")
    good_run = next(r for r in sweep.runs if r.model == "good")
    err = first.stderr
    assert re.search(rf"Error in rule discover_directions:.*?{bad_run.run_id}", err, re.S), err[-4000:]
    logs = re.findall(r"(\S*slurm_logs/rule_discover_directions/\S+\.log)", err)
    assert logs and any(Path(p if Path(p).is_absolute() else workdir / p).exists() for p in logs), err[-4000:]
    rule_log = workdir / f"results/logs/discover_directions/{bad_run.run_id}.log"
    assert "bad.pt" in rule_log.read_text()
    assert (workdir / sweep.run_paths(good_run)["run_metrics"]).exists()  # the other run went on
    jobs_before = set(_sacct(workdir)["JobID"])

    shutil.copy(_make_generator(tmp_path / "fixed.pt", seed=1), bad)
    _snakemake(workdir, "--profile", "slurm", "--configfile", str(config), *FAST_POLL, *target)
    new = _sacct(workdir)
    new = new[~new["JobID"].isin(jobs_before)]
    rules = sorted(new["Comment"].str.extract(r"^rule_([a-z_]+?)(?:_wildcards_.*)?$")[0])
    assert rules == ["discover_directions", "evaluate_walks"], new  # only the fixed run's jobs
    assert (new["Comment"].str.contains(bad_run.run_id)).all()
    assert len(pd.read_parquet(workdir / "results" / "metrics.parquet")["run_id"].unique()) == 2


def test_preempted_signal_is_recorded():
    """The launcher tells a pre-timeout SIGUSR2 (requeue itself) from a SIGTERM (SLURM decides)."""
    from dplase.training.loop import LoopState, Preempted, run_loop

    net = torch.nn.Linear(1, 1)

    def step(i: int) -> dict:
        if i == 1:
            os.kill(os.getpid(), signal.SIGUSR2)
        return {"loss": 0.0}

    with pytest.raises(Preempted) as info:
        run_loop(total_steps=5, step_fn=step, state=LoopState({"net": net}), checkpoint_path=None, progress=False)
    assert info.value.signum == signal.SIGUSR2 and info.value.step == 2


@pytest.mark.slurm
def test_snakemake_route_requeued_discovery_resumes_from_its_checkpoint(cluster, tmp_path):
    """The profile submits with --requeue: a requeued rule job reruns and its trainer resumes."""
    _needs_workflow()
    generator = _make_generator(tmp_path / "g.pt")
    overlay = {"checkpoint_every": 10, "datasets": {"shapes": {"image_size": 32}},
               "models": {"tiny": {"checkpoint": str(generator)}},
               "sweeps": [{"name": "s", "models": ["tiny"], "datasets": ["shapes"], "methods": ["voynov"],
                           "seeds": [0], "params": {"k": 3, "steps": 150}}]}
    config = tmp_path / "overlay.yaml"
    config.write_text(yaml.safe_dump(overlay))
    run = _load_sweep_for(config).runs[0]
    workdir = _workflow_dir(tmp_path / "w")
    target = f"results/runs/{run.run_id}/directions.pt"
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--profile", "slurm",
           "--configfile", str(config), *FAST_POLL, target]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = workdir / f"results/runs/{run.run_id}/directions.ckpt"
    try:
        deadline = time.time() + 300
        while not ckpt.exists():
            assert proc.poll() is None and time.time() < deadline, "the job never checkpointed"
            time.sleep(0.2)
        job_id = _sacct(workdir)["JobID"].iloc[-1]
        subprocess.run(["scontrol", "requeue", job_id], check=True)
        _wait_for_requeued(proc, job_id, timeout=300)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-4000:]
    log = (workdir / f"results/logs/discover_directions/{run.run_id}.log").read_text()
    resumed = re.search(r"resumed from checkpoint \S+directions\.ckpt at step (\d+)", log)
    assert resumed and 0 < int(resumed.group(1)) < 150, log
    assert "REQUEUED" in set(_sweep_accounting(workdir, requeues=True)["State"])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        from dplase.jobs import discover_job

        sweep = _load_sweep_for(config)
        discover_job(**sweep.discover_params(run.run_id), generator=str(generator),
                     out=str(tmp_path / "ref" / "directions.pt"), losses=str(tmp_path / "ref" / "losses.parquet"))
    finally:
        torch.set_num_threads(threads)
    _assert_same_directions(workdir / target, tmp_path / "ref" / "directions.pt")
