"""Rule collect_losses: one loss-curve table from every trainer (dplase.jobs.collect_losses_job)."""

from dplase.jobs import collect_losses_job, job_log

with job_log(snakemake.log[0]):
    collect_losses_job(
        run_losses=snakemake.input.runs,
        generator_losses=snakemake.input.generators,
        generator_labels=snakemake.params.generator_labels,
        out=snakemake.output.losses,
    )
