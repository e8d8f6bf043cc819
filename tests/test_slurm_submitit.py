"""The submitit route (`dplase sweep`) against a live SLURM cluster (marker `slurm`), the same launcher without a
cluster (debug route), and the pre-emption signal handling in-process.

The cluster tests need a reachable SLURM with accounting (scripts/slurm-cluster.sh start gives one on this
machine; .ci/run starts it) and skip with the reason otherwise. They check what a user relies on:
1. `dplase sweep --cluster slurm` runs discovery as one job array, with the same artifacts as the local route;
2. a discovery job requeued mid-run (scontrol requeue, or submitit's pre-timeout SIGUSR2) resumes from its
   checkpoint and ends with the directions of an uninterrupted run;
3. a job failing on bad input is reported with its log, the others finish, and a rerun after the fix does only
   the missing work.
The Snakemake route's cluster tests are in tests/test_slurm_snakemake.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from slurm_helpers import (
    REPO,
    assert_resumed_mid_run,
    assert_same_directions,
    load_sweep_file,
    make_generator,
    queued_job_in,
    reference_discovery,
    run_command,
    started,
    sweep_accounting,
    sweep_command,
    sweep_config,
    wait_for_checkpoint,
    wait_for_requeued,
)

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
    from dplase.launch import launch

    generator = make_generator(tmp_path / "g.pt")
    config = sweep_config(tmp_path / "c.yaml", {"tiny": generator}, ["voynov"], [0, 1], {"k": 3, "steps": 4})
    sweep = load_sweep_file(config)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:  # run_task sets the task's thread count in this process
        report = launch(sweep, "debug", stages=["discover_directions"], collect=False, echo=lambda s: None)
        assert [o.state for o in report.outcomes] == ["done", "done"], report.summary()
        run = sweep.runs[1]
        reference_discovery(sweep, run.run_id, generator, tmp_path / "ref")
        again = launch(sweep, "debug", stages=["discover_directions"], collect=False, echo=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    assert_same_directions(tmp_path / sweep.run_paths(run)["directions"], tmp_path / "ref" / "directions.pt")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / sweep.run_paths(run)["losses"]),
                                  pd.read_parquet(tmp_path / "ref" / "losses.parquet"))
    assert [o.state for o in again.outcomes] == ["skipped", "skipped"]


def test_debug_route_reports_a_bad_input_and_runs_the_rest(tmp_path, monkeypatch):
    from dplase.launch import launch

    good = make_generator(tmp_path / "good.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    config = sweep_config(tmp_path / "c.yaml", {"good": good, "bad": bad}, ["random"], [0], {"k": 2})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pdb.post_mortem", lambda *args: None)  # submitit's debug executor opens pdb on failure
    report = launch(load_sweep_file(config), "debug", stages=["discover_directions"], collect=False,
                    echo=lambda s: None)
    states = {o.task.kwargs["labels"]["model"]: o for o in report.outcomes}
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
    generator = make_generator(tmp_path / "g.pt")
    config = sweep_config(tmp_path / "c.yaml", {"tiny": generator}, ["voynov"], [0, 1], {"k": 3, "steps": 12})
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    on_slurm.mkdir()
    local.mkdir()
    out = run_command(sweep_command(config, "slurm"), on_slurm, timeout=300).stdout
    run_command(sweep_command(config, "local"), local, timeout=300)
    assert re.search(r"submitted discover_directions: 2 task\(s\) as job array \d+ \(slurm\)", out), out
    jobs = sweep_accounting(on_slurm)
    assert len(jobs) == 2 and jobs["JobID"].str.fullmatch(r"\d+_[01]").all(), jobs
    assert jobs["JobID"].str.split("_").str[0].nunique() == 1  # one array
    assert (jobs["JobName"] == "discover_directions").all() and (jobs["State"] == "COMPLETED").all()
    assert jobs["AllocTRES"].str.contains("gres/gpu=1").all()
    for run in load_sweep_file(config).runs:
        for name in ("directions", "losses"):
            rel = load_sweep_file(config).run_paths(run)[name]
            if name == "directions":
                assert_same_directions(on_slurm / rel, local / rel)
            else:
                pd.testing.assert_frame_equal(pd.read_parquet(on_slurm / rel), pd.read_parquet(local / rel))


@pytest.mark.slurm
@pytest.mark.parametrize("interrupt", ["scontrol-requeue", "pre-timeout-usr2"])
def test_preempted_discovery_resumes_from_its_checkpoint(cluster, tmp_path, interrupt):
    """Requeue a running discovery job; it resumes at the checkpointed step and ends like an uninterrupted run.

    SLURM holds a requeued job for about two minutes (BeginTime); the test lifts the hold with
    `scontrol update StartTime=now` so it runs at once, which changes nothing else.
    """
    generator = make_generator(tmp_path / "g.pt")
    config = sweep_config(tmp_path / "c.yaml", {"tiny": generator}, ["voynov"], [0], {"k": 3, "steps": 150})
    sweep = load_sweep_file(config)
    run = sweep.runs[0]
    workdir = tmp_path / "w"
    workdir.mkdir()
    ckpt = workdir / Path(sweep.run_paths(run)["directions"]).with_suffix(".ckpt")
    with started(sweep_command(config, "slurm"), cwd=workdir, stdout=subprocess.PIPE,
                 stderr=subprocess.STDOUT) as proc:
        wait_for_checkpoint(proc, ckpt)
        job_id = queued_job_in(workdir)
        if interrupt == "scontrol-requeue":
            subprocess.run(["scontrol", "requeue", job_id], check=True)
        else:  # what SLURM sends slurm_signal_delay_s before the time limit; submitit's handler requeues
            subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        wait_for_requeued(proc, job_id, timeout=180)
        output = proc.stdout.read()
    assert proc.returncode == 0, output
    log = (workdir / "results" / "logs" / "submitit" / f"{job_id}_0_log.out").read_text()
    assert_resumed_mid_run(log, total_steps=150)
    assert "pre-empted at step" in log
    starts = sweep_accounting(workdir, requeues=True)
    assert list(starts["State"]) == ["REQUEUED", "COMPLETED"], starts
    assert not ckpt.exists()  # removed after success
    reference_discovery(sweep, run.run_id, generator, tmp_path / "ref")
    assert_same_directions(workdir / sweep.run_paths(run)["directions"], tmp_path / "ref" / "directions.pt")
    pd.testing.assert_frame_equal(pd.read_parquet(workdir / sweep.run_paths(run)["losses"]),
                                  pd.read_parquet(tmp_path / "ref" / "losses.parquet"))


@pytest.mark.slurm
def test_sweep_reports_a_bad_input_and_reruns_only_the_missing_work(cluster, tmp_path):
    good = make_generator(tmp_path / "good.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    config = sweep_config(tmp_path / "c.yaml", {"good": good, "bad": bad}, ["sefa", "random"], [0], {"k": 2})
    workdir = tmp_path / "w"
    workdir.mkdir()
    first = run_command(sweep_command(config, "slurm"), workdir, timeout=300, check=False)
    assert first.returncode == 1, first.stdout + first.stderr
    summary = first.stdout[first.stdout.index("2 done, 0 skipped, 2 failed, 0 blocked"):]
    failed = re.findall(r"FAILED discover_directions\[(\S+)\] \(job (\S+)\): (.*)\n\s+log: (\S+)", summary)
    assert len(failed) == 2, first.stdout
    for _run_id, _job, error, log_path in failed:
        assert "bad.pt" in error
        assert "bad.pt" in Path(log_path).read_text() + Path(log_path).with_suffix(".err").read_text()
    sweep = load_sweep_file(config)
    good_runs = [r for r in sweep.runs if r.model == "good"]
    assert all((workdir / sweep.run_paths(r)["directions"]).exists() for r in good_runs)
    done_before = {r.run_id: (workdir / sweep.run_paths(r)["directions"]).stat().st_mtime_ns for r in good_runs}
    jobs_before = set(sweep_accounting(workdir)["JobID"])
    assert len(jobs_before) == 4

    shutil.copy(make_generator(tmp_path / "fixed.pt", seed=1), bad)  # fix the input
    second = run_command(sweep_command(config, "slurm"), workdir, timeout=300)
    assert "2 done, 2 skipped, 0 failed" in second.stdout, second.stdout
    assert {r.run_id: (workdir / sweep.run_paths(r)["directions"]).stat().st_mtime_ns for r in good_runs} == done_before
    new_jobs = set(sweep_accounting(workdir)["JobID"]) - jobs_before
    assert len(new_jobs) == 2  # only the two runs of the fixed model were submitted




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
