"""Rule write_runs_table: results/runs.parquet, run id -> parameters (dplase.jobs.write_runs_table_job)."""

from dplase.jobs import job_log, write_runs_table_job

with job_log(snakemake.log[0]):
    write_runs_table_job(runs=snakemake.params.runs, out=snakemake.output.runs)
