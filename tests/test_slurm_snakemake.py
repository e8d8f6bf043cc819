"""The Snakemake route (`snakemake --profile slurm`) against a live SLURM cluster (marker `slurm`).

The tests need a reachable SLURM with accounting (scripts/slurm-cluster.sh start; .ci/run starts it) and skip
with the reason otherwise. They check what a user relies on:
1. every heavy rule runs as a SLURM job (sacct: rule, COMPLETED, gres/gpu for the GPU rules), the light rules
   stay local, and the final Parquet equals a local run's;
2. a job failing on bad input is reported with its log, the other run goes on, and a rerun after the fix
   submits only the missing jobs;
3. a rule job requeued mid-run (the profile submits with --requeue) resumes from its checkpoint.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from slurm_helpers import (
    FAST_POLL,
    REPO,
    SNAKEMAKE,
    assert_resumed_mid_run,
    assert_same_directions,
    load_sweep_for,
    make_generator,
    needs_workflow,
    reference_discovery,
    sacct_jobs,
    snakemake_in,
    started,
    sweep_accounting,
    wait_for_checkpoint,
    wait_for_requeued,
    workflow_dir,
)

HEAVY_RULES = {"train_gan", "train_factor_predictor", "discover_directions", "evaluate_walks"}
GPU_RULES = {"train_gan", "discover_directions", "evaluate_walks"}


#: the test config cut to two runs (DP-LaSE with the learned walk, and SeFa): every heavy rule still runs on
#: SLURM, in one wave per stage on the test cluster's two CPUs, instead of three waves for the six runs
TWO_RUNS = {"sweeps": [
    {"name": "dplase", "models": ["dcgan"], "datasets": ["shapes"], "methods": ["dplase"], "seeds": [0],
     "params": {"walk": "learned", "k": 3, "steps": 10}},
    {"name": "sefa", "models": ["dcgan"], "datasets": ["shapes"], "methods": ["sefa"], "seeds": [0],
     "params": {"k": 3}},
]}


@pytest.mark.slurm
def test_snakemake_profile_runs_heavy_rules_as_slurm_jobs_with_the_local_result(cluster, tmp_path):
    needs_workflow()
    overlay = tmp_path / "two_runs.yaml"
    overlay.write_text(yaml.safe_dump(TWO_RUNS))
    configs = [str(REPO / "config" / "test.yaml"), str(overlay)]
    on_slurm = workflow_dir(tmp_path / "slurm")
    local = workflow_dir(tmp_path / "local")
    # the local reference run goes alongside: the SLURM run spends much of its time waiting on the scheduler
    local_cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(local), "--cores", "2",
                 "--configfile", *configs]
    with started(local_cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as reference:
        snakemake_in(on_slurm, "--profile", "slurm", *FAST_POLL, "--configfile", *configs)
        _, reference_err = reference.communicate(timeout=900)
    assert reference.returncode == 0, reference_err[-6000:]

    jobs = sacct_jobs(on_slurm)
    rules = jobs["Comment"].str.extract(r"^rule_([a-z_]+?)(?:_wildcards_.*)?$")[0]
    assert rules.notna().all(), jobs
    assert set(rules) == HEAVY_RULES, f"light rules must stay local, heavy ones go to SLURM: {sorted(set(rules))}"
    assert (jobs["State"] == "COMPLETED").all(), jobs
    gpu = jobs["AllocTRES"].str.contains("gres/gpu=1")
    assert gpu[rules.isin(GPU_RULES)].all() and not gpu[~rules.isin(GPU_RULES)].any(), jobs
    assert len(load_sweep_for(*configs).runs) == 2
    assert (rules == "discover_directions").sum() == 2 and (rules == "evaluate_walks").sum() == 2

    # collect_metrics concatenates the runs in sweep order, so the rows line up without sorting
    a = pd.read_parquet(on_slurm / "results" / "metrics.parquet").drop(columns="created_at")
    b = pd.read_parquet(local / "results" / "metrics.parquet").drop(columns="created_at")
    assert len(a) > 0 and set(a["method"]) == {"dplase", "sefa"}
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.slurm
def test_snakemake_failed_job_is_reported_with_its_log_and_rerun_does_only_missing_work(cluster, tmp_path):
    needs_workflow()
    good = make_generator(tmp_path / "good.pt")
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
    workdir = workflow_dir(tmp_path / "w")
    target = ["results/metrics.parquet"]
    first = snakemake_in(workdir, "--profile", "slurm", "--configfile", str(config), *FAST_POLL, *target,
                       check=False)
    assert first.returncode != 0
    sweep = load_sweep_for(config)
    bad_run = next(r for r in sweep.runs if r.model == "bad")
    good_run = next(r for r in sweep.runs if r.model == "good")
    err = first.stderr
    assert re.search(rf"Error in rule discover_directions:.*?{bad_run.run_id}", err, re.S), err[-4000:]
    logs = re.findall(r"(\S*slurm_logs/rule_discover_directions/\S+\.log)", err)
    assert logs and any(Path(p if Path(p).is_absolute() else workdir / p).exists() for p in logs), err[-4000:]
    rule_log = workdir / f"results/logs/discover_directions/{bad_run.run_id}.log"
    assert "bad.pt" in rule_log.read_text()
    assert (workdir / sweep.run_paths(good_run)["run_metrics"]).exists()  # the other run went on
    jobs_before = set(sacct_jobs(workdir)["JobID"])

    shutil.copy(make_generator(tmp_path / "fixed.pt", seed=1), bad)
    snakemake_in(workdir, "--profile", "slurm", "--configfile", str(config), *FAST_POLL, *target)
    new = sacct_jobs(workdir)
    new = new[~new["JobID"].isin(jobs_before)]
    rules = sorted(new["Comment"].str.extract(r"^rule_([a-z_]+?)(?:_wildcards_.*)?$")[0])
    assert rules == ["discover_directions", "evaluate_walks"], new  # only the fixed run's jobs
    assert (new["Comment"].str.contains(bad_run.run_id)).all()
    assert len(pd.read_parquet(workdir / "results" / "metrics.parquet")["run_id"].unique()) == 2


@pytest.mark.slurm
def test_snakemake_route_requeued_discovery_resumes_from_its_checkpoint(cluster, tmp_path):
    """The profile submits with --requeue: a requeued rule job reruns and its trainer resumes."""
    needs_workflow()
    generator = make_generator(tmp_path / "g.pt")
    overlay = {"checkpoint_every": 10, "datasets": {"shapes": {"image_size": 32}},
               "models": {"tiny": {"checkpoint": str(generator)}},
               "sweeps": [{"name": "s", "models": ["tiny"], "datasets": ["shapes"], "methods": ["voynov"],
                           "seeds": [0], "params": {"k": 3, "steps": 150}}]}
    config = tmp_path / "overlay.yaml"
    config.write_text(yaml.safe_dump(overlay))
    sweep = load_sweep_for(config)
    run = sweep.runs[0]
    workdir = workflow_dir(tmp_path / "w")
    target = f"results/runs/{run.run_id}/directions.pt"
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--profile", "slurm",
           "--configfile", str(config), *FAST_POLL, target]
    ckpt = workdir / f"results/runs/{run.run_id}/directions.ckpt"
    with started(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        wait_for_checkpoint(proc, ckpt)
        job_id = sacct_jobs(workdir)["JobID"].iloc[-1]
        subprocess.run(["scontrol", "requeue", job_id], check=True)
        wait_for_requeued(proc, job_id, timeout=300)
        err = proc.stderr.read()
    assert proc.returncode == 0, err[-4000:]
    log = (workdir / f"results/logs/discover_directions/{run.run_id}.log").read_text()
    assert_resumed_mid_run(log, total_steps=150)
    assert "REQUEUED" in set(sweep_accounting(workdir, requeues=True)["State"])
    reference_discovery(sweep, run.run_id, generator, tmp_path / "ref")
    assert_same_directions(workdir / target, tmp_path / "ref" / "directions.pt")
