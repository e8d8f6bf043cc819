"""Scale benchmark: Snakemake dry-run DAG construction for sweeps of 1,000 and 10,000 runs (goal: <= 30 s at
10,000 runs, i.e. about 30,000 per-run jobs plus the collection and figures).

Each size gets a config overlay whose sweep expands to exactly N runs (every method, N / 6 seeds each), in a
temporary copy of the workflow. Reported per size: the in-process config validation + sweep expansion time
(what the Snakefile does at parse time) and the wall and CPU time of `snakemake --dry-run` (parse + DAG),
with the job count Snakemake reports. On a shared machine the CPU time is the comparable number.

    .venv/bin/python benchmarks/bench_dag.py                 # 1,000 and 10,000 runs
    .venv/bin/python benchmarks/bench_dag.py --runs 1000     # one size
    .venv/bin/python benchmarks/bench_dag.py --traversal-seeds 0   # traversal grids for seed 0 only
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("dplase", "sefa", "ganspace", "voynov", "random", "coordinate")


def overlay(n_runs: int, traversal_seeds: list[int] | None = None) -> dict:
    """A config overlay with exactly ``n_runs`` runs: every method x ceil(n/6) seeds, surplus excluded;
    ``traversal_seeds`` limits the traversal-grid jobs (None: one per run)."""
    per_method = -(-n_runs // len(METHODS))
    surplus = per_method * len(METHODS) - n_runs
    exclude = [{"method": METHODS[-1], "seed": per_method - 1 - i} for i in range(surplus)]
    return {
        "sweeps": [{"name": "scale", "models": ["dcgan"], "datasets": ["shapes"], "methods": list(METHODS),
                    "seeds": list(range(per_method)), "params": {"k": 4}}],
        "exclude": exclude,
        "traversal": {"seeds": traversal_seeds},
    }


def bench(n_runs: int, workdir: Path, traversal_seeds: list[int] | None = None) -> dict:
    from dplase.config import load_config, prepare

    config_path = workdir / "config" / f"scale_{n_runs}.yaml"
    config_path.write_text(yaml.safe_dump(overlay(n_runs, traversal_seeds)))
    start = time.perf_counter()
    sweep = prepare(load_config(workdir / "config/config.yaml", config_path))
    expand_s = time.perf_counter() - start
    assert len(sweep.runs) == n_runs, len(sweep.runs)

    cmd = [str(Path(sys.executable).parent / "snakemake"), "--dry-run", "--cores", "2", "--quiet", "rules",
           "--configfile", str(config_path.relative_to(workdir))]
    start, before = time.perf_counter(), os.times()
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    dag_s, after = time.perf_counter() - start, os.times()
    dag_cpu_s = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    match = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, flags=re.MULTILINE)
    return {"runs": n_runs, "jobs": int(match.group(1)) if match else None, "expand_s": round(expand_s, 2),
            "dry_run_s": round(dag_s, 1), "dry_run_cpu_s": round(dag_cpu_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--traversal-seeds", type=int, nargs="*", default=None,
                        help="traversal grids only for these seeds (default: every run gets one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        shutil.copy(ROOT / "Snakefile", workdir / "Snakefile")
        for folder in ("workflow", "config"):
            shutil.copytree(ROOT / folder, workdir / folder, ignore=shutil.ignore_patterns("__pycache__"))
        for n in args.runs:
            row = bench(n, workdir, args.traversal_seeds)
            print(f"{row['runs']:>6} runs  {row['jobs']} jobs  sweep expansion {row['expand_s']:.2f} s  "
                  f"snakemake --dry-run {row['dry_run_s']:.1f} s wall, {row['dry_run_cpu_s']:.1f} s CPU "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
