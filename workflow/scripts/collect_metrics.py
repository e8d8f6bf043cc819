"""Rule collect_metrics: one long-format results table from every run (dplase.jobs.collect_metrics_job)."""

from dplase.jobs import collect_metrics_job, job_log

with job_log(snakemake.log[0]):
    collect_metrics_job(inputs=snakemake.input.metrics, out=snakemake.output.metrics)
