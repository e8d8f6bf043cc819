"""Rule discover_directions: fit one run's method (dplase.jobs.discover_job)."""

import torch

from dplase.jobs import discover_job, job_log

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    discover_job(
        generator=snakemake.input.generator,
        out=snakemake.output.directions,
        losses=snakemake.output.losses,
        **snakemake.params.job,
    )
